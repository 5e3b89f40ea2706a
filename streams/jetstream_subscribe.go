package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// lookup reads the stream's state for a resume the tail cannot answer.
func (b *jsBackend) lookup(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
	}
	return st.CachedInfo(), nil
}

func (b *jsBackend) subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error) {
	narrow := ""
	if req.subject != "" {
		if b.subject != "" && !subjectWithin(req.subject, b.subject) {
			return feed{}, fmt.Errorf("%w: subject %q is not within this stream's subject %q", ErrBadRequest, req.subject, b.subject)
		}
		if req.subject != b.subject {
			narrow = req.subject
		}
	}
	var pos jsPosition
	if req.lastEventID != "" {
		var err error
		if pos, err = parseJSID(req.lastEventID, jsStreamByte(b.stream)); err != nil {
			return feed{}, err
		}
	}
	for attempt := 0; ; attempt++ {
		t, revived, err := b.acquire(ctx)
		if err != nil {
			return feed{}, err
		}
		f, err := b.subscribeOn(ctx, t, revived, sub, req, pos, narrow)
		if errors.Is(err, errStaleTail) && attempt == 0 {
			continue // the stale tail is broken now; the next is current
		}
		return f, err
	}
}

// errStaleTail means the tail reads an incarnation of the stream that has
// since been deleted and recreated.
var errStaleTail = errors.New("the stream's tail reads an earlier incarnation")

// subscribeOn positions sub for req on the tail t, which it has acquired
// (and releases on failure).
func (b *jsBackend) subscribeOn(ctx context.Context, t *jsTail, revived bool, sub *subscriber, req *request, pos jsPosition, narrow string) (feed, error) {
	ok := false
	defer func() {
		if !ok {
			t.leave(sub)
			b.release(t)
		}
	}()
	if narrow != "" && !overlapsAny(narrow, t.subjects) {
		// The broker would accept a consumer filtered on a subject the
		// stream never stores, and the client would wait forever.
		return feed{}, fmt.Errorf("%w: subject %q matches none of the subjects of JetStream stream %q (%s)",
			ErrBadRequest, narrow, b.stream, strings.Join(t.subjects, ", "))
	}
	// lookup reads the stream's state for a resume the tail cannot
	// answer, and tells a tail left on an earlier incarnation (which the
	// watch would end within guardWatchEvery).
	lookup := func() (*jetstream.StreamInfo, error) {
		info, err := b.lookup(ctx)
		if err != nil {
			return nil, err
		}
		if newJSTag(b.stream, info.Created) != t.tag {
			t.breakWith(errRecreated)
			return nil, errStaleTail
		}
		return info, nil
	}
	if revived {
		// The stream may have been recreated while the tail lingered, in
		// the last look-up interval of the watch: check now.
		if _, err := lookup(); err != nil {
			return feed{}, err
		}
	}
	var p uint64 // the position the subscriber starts after
	var start string
	var catchUp func() (func(), error)
	switch {
	case req.lastEventID != "" && pos.tagged && pos.inc != t.tag.inc:
		// The stream was deleted and recreated since the client read
		// it: every message of this incarnation is newer than the
		// client's position, so it gets them all. Not a client error: a
		// 400 would end an EventSource for good.
		info, err := lookup()
		if err != nil {
			return feed{}, err
		}
		metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
		b.log.Warn("Last-Event-ID is from an earlier incarnation of the stream (deleted and recreated), starting at its earliest message",
			"stream", b.path, "last_event_id", req.lastEventID, "first_seq", info.State.FirstSeq)
		p = max(info.State.FirstSeq, 1) - 1
	case req.lastEventID != "":
		p = pos.seq
		if t.covers(p) {
			break
		}
		info, err := lookup()
		if err != nil {
			return feed{}, err
		}
		if p > info.State.LastSeq {
			return feed{}, fmt.Errorf("%w: sequence %d is beyond the last one of JetStream stream %q (%d); was the stream recreated?",
				ErrInvalidLastEventID, p, b.stream, info.State.LastSeq)
		}
		if p+1 < info.State.FirstSeq {
			// The messages after p are gone: start at the oldest the
			// stream still has rather than wait for a sequence that will
			// never come.
			metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
			b.log.Warn("resume position no longer retained, starting at the earliest message",
				"stream", b.path, "last_event_id", p, "first_seq", info.State.FirstSeq)
			p = info.State.FirstSeq - 1
		}
	case !req.since.IsZero():
		since := req.since
		catchUp = func() (func(), error) { return b.catchUp(ctx, t, sub, 0, &since) }
	default:
		last, err := t.joinHead(sub)
		if err != nil {
			return feed{}, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
		}
		p, start = last, jsID(last, t.tag)
	}
	stopCatchUp := func() {}
	if req.lastEventID != "" {
		// Served from memory when the window still holds what follows p;
		// otherwise caught up from the broker first.
		if err := t.joinAfter(sub, p); err != nil {
			if !errors.Is(err, errNotCovered) {
				return feed{}, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
			}
			from := p
			catchUp = func() (func(), error) { return b.catchUp(ctx, t, sub, from, nil) }
		}
	}
	if catchUp != nil {
		var err error
		if stopCatchUp, err = catchUp(); err != nil {
			return feed{}, err
		}
	}
	ok = true
	f := newFeed(&seqCursor{seq: p, tag: t.tag}, func() {
		stopCatchUp()
		t.leave(sub)
		b.release(t)
	})
	f.tail = t.tail
	f.join = func(m *message) error { return t.joinAfter(sub, m.seq) }
	f.subject = narrow
	f.start = start
	// A closed connection delivers nothing ever again; the tail's reader
	// may be retrying to recreate its consumer meanwhile.
	f.check = func() error {
		if b.js.Conn().IsClosed() {
			return nats.ErrConnectionClosed
		}
		return nil
	}
	return f, nil
}

