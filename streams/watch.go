package streams

import (
	"context"
	"sync"
	"time"
)

// memberWatch runs a periodic check of a stream's broker state on behalf of
// its subscribers (the members), only while it has any: one goroutine and
// one look-up per interval for the stream, however many subscribers it
// has. Backends use it for what their broker never reports to a connected
// reader, such as a stream or topic recreated under it.
type memberWatch[T comparable] struct {
	// every is the interval; a test may change it before the first add.
	every time.Duration
	// check runs every interval with a context that ends when the last
	// member leaves or the watch is closed.
	check func(ctx context.Context)

	mu      sync.Mutex
	members map[T]struct{}
	stop    context.CancelFunc // set while the loop runs
	done    chan struct{}      // closed when that loop has returned
	closed  bool
	loops   sync.WaitGroup
}

func newMemberWatch[T comparable](every time.Duration, check func(context.Context)) *memberWatch[T] {
	return &memberWatch[T]{every: every, check: check, members: map[T]struct{}{}}
}

// add makes m a member, starting the loop for the first one.
func (w *memberWatch[T]) add(m T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.members[m] = struct{}{}
	if w.stop != nil || w.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	w.done = make(chan struct{})
	w.loops.Add(1)
	go w.run(ctx, w.done)
}

// remove drops m, stopping the loop with the last member. It then waits
// for the loop to return, so that once every feed has stopped no look-up
// is in flight: shared clients may be closed right after.
func (w *memberWatch[T]) remove(m T) {
	w.mu.Lock()
	delete(w.members, m)
	if len(w.members) > 0 || w.stop == nil {
		w.mu.Unlock()
		return
	}
	w.stop()
	w.stop = nil
	done := w.done
	w.mu.Unlock()
	<-done // prompt: the look-up in flight is cancelled
}

// snapshot returns the current members.
func (w *memberWatch[T]) snapshot() []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	ms := make([]T, 0, len(w.members))
	for m := range w.members {
		ms = append(ms, m)
	}
	return ms
}

// close stops the loop for good and waits for it.
func (w *memberWatch[T]) close() {
	w.mu.Lock()
	w.closed = true
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
	w.mu.Unlock()
	w.loops.Wait()
}

// run calls check every interval until ctx ends, then closes done.
func (w *memberWatch[T]) run(ctx context.Context, done chan struct{}) {
	defer w.loops.Done()
	defer close(done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx)
	}
}
