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

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
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

	// linger is how long the tail outlives its last subscriber.
	linger time.Duration

	mu       sync.Mutex
	cur      *jsTail
	starting chan struct{} // closed when a tail being started is ready
	closed   bool
	stops    sync.WaitGroup // lingering tails being stopped
}

func newJetStreamBackend(nc *nats.Conn, c config.Stream, log *slog.Logger) (*jsBackend, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &jsBackend{
		js: js, stream: c.NATS.JetStream.Stream, subject: c.NATS.Subject, path: c.Path, log: log,
		maxPending: c.MaxPending, winEvents: c.WindowEvents, winBytes: c.WindowBytes,
		linger: defaultTailLinger,
	}
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

// checkGuards looks the stream up once and ends every subscriber (or
// tail) that started in another incarnation. The guards catch a
// recreation on the first message of a recreated consumer; this catches it
// when none comes, as when the new stream has not reached the old
// sequence (the ordered consumer recreates itself there, often without
// reporting an error). A missing stream or one not answering ends nobody:
// the clients keep their heartbeats, since a reconnect would get 503,
// which ends an EventSource for good.
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
			g.end(errRecreated)
		}
	}
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
	users    int           // guarded by b.mu
	linger   *time.Timer   // set while it lingers; guarded by b.mu
	stopOnce sync.Once
}

// defaultTailLinger is how long a stream's tail outlives its last
// subscriber: clients cut off all at once (a broker hiccup, a burst) come
// back within seconds and resume from memory, instead of each making a
// consumer of its own at the same moment.
const defaultTailLinger = 30 * time.Second

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
			t.users++
			if t.linger != nil {
				t.linger.Stop()
				t.linger = nil
				revived = true
			}
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
		var stale *jsTail
		if t := b.cur; t != nil && t.users == 0 {
			stale = t // broken while lingering
			if t.linger != nil {
				t.linger.Stop()
				t.linger = nil
			}
		}
		b.cur = nil
		ch := make(chan struct{})
		b.starting = ch
		b.mu.Unlock()
		if stale != nil {
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

// release drops one user of t. The last one leaves it running for linger,
// unless it broke.
func (b *jsBackend) release(t *jsTail) {
	b.mu.Lock()
	t.users--
	if t.users > 0 {
		b.mu.Unlock()
		return
	}
	if b.cur != t || b.closed || b.linger <= 0 || t.isBroken() {
		if b.cur == t {
			b.cur = nil
		}
		b.mu.Unlock()
		t.stop()
		return
	}
	t.linger = time.AfterFunc(b.linger, func() { b.stopIdle(t) })
	b.mu.Unlock()
}

// stopIdle stops t once it has lingered without subscribers.
func (b *jsBackend) stopIdle(t *jsTail) {
	b.mu.Lock()
	if t.users > 0 || t.linger == nil {
		b.mu.Unlock()
		return // taken again meanwhile
	}
	t.linger = nil
	if b.cur == t {
		b.cur = nil
	}
	b.stops.Add(1)
	b.mu.Unlock()
	defer b.stops.Done()
	t.stop()
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
			typ = h.Get(sinks.HeaderEvent)
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
				m.typ = h.Get(sinks.HeaderEvent)
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

// close stops a lingering tail (every feed has stopped by now) and the
// watch.
func (b *jsBackend) close() {
	b.mu.Lock()
	b.closed = true
	t := b.cur
	b.cur = nil
	if t != nil && t.linger != nil {
		t.linger.Stop()
		t.linger = nil
	}
	b.mu.Unlock()
	if t != nil {
		t.stop()
	}
	b.stops.Wait()
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
	// guardRetryEvery spaces a tail guard's retries of a failed look-up.
	guardRetryEvery = 500 * time.Millisecond
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
	// fail, when set, ends what the guard keeps instead of sub (a tail).
	fail func(error)
	// retry makes admit retry a look-up that failed (but for a missing
	// stream) instead of ending.
	retry bool
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
	if g.sub != nil {
		select {
		case <-g.sub.done:
			return false // already ended; nothing more is delivered
		default:
		}
	}
	same, err := g.check()
	for err != nil && g.retry && g.ctx.Err() == nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		// A tail's reader waits for a busy broker rather than end every
		// subscriber at once, who would all come back at once.
		t := time.NewTimer(guardRetryEvery)
		select {
		case <-g.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		same, err = g.check()
	}
	if g.ctx.Err() != nil {
		return false // the feed is stopping
	}
	if err != nil {
		g.end(fmt.Errorf("checking JetStream stream %q: %w", g.b.stream, err))
		return false
	}
	if !same {
		g.end(errRecreated)
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

// end ends the guarded subscriber or tail for err.
func (g *jsGuard) end(err error) {
	if g.fail != nil {
		g.fail(err)
		return
	}
	g.sub.fail(err)
}

// stop aborts a look-up in flight.
func (g *jsGuard) stop() { g.cancel() }
