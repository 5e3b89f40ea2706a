package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
