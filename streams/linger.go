package streams

import (
	"sync"
	"time"
)

// A JetStream or Kafka stream keeps one tail (its broker reader and
// window) for all its subscribers, and keeps it defaultTailLinger after
// the last one left, reading on: clients cut off all at once (a broker
// hiccup, a burst, a network blip) come back within seconds and resume
// from memory, instead of each starting a reader of its own at the same
// moment. sharedTail is that bookkeeping, written once for both.

// defaultTailLinger is how long a stream's tail outlives its last
// subscriber.
const defaultTailLinger = 30 * time.Second

// tailUse is what a shared tail keeps of its subscribers, guarded by its
// backend's sharedTail.mu. Tails embed it.
type tailUse struct {
	users  int
	linger *time.Timer // set while it lingers without users
}

func (u *tailUse) use() *tailUse { return u }

// disarm stops the linger timer; it reports whether one was set.
func (u *tailUse) disarm() bool {
	if u.linger == nil {
		return false
	}
	u.linger.Stop()
	u.linger = nil
	return true
}

// lingeringTail is a tail a sharedTail holds.
type lingeringTail interface {
	comparable
	use() *tailUse
	isBroken() bool
	stop()
}

// sharedTail holds a backend's current tail. mu guards it, the tails'
// tailUse and whatever the backend adds beside them.
type sharedTail[T lingeringTail] struct {
	mu     sync.Mutex
	cur    T
	closed bool
	// linger is how long the tail outlives its last subscriber; stops
	// waits for lingering tails being stopped.
	linger time.Duration
	stops  sync.WaitGroup
}

// takeLocked adds a user to t; revived reports a tail taken back while
// it lingered. Callers hold mu.
func (s *sharedTail[T]) takeLocked(t T) (revived bool) {
	t.use().users++
	return t.use().disarm()
}

// dropIdleLocked forgets the current tail if it has no users (it
// lingered, and perhaps broke meanwhile) and returns it for the caller to
// stop once mu is released. Callers hold mu.
func (s *sharedTail[T]) dropIdleLocked() (idle T, ok bool) {
	var none T
	t := s.cur
	if t == none || t.use().users > 0 {
		return none, false
	}
	t.use().disarm()
	s.cur = none
	return t, true
}

// release drops one user of t. The last one leaves it running for
// linger, unless it broke, is no longer current or the stream is closing.
func (s *sharedTail[T]) release(t T) {
	s.mu.Lock()
	u := t.use()
	u.users--
	if u.users > 0 {
		s.mu.Unlock()
		return
	}
	if s.cur != t || s.closed || s.linger <= 0 || t.isBroken() {
		if s.cur == t {
			var none T
			s.cur = none
		}
		s.mu.Unlock()
		t.stop()
		return
	}
	u.linger = time.AfterFunc(s.linger, func() { s.stopIdle(t) })
	s.mu.Unlock()
}

// stopIdle stops t once it has lingered without subscribers.
func (s *sharedTail[T]) stopIdle(t T) {
	s.mu.Lock()
	u := t.use()
	if u.users > 0 || u.linger == nil {
		s.mu.Unlock()
		return // taken back meanwhile
	}
	u.linger = nil
	if s.cur == t {
		var none T
		s.cur = none
	}
	s.stops.Add(1)
	s.mu.Unlock()
	defer s.stops.Done()
	t.stop()
}

// closeTails refuses new tails, stops the current one (lingering, since
// every feed has stopped by now, or not: a tail is never left running)
// and waits for those being stopped.
func (s *sharedTail[T]) closeTails() {
	var none T
	s.mu.Lock()
	s.closed = true
	t := s.cur
	s.cur = none
	if t != none {
		t.use().disarm()
	}
	s.mu.Unlock()
	if t != none {
		t.stop()
	}
	s.stops.Wait()
}
