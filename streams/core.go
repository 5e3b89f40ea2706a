package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
)

// coreBackend serves a core NATS subject. Core NATS keeps no history, so
// all subscribers of the stream share one NATS subscription, made when the
// first arrives and dropped when the last leaves, and read its tail.
type coreBackend struct {
	nc         *nats.Conn
	subject    string
	maxPending int
	// winEvents and winBytes bound the tail's window: nothing resumes
	// from it, but a burst must fit in it for the subscribers that read
	// to take it whole.
	winEvents, winBytes int
	log                 *slog.Logger
	path                string

	mu  sync.Mutex
	cur *coreTail
}

// coreTail is the one subscription of a core stream and its tail.
type coreTail struct {
	*tail
	sub     *nats.Subscription
	dropped uint64 // messages the client library dropped so far
	users   int    // guarded by the backend's mu
	// watch ends the tail when the connection drops; stop ends watch.
	nc      *nats.Conn
	status  chan nats.Status
	stopped chan struct{}
	watched chan struct{}
}

// errDisconnected ends the subscribers of a core subject when the bridge's
// connection drops: what is published until it is back is lost, and core
// NATS cannot replay it, so they must not go on as if nothing was missed.
var errDisconnected = errors.New("NATS connection lost; core NATS subjects keep no history, events may have been missed")

// watch ends the tail when the connection starts reconnecting.
func (t *coreTail) watch() {
	defer close(t.watched)
	select {
	case <-t.status:
		t.breakWith(errDisconnected)
	case <-t.stopped:
	}
}

// stop drops the subscription and the connection watch.
func (t *coreTail) stop() {
	_ = t.sub.Unsubscribe()
	close(t.stopped)
	<-t.watched
	t.nc.RemoveStatusListener(t.status)
	t.breakWith(ErrClosed)
}

func newCoreBackend(nc *nats.Conn, c Config, maxPending int, log *slog.Logger) *coreBackend {
	b := &coreBackend{nc: nc, subject: c.NATS.Subject, maxPending: maxPending, winEvents: c.WindowEvents, winBytes: c.WindowBytes, log: log, path: c.Path}
	if b.winEvents <= 0 {
		b.winEvents = DefaultWindowEvents
	}
	if b.winBytes <= 0 {
		b.winBytes = DefaultWindowBytes
	}
	return b
}

func (b *coreBackend) kind() string { return "nats" }

func (b *coreBackend) sharesTail() {}

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
	if b.cur == nil || b.cur.isBroken() {
		// A broken tail is stopped by its last user.
		b.cur = nil
		// No history to resume from: the window holds what subscribers
		// have not taken yet, so that a burst larger than max_pending
		// reaches every subscriber that reads.
		t := &coreTail{
			tail:    newTail(b.winEvents, b.winBytes, b.maxPending, 0),
			nc:      b.nc,
			stopped: make(chan struct{}),
			watched: make(chan struct{}),
		}
		t.status = b.nc.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED)
		ns, err := b.nc.Subscribe(b.subject, t.dispatch)
		if err != nil {
			b.nc.RemoveStatusListener(t.status)
			return feed{}, fmt.Errorf("%w: subscribe %q: %v", ErrUnavailable, b.subject, err)
		}
		// The server must know the subscription before we answer 200,
		// or a message published right after could be missed.
		if err := b.nc.FlushWithContext(ctx); err != nil {
			_ = ns.Unsubscribe()
			b.nc.RemoveStatusListener(t.status)
			return feed{}, fmt.Errorf("%w: subscribe %q: %v", ErrUnavailable, b.subject, err)
		}
		t.sub = ns
		go t.watch()
		b.cur = t
	}
	t := b.cur
	if _, err := t.joinHead(sub); err != nil {
		return feed{}, fmt.Errorf("%w: subscribe %q: %v", ErrUnavailable, b.subject, err)
	}
	t.users++
	f := newFeed(&counterCursor{}, func() { b.leave(t, sub) })
	f.tail = t.tail
	f.subject = filter
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

func (b *coreBackend) leave(t *coreTail, sub *subscriber) {
	t.leave(sub)
	b.mu.Lock()
	t.users--
	last := t.users == 0
	if last && b.cur == t {
		b.cur = nil
	}
	b.mu.Unlock()
	if last {
		t.stop()
	}
}

// errDropped ends the subscribers of a core subject whose messages the
// NATS client dropped (a slow consumer): they would skip events silently.
var errDropped = errors.New("NATS client dropped messages of the subscription (slow consumer)")

// dispatch runs on the NATS subscription's goroutine, one message at a
// time, and never blocks: a subscriber too far behind is cut off.
func (t *coreTail) dispatch(msg *nats.Msg) {
	// Messages the client library dropped (its pending limits were
	// exceeded) are a gap for every subscriber: end them all rather than
	// skip silently.
	if n, err := msg.Sub.Dropped(); err == nil && uint64(n) != t.dropped {
		t.dropped = uint64(n)
		t.breakWith(fmt.Errorf("%w: %d dropped", errDropped, n))
		return
	}
	typ := ""
	if msg.Header != nil {
		typ = msg.Header.Get(headerEvent)
	}
	t.publish(newFrame(0, msg.Subject, typ, msg.Data, ""))
}

// close runs once every feed has stopped, so every tail is stopped.
func (b *coreBackend) close() {}

// counterCursor numbers the events of one connection: core NATS has no
// position to resume from, so the id only orders events within it.
type counterCursor struct{ n uint64 }

func (c *counterCursor) advance(*message) { c.n++ }
func (c *counterCursor) id() string       { return strconv.FormatUint(c.n, 10) }
