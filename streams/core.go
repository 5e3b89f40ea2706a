package streams

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/sinks"
)

// coreBackend serves a core NATS subject. Core NATS keeps no history, so
// all subscribers of the stream share one NATS subscription, made when the
// first arrives and dropped when the last leaves, and fan out from it.
type coreBackend struct {
	nc      *nats.Conn
	subject string

	mu      sync.RWMutex
	sub     *nats.Subscription
	members map[*subscriber]string // subscriber → its subject filter ("" for all)
}

func newCoreBackend(nc *nats.Conn, subject string) *coreBackend {
	return &coreBackend{nc: nc, subject: subject, members: map[*subscriber]string{}}
}

func (b *coreBackend) kind() string { return "nats" }

func (b *coreBackend) subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error) {
	// A Last-Event-ID is ignored rather than refused: browsers send it on
	// every reconnect, and a 400 would stop EventSource for good.
	if !req.since.IsZero() {
		return feed{}, fmt.Errorf("%w: since= needs history, which a core NATS subject does not keep", ErrBadRequest)
	}
	filter := ""
	if req.subject != "" && req.subject != b.subject {
		if !subjectWithin(req.subject, b.subject) {
			return feed{}, fmt.Errorf("%w: subject %q is not within this stream's subject %q", ErrBadRequest, req.subject, b.subject)
		}
		filter = req.subject
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sub == nil {
		ns, err := b.nc.Subscribe(b.subject, b.dispatch)
		if err != nil {
			return feed{}, fmt.Errorf("%w: subscribe %q: %v", ErrUnavailable, b.subject, err)
		}
		// The server must know the subscription before we answer 200,
		// or a message published right after could be missed.
		if err := b.nc.FlushWithContext(ctx); err != nil {
			_ = ns.Unsubscribe()
			return feed{}, fmt.Errorf("%w: subscribe %q: %v", ErrUnavailable, b.subject, err)
		}
		b.sub = ns
	}
	b.members[sub] = filter
	f := newFeed(&counterCursor{}, func() { b.leave(sub) })
	// A closed connection (not a reconnecting one) delivers nothing ever
	// again, and a core subscription has no error callback to say so.
	f.check = func() error {
		if b.nc.IsClosed() {
			return nats.ErrConnectionClosed
		}
		return nil
	}
	return f, nil
}

func (b *coreBackend) leave(sub *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.members, sub)
	if len(b.members) == 0 && b.sub != nil {
		_ = b.sub.Unsubscribe()
		b.sub = nil
	}
}

// dispatch runs on the NATS subscription's goroutine and must never block:
// offer drops a subscriber rather than wait for it.
func (b *coreBackend) dispatch(msg *nats.Msg) {
	m := message{subject: msg.Subject, data: msg.Data}
	if msg.Header != nil {
		m.typ = msg.Header.Get(sinks.HeaderEvent)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for sub, filter := range b.members {
		if filter == "" || subjectMatches(filter, m.subject) {
			sub.offer(m)
		}
	}
}

func (b *coreBackend) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sub != nil {
		_ = b.sub.Unsubscribe()
		b.sub = nil
	}
}

// counterCursor numbers the events of one connection: core NATS has no
// position to resume from, so the id only orders events within it.
type counterCursor struct{ n uint64 }

func (c *counterCursor) advance(*message) { c.n++ }
func (c *counterCursor) id() string       { return strconv.FormatUint(c.n, 10) }
