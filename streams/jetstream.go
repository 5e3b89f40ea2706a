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
)

// jsBackend serves a JetStream stream. While the stream has subscribers,
// one ordered consumer (ephemeral, in memory, no acks) reads it into the
// stream's tail, which every subscriber reads; a subscriber resuming from
// before the tail's window is caught up by an ordered consumer of its own,
// which then hands it over to the tail.
type jsBackend struct {
	js      jetstream.JetStream
	stream  string
	subject string // "" serves every subject of the stream
	path    string
	log     *slog.Logger
	// watch looks the stream up every guardWatchEvery for the guards of
	// the tail and of the catch-ups (see checkGuards).
	watch *memberWatch[*jsGuard]

	maxPending, winEvents, winBytes int

	// sharedTail's mu also guards starting.
	sharedTail[*jsTail]
	starting chan struct{} // closed when a tail being started is ready
}

func newJetStreamBackend(nc *nats.Conn, c Config, log *slog.Logger) (*jsBackend, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &jsBackend{
		js: js, stream: c.NATS.JetStream, subject: c.NATS.Subject, path: c.Path, log: log,
		maxPending: c.MaxPending, winEvents: c.WindowEvents, winBytes: c.WindowBytes,
	}
	b.linger = defaultTailLinger
	if b.maxPending <= 0 {
		b.maxPending = DefaultMaxPending
	}
	if b.winEvents <= 0 {
		b.winEvents = DefaultWindowEvents
	}
	if b.winBytes <= 0 {
		b.winBytes = DefaultWindowBytes
	}
	b.watch = newMemberWatch[*jsGuard](guardWatchEvery, b.checkGuards)
	return b, nil
}

func (b *jsBackend) kind() string { return "jetstream" }

func (b *jsBackend) sharesTail() {}

// jsTail is the stream's one ordered consumer and the tail it fills.
type jsTail struct {
	*tail
	b        *jsBackend
	tag      jsTag
	subjects []string // the stream's, when the tail started
	guard    *jsGuard
	it       jetstream.MessagesContext
	cons     jetstream.Consumer
	done     chan struct{} // closed when the reader has returned
	tailUse
	stopOnce sync.Once
}

// acquire returns the running tail, starting it for the first subscriber
// (or after the last one broke); release must follow. Starting it does not
// hold b.mu, so subscribers leaving meanwhile never wait for the broker.
// revived reports a tail taken back while it lingered, whose stream may
// have been recreated since: the caller checks it.
func (b *jsBackend) acquire(ctx context.Context) (t *jsTail, revived bool, err error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, false, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
		}
		if t := b.cur; t != nil && !t.isBroken() {
			revived = b.takeLocked(t)
			b.mu.Unlock()
			return t, revived, nil
		}
		if ch := b.starting; ch != nil {
			b.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, false, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, ctx.Err())
			}
		}
		stale, isStale := b.dropIdleLocked() // broken while lingering
		b.cur = nil
		ch := make(chan struct{})
		b.starting = ch
		b.mu.Unlock()
		if isStale {
			stale.stop()
		}
		t, err := b.start(ctx)
		b.mu.Lock()
		b.starting = nil
		close(ch)
		if err == nil {
			t.users = 1
			b.cur = t
		}
		b.mu.Unlock()
		return t, false, err
	}
}