// catchUpBuffer is how many messages a catch-up reader may read ahead of
// its client.
const catchUpBuffer = 64

// catchUp reads the stream for one subscriber from after position from (or
// from time since) with an ordered consumer of its own, until the tail's
// window holds what follows: it then hands the subscriber over to the
// tail, with no gap and no repeat at the seam, and deletes its consumer.
// The returned stop ends it early and waits for it.
func (b *jsBackend) catchUp(ctx context.Context, t *jsTail, sub *subscriber, from uint64, since *time.Time) (func(), error) {
	cons, err := b.js.OrderedConsumer(ctx, b.stream, b.consumerConfig(from+1, since))
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream consumer on %q: %v", ErrUnavailable, b.stream, err)
	}
	it, err := cons.Messages(jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream consume %q: %v", ErrUnavailable, b.stream, err)
	}
	sub.ch = make(chan message, catchUpBuffer)
	g := newJSGuard(b, t.tag, sub)
	b.watch.add(g)
	stopc := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			it.Stop()
			deleteConsumer(b, cons)
		}()
		p, known := from, since == nil
		for {
			msg, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) || b.js.Conn().IsClosed() {
					sub.fail(err)
					return
				}
				b.log.Debug("JetStream consumer error", "stream", b.path, "err", err)
				continue
			}
			md, err := msg.Metadata()
			if err != nil {
				sub.fail(fmt.Errorf("message metadata: %w", err))
				return
			}
			if !g.admit(md.Consumer) {
				return // the subscriber has ended
			}
			seq := md.Sequence.Stream
			if !known {
				// A start by time: the position is just before the first
				// message at or after it.
				p, known = seq-1, true
			}
			if t.covers(p) {
				sub.push(message{join: true, seq: p}, stopc)
				return
			}
			m := message{subject: msg.Subject(), data: msg.Data(), seq: seq}
			if h := msg.Headers(); h != nil {
				m.typ = h.Get(headerEvent)
			}
			if !sub.push(m, stopc) {
				return
			}
			p = seq
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stopc)
			it.Stop() // Next returns
			<-done
			b.watch.remove(g)
			g.stop()
		})
	}, nil
}

// seqCursor's id is the stream sequence of the last message, tagged with
// the stream's incarnation.
type seqCursor struct {
	seq uint64
	tag jsTag
	buf []byte // reused: an id is made for every event
}

func (c *seqCursor) advance(m *message) { c.seq = m.seq }

func (c *seqCursor) id() string {
	c.buf = appendJSID(c.buf[:0], c.seq, c.tag)
	return string(c.buf)
}
