package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/bridge/config"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
)

// jsBackend serves a JetStream stream. Each subscriber gets its own ordered
// consumer (ephemeral, in memory, no acks), which is what lets it start at
// any sequence and survive broker restarts without a gap.
type jsBackend struct {
	js      jetstream.JetStream
	stream  string
	subject string // "" serves every subject of the stream
	path    string
	log     *slog.Logger
	// watch looks the stream up every guardWatchEvery for the
	// subscribers' guards (see checkGuards).
	watch *memberWatch[*jsGuard]
}

func newJetStreamBackend(nc *nats.Conn, c config.Stream, log *slog.Logger) (*jsBackend, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &jsBackend{js: js, stream: c.NATS.JetStream.Stream, subject: c.NATS.Subject, path: c.Path, log: log}
	b.watch = newMemberWatch[*jsGuard](guardWatchEvery, b.checkGuards)
	return b, nil
}

// checkGuards looks the stream up once and ends every subscriber that
// started in another incarnation. The guards catch a recreation on the
// first message of a recreated consumer; this catches it when none comes,
// as when the new stream has not reached the subscriber's old sequence
// (the ordered consumer recreates itself there, often without reporting
// an error). A missing stream or one not answering ends nobody: the
// clients keep their heartbeats, since a reconnect would get 503, which
// ends an EventSource for good.
func (b *jsBackend) checkGuards(ctx context.Context) {
	guards := b.watch.snapshot()
	if len(guards) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, guardCheckTimeout)
	defer cancel()
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return
	}
	tag := newJSTag(b.stream, st.CachedInfo().Created)
	for _, g := range guards {
		if g.tag != tag {
			g.sub.fail(errRecreated)
		}
	}
}

func (b *jsBackend) kind() string { return "jetstream" }

func (b *jsBackend) subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error) {
	filter := b.subject
	if req.subject != "" {
		if b.subject != "" && !subjectWithin(req.subject, b.subject) {
			return feed{}, fmt.Errorf("%w: subject %q is not within this stream's subject %q", ErrBadRequest, req.subject, b.subject)
		}
		filter = req.subject
	}
	cfg := jetstream.OrderedConsumerConfig{
		// A consumer left behind by a crash disappears on its own.
		InactiveThreshold: time.Minute,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}

	var pos jsPosition
	if req.lastEventID != "" {
		var err error
		if pos, err = parseJSID(req.lastEventID, jsStreamByte(b.stream)); err != nil {
			return feed{}, err
		}
	}
	// Reading the stream's state (not a cached one) is also the check that
	// JetStream answers at all, before the consumer is created.
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return feed{}, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
	}
	info := st.CachedInfo()
	if filter != "" && !overlapsAny(filter, info.Config.Subjects) {
		// The broker accepts a consumer filtered on a subject the stream
		// never stores: the client would get 200 and then nothing, ever.
		// The filter is the client's mistake, or the configuration's.
		kind := ErrBadRequest
		if req.subject == "" {
			kind = ErrUnavailable
		}
		return feed{}, fmt.Errorf("%w: subject %q matches none of the subjects of JetStream stream %q (%s)",
			kind, filter, b.stream, strings.Join(info.Config.Subjects, ", "))
	}
	tag := newJSTag(b.stream, info.Created)
	state := info.State
	var seq uint64 // the position the feed starts after
	var start string
	switch {
	case req.lastEventID != "" && pos.tagged && pos.inc != tag.inc:
		// The stream was deleted and recreated since the client read
		// it: every message of this incarnation is newer than the
		// client's position, so it gets them all. Not a client error: a
		// 400 would end an EventSource for good.
		metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
		b.log.Warn("Last-Event-ID is from an earlier incarnation of the stream (deleted and recreated), starting at its earliest message",
			"stream", b.path, "last_event_id", req.lastEventID, "first_seq", state.FirstSeq)
		seq = max(state.FirstSeq, 1) - 1
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq + 1
	case req.lastEventID != "":
		seq = pos.seq
		if seq > state.LastSeq {
			return feed{}, fmt.Errorf("%w: sequence %d is beyond the last one of JetStream stream %q (%d); was the stream recreated?",
				ErrInvalidLastEventID, seq, b.stream, state.LastSeq)
		}
		next := seq + 1
		if next < state.FirstSeq {
			// The messages after seq are gone: start at the oldest the
			// stream still has rather than wait for a sequence that will
			// never come.
			metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
			b.log.Warn("resume position no longer retained, starting at the earliest message",
				"stream", b.path, "last_event_id", seq, "first_seq", state.FirstSeq)
			next = state.FirstSeq
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = next
	case !req.since.IsZero():
		t := req.since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	default:
		// Start right after the stream's last message rather than with
		// DeliverNew, so that the id announced to the client (LastSeq) and
		// the consumer's start agree exactly: a client that drops before
		// its first event resumes from that id with no gap. Messages
		// published since the stream info was read are delivered, not
		// skipped. An empty stream has LastSeq 0, which resumes from 1.
		seq = state.LastSeq
		start = jsID(seq, tag)
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq + 1
	}

	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return feed{}, fmt.Errorf("%w: JetStream consumer on %q: %v", ErrUnavailable, b.stream, err)
	}
	g := newJSGuard(b, tag, sub)
	// Messages creates the consumer on the server before it returns, which
	// is what puts the subscription in place before the headers go out.
	// One goroutine takes the messages with Next, which checks their
	// order and recreates the consumer in that same goroutine: a Consume
	// callback runs outside the ordered consumer's lock, so the callbacks
	// of an old and a new server-side consumer can overlap, and a message
	// the old one still holds then arrives after newer ones, a gap the
	// client could never repair.
	it, err := cons.Messages(jetstream.PullExpiry(pullExpiry))
	if err != nil {
		g.stop()
		return feed{}, fmt.Errorf("%w: JetStream consume %q: %v", ErrUnavailable, b.stream, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			msg, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				// The ordered consumer recreates itself after heartbeats
				// are missed or the server restarts; only a closed
				// connection ends it for good, and then the client must
				// reconnect to resume.
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
			m := message{subject: msg.Subject(), data: msg.Data(), seq: md.Sequence.Stream}
			if h := msg.Headers(); h != nil {
				m.typ = h.Get(sinks.HeaderEvent)
			}
			sub.offer(m)
		}
	}()
	b.watch.add(g)
	f := newFeed(&seqCursor{seq: seq, tag: tag}, func() {
		b.watch.remove(g)
		g.stop()
		it.Stop()
		<-read
		// Delete the server-side consumer now rather than leave it for
		// InactiveThreshold: busy sites see many short subscriptions.
		if info := cons.CachedInfo(); info != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = b.js.DeleteConsumer(ctx, b.stream, info.Name)
		}
	})
	f.start = start
	return f, nil
}