// start reads the stream's state and starts a tail after its last
// message.
func (b *jsBackend) start(ctx context.Context) (*jsTail, error) {
	// Reading the stream's state (not a cached one) is also the check that
	// JetStream answers at all, before the consumer is created.
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
	}
	info := st.CachedInfo()
	if b.subject != "" && !overlapsAny(b.subject, info.Config.Subjects) {
		// The broker accepts a consumer filtered on a subject the stream
		// never stores: the clients would get 200 and then nothing, ever.
		return nil, fmt.Errorf("%w: subject %q matches none of the subjects of JetStream stream %q (%s)",
			ErrUnavailable, b.subject, b.stream, strings.Join(info.Config.Subjects, ", "))
	}
	// Start right after the stream's last message rather than with
	// DeliverNew, so that the position the tail announces and the
	// consumer's start agree exactly. An empty stream has LastSeq 0.
	start := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, b.consumerConfig(start+1, nil))
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream consumer on %q: %v", ErrUnavailable, b.stream, err)
	}
	// Messages creates the consumer on the server before it returns, which
	// is what puts the subscription in place before the headers go out.
	it, err := cons.Messages(jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return nil, fmt.Errorf("%w: JetStream consume %q: %v", ErrUnavailable, b.stream, err)
	}
	tag := newJSTag(b.stream, info.Created)
	t := &jsTail{
		tail:     newTail(b.winEvents, b.winBytes, b.maxPending, start),
		b:        b,
		tag:      tag,
		subjects: info.Config.Subjects,
		it:       it,
		cons:     cons,
		done:     make(chan struct{}),
	}
	t.guard = newJSGuard(b, tag, nil)
	t.guard.fail = func(err error) { t.breakWith(err) }
	t.guard.retry = true
	b.watch.add(t.guard)
	go t.run()
	return t, nil
}

// consumerConfig is an ordered consumer of the stream's subjects starting
// at sequence seq, or at time since when given.
func (b *jsBackend) consumerConfig(seq uint64, since *time.Time) jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{
		// A consumer left behind by a crash disappears on its own.
		InactiveThreshold: time.Minute,
	}
	if b.subject != "" {
		cfg.FilterSubjects = []string{b.subject}
	}
	if since != nil {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = since
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = max(seq, 1)
	}
	return cfg
}

// run reads the stream into the tail. One goroutine takes the messages
// with Next, which checks their order and recreates the consumer in that
// same goroutine: a Consume callback runs outside the ordered consumer's
// lock, so the callbacks of an old and a new server-side consumer can
// overlap, and a message the old one still holds then arrives after newer
// ones.
func (t *jsTail) run() {
	defer close(t.done)
	for {
		msg, err := t.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			// The ordered consumer recreates itself after heartbeats
			// are missed or the server restarts; only a closed
			// connection ends it for good, and then the clients must
			// reconnect to resume.
			if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) || t.b.js.Conn().IsClosed() {
				t.breakWith(err)
				return
			}
			t.b.log.Debug("JetStream consumer error", "stream", t.b.path, "err", err)
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			t.breakWith(fmt.Errorf("message metadata: %w", err))
			return
		}
		if !t.guard.admit(md.Consumer) {
			return // the tail has ended
		}
		typ := ""
		if h := msg.Headers(); h != nil {
			typ = h.Get(headerEvent)
		}
		fr := newFrame(md.Sequence.Stream, msg.Subject(), typ, msg.Data(), jsID(md.Sequence.Stream, t.tag))
		if fr.wire == nil {
			t.b.log.Warn("message skipped: SSE-Event header is not a valid event type", "stream", t.b.path, "type", typ)
		}
		t.publish(fr)
	}
}

// stop ends the reader and deletes its consumer. It is idempotent.
func (t *jsTail) stop() { t.stopOnce.Do(t.stopNow) }

func (t *jsTail) stopNow() {
	t.b.watch.remove(t.guard)
	t.guard.stop()
	t.it.Stop()
	<-t.done
	t.breakWith(ErrClosed)
	deleteConsumer(t.b, t.cons)
}

// deleteConsumer deletes a server-side consumer now rather than leave it
// for InactiveThreshold: busy sites see many short subscriptions.
func deleteConsumer(b *jsBackend, cons jetstream.Consumer) {
	if info := cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = b.js.DeleteConsumer(ctx, b.stream, info.Name)
	}
}

// close stops a lingering tail (every feed has stopped by now) and the
// watch.
func (b *jsBackend) close() {
	b.closeTails()
	b.watch.close()
}

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

// pullExpiry is how long one pull request lives; the server heartbeats a
// pull at half that, and a consumer that missed two heartbeats (the
// connection was dropped as a slow consumer, say) is recreated. nats.go's
// default (30 s) leaves a client without events for that long.
const pullExpiry = 10 * time.Second