func (b *jsBackend) close() { b.watch.close() }

// overlapsAny reports whether some subject matched by pattern is also
// matched by one of subjects. A stream without subjects of its own (a
// mirror, or one only sourcing others) stores whatever it copies, so any
// pattern may match there.
func overlapsAny(pattern string, subjects []string) bool {
	if len(subjects) == 0 {
		return true
	}
	for _, s := range subjects {
		if subjectsOverlap(pattern, s) {
			return true
		}
	}
	return false
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

// pullExpiry is how long one pull request lives; the server heartbeats a
// pull at half that, and a consumer that missed two heartbeats (the
// connection was dropped as a slow consumer, say) is recreated. nats.go's
// default (30 s) leaves a client without events for that long.
const pullExpiry = 10 * time.Second

// errRecreated ends a subscription whose stream was deleted and recreated:
// its ordered consumer would go on at the old sequence in the new stream,
// skipping the new stream's first messages or waiting until it reaches
// that sequence. The client reconnects with its Last-Event-ID, which names
// the old incarnation, and starts at the new one's first message.
var errRecreated = errors.New("JetStream stream was deleted and recreated")

// Bounds of the guard's look-ups.
const (
	// guardCheckTimeout bounds one stream info request.
	guardCheckTimeout = 5 * time.Second
	// guardWatchEvery spaces the stream watch's look-ups: it is how late
	// a client may learn that its stream was recreated.
	guardWatchEvery = 2 * time.Second
)

// jsGuard keeps one subscriber on the stream incarnation it started in. An
// ordered consumer survives its stream being deleted and recreated under the
// same name: it recreates its server-side consumer, which then reads the new
// stream from the old sequence on. So every server-side consumer is checked
// against the stream's incarnation before its first message is passed on;
// the backend's stream watch (checkGuards) ends the subscription when no
// message comes.
type jsGuard struct {
	b   *jsBackend
	tag jsTag
	sub *subscriber
	// ctx ends with the feed, aborting look-ups in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	admitted string // the consumer whose messages may pass
}

func newJSGuard(b *jsBackend, tag jsTag, sub *subscriber) *jsGuard {
	ctx, cancel := context.WithCancel(context.Background())
	return &jsGuard{b: b, tag: tag, sub: sub, ctx: ctx, cancel: cancel}
}

// admit reports whether a message of the server-side consumer named
// consumer may be passed on. The first message of each consumer costs one
// stream info request; a consumer on another incarnation, or one whose
// stream cannot be checked, ends the subscription instead: the client
// resumes with its Last-Event-ID, which is safe either way.
func (g *jsGuard) admit(consumer string) bool {
	g.mu.Lock()
	ok := consumer == g.admitted
	g.mu.Unlock()
	if ok {
		return true
	}
	select {
	case <-g.sub.done:
		return false // already ended; nothing more is delivered
	default:
	}
	same, err := g.check()
	if g.ctx.Err() != nil {
		return false // the feed is stopping
	}
	if err != nil {
		g.sub.fail(fmt.Errorf("checking JetStream stream %q: %w", g.b.stream, err))
		return false
	}
	if !same {
		g.sub.fail(errRecreated)
		return false
	}
	g.mu.Lock()
	g.admitted = consumer
	g.mu.Unlock()
	return true
}

// check reports whether the stream is the incarnation the subscriber
// started in; a missing stream is an error.
func (g *jsGuard) check() (bool, error) {
	ctx, cancel := context.WithTimeout(g.ctx, guardCheckTimeout)
	defer cancel()
	st, err := g.b.js.Stream(ctx, g.b.stream)
	if err != nil {
		return false, err
	}
	return newJSTag(g.b.stream, st.CachedInfo().Created) == g.tag, nil
}

// stop aborts a look-up in flight.
func (g *jsGuard) stop() { g.cancel() }
