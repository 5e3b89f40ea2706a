package streams

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ssebridge/ssebridge/sse"
)

// A stream shares one broker reader between all its subscribers: the
// reader appends each message, encoded once, to the stream's tail, a
// bounded window of its most recent events, and every subscriber writes
// the same bytes from there at its own pace. A subscriber is an index into
// the window, not a buffer: an idle one costs no memory per event, and one
// that stops taking data while further behind than max_pending events (or
// falls out of the window) is cut off and resumes with its Last-Event-ID.
//
// What counts as slow: a subscriber is cut off when more than max_pending
// events of the window have not been taken by its connection (written to
// it, the frames of a write still waiting for room included) AND a write
// to it has waited for room in its connection for stallAfter. A burst
// larger than max_pending arriving at once (a Kafka fetch, a JetStream
// pull batch, a fast publisher) puts every subscriber that far behind for
// a moment, and the subscribers the writers have not got round to yet
// have no write waiting: they are not slow, and are not cut. Memory stays
// bounded by the window, whatever the pace: a subscriber whose next event
// leaves it is cut off at once, so nothing is ever skipped silently.

// stallAfter is how long a write to a subscriber more than max_pending
// events behind may wait for room in its connection before the subscriber
// is cut off. A client that reads takes a burst in far less; one that
// stopped reading never does.
const stallAfter = time.Second

// frame is one event as every subscriber of a tail writes it.
type frame struct {
	// seq is the JetStream stream sequence (0 for core NATS).
	seq     uint64
	subject string
	typ     string // as published; "" is the default type
	// id is the event's id, shared by every subscriber; "" for core NATS,
	// whose ids count the events of each connection.
	id string
	// wire is the whole event (without its id line for core NATS); nil
	// for a message that cannot be an event (a type with a line break).
	wire []byte
	// idEnd is the length of wire's id line (0: none), so that a
	// subscriber whose position is its own can write the rest.
	idEnd int
	// partition and offset locate a Kafka message.
	partition int
	offset    int64
}

// frameOverhead approximates what a frame costs beyond its bytes.
const frameOverhead = 128

func (f *frame) size() int {
	return len(f.wire) + len(f.subject) + len(f.typ) + len(f.id) + frameOverhead
}

func (f *frame) eventType() string {
	if f.typ == "" {
		return sse.DefaultType
	}
	return f.typ
}

// newFrame encodes a message once for every subscriber. A type that cannot
// be written (a line break in it) yields a frame with no wire, which
// subscribers skip.
func newFrame(seq uint64, subject, typ string, data []byte, id string) *frame {
	f := &frame{seq: seq, subject: subject, typ: typ, id: id}
	t := typ
	if t == sse.DefaultType {
		t = ""
	}
	wire, err := sse.AppendEvent(make([]byte, 0, len(data)+len(id)+len(t)+24), sse.Event{ID: id, Type: t, Data: data})
	if err == nil {
		f.wire = wire
		if id != "" {
			f.idEnd = len("id: ") + len(id) + 1
		}
	}
	return f
}

// errOutOfWindow cuts a subscriber whose next event left the window: it
// is slow, even if within max_pending events, as the window's byte bound
// may hold fewer.
var errOutOfWindow = fmt.Errorf("%w: its next event left the stream's window of recent events", errSlow)

// tail is the shared reader's window and the subscribers reading it.
type tail struct {
	maxPending uint64
	maxBytes   int

	mu sync.RWMutex
	// ring holds the frames with absolute indexes [first, head).
	ring        []*frame
	first, head uint64
	bytes       int
	// after and last bound the JetStream positions the window covers: it
	// holds every message of the reader with a sequence in (after, last].
	after, last uint64
	members     []*subscriber
	// sched gathers the members' connections publish queues at once.
	sched []*connSub
	// woke is when the members were last woken (UnixNano), held how many
	// frames were published since without waking them, and flush the
	// timer that will, while the writers are paced (pacing.go).
	woke       int64
	held       int
	flush      *time.Timer
	flushArmed bool
	// pace, when set (tests), replaces the writers' pacing gap.
	pace func() time.Duration
	// broken is why the reader ended; a broken tail takes no one new.
	broken error
	// headID is the id of the last frame (or of the start): where a
	// subscriber joining at the head starts.
	headID string
	// evicted, when set, is told of each frame leaving the window, under
	// mu.
	evicted func(*frame)
	// stall is stallAfter, and now the clock it is measured with (tests
	// set both).
	stall time.Duration
	now   func() time.Time
}

// newTail makes a window of at most events frames and bytes bytes (at
// least max_pending frames: a subscriber may fall that far behind), whose
// reader starts after position start.
func newTail(events, bytes, maxPending int, start uint64) *tail {
	// One more than max_pending: the lag is measured before the oldest
	// frame a subscriber still needs is evicted.
	events = max(events, maxPending+1)
	return &tail{
		maxPending: uint64(maxPending),
		maxBytes:   bytes,
		ring:       make([]*frame, events),
		after:      start,
		last:       start,
		stall:      stallAfter,
		now:        time.Now,
	}
}

// publish appends f, evicting the oldest frames beyond the bounds, then
// wakes every member and cuts those now slow: out of the window, or more
// than max_pending frames behind with a write waiting for stall. It is
// called by the reader's goroutine only.
func (t *tail) publish(f *frame) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return
	}
	n := uint64(len(t.ring))
	if t.head-t.first == n {
		t.evict()
	}
	t.ring[t.head%n] = f
	t.head++
	if f.id != "" {
		t.headID = f.id
	}
	t.bytes += f.size()
	if f.seq > t.last {
		t.last = f.seq
	}
	for t.bytes > t.maxBytes && t.head-t.first > 1 {
		t.evict()
	}
	var now int64 // read once, for the first member that needs it
	for i := 0; i < len(t.members); {
		s := t.members[i]
		switch {
		case s.next.Load() < t.first:
			t.drop(i)
			s.cut(errOutOfWindow)
			continue
		case t.head-s.taken.Load() > t.maxPending && t.stalledLocked(s, &now):
			t.drop(i)
			s.cut(errSlow)
			continue
		}
		i++
	}
	t.wake(&now)
}

// notifyLocked wakes every member: the handlers of their own at once, and
// the taken-over connections with one push to the writers for them all.
// Callers hold mu.
func (t *tail) notifyLocked() {
	var pool *writerPool
	batch := t.sched[:0]
	for _, s := range t.members {
		c := s.cs.Load()
		if c == nil {
			s.notify()
			continue
		}
		if !c.mark() {
			continue
		}
		if c.pool != pool {
			// All the connections of a server share its writers; a
			// change of pool (never seen in practice) flushes.
			if pool != nil {
				pool.pushAll(batch)
			}
			pool, batch = c.pool, batch[:0]
		}
		batch = append(batch, c)
	}
	if pool != nil {
		pool.pushAll(batch)
	}
	clear(batch)
	t.sched = batch[:0]
}

// stalledLocked reports whether a write to s has waited for room for
// stall; *now caches the clock. Callers hold mu.
func (t *tail) stalledLocked(s *subscriber, now *int64) bool {
	since := s.stalled.Load()
	if since == 0 {
		return false
	}
	if *now == 0 {
		*now = t.now().UnixNano()
	}
	return *now-since >= int64(t.stall)
}

// slow reports whether s, whose write has waited for room for stall, is
// more than max_pending frames behind, and if so removes it: its caller
// cuts it off.
func (t *tail) slow(s *subscriber) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head-s.taken.Load() <= t.maxPending {
		return false
	}
	for i, m := range t.members {
		if m == s {
			t.drop(i)
			break
		}
	}
	return true
}

// evict drops the oldest frame. Callers hold mu.
func (t *tail) evict() {
	n := uint64(len(t.ring))
	f := t.ring[t.first%n]
	t.ring[t.first%n] = nil
	t.first++
	t.bytes -= f.size()
	if f.seq > t.after {
		t.after = f.seq
	}
	if t.evicted != nil {
		t.evicted(f)
	}
}

// drop removes members[i]. Callers hold mu.
func (t *tail) drop(i int) {
	last := len(t.members) - 1
	t.members[i] = t.members[last]
	t.members[last] = nil
	t.members = t.members[:last]
}

// joinHead makes s a member that starts with the next frame; it returns
// the JetStream position it starts after.
func (t *tail) joinHead(s *subscriber) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return 0, t.broken
	}
	s.place(t.head)
	t.members = append(t.members, s)
	return t.last, nil
}

// joinHeadID is joinHead, returning the id of the position it starts
// after.
func (t *tail) joinHeadID(s *subscriber) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return "", t.broken
	}
	s.place(t.head)
	t.members = append(t.members, s)
	return t.headID, nil
}

// covers reports whether the window holds every message after JetStream
// position p, so a subscriber there can be served from memory.
func (t *tail) covers(p uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.broken == nil && t.after <= p && p <= t.last
}

// errNotCovered means the window no longer holds the events after a
// position.
var errNotCovered = errors.New("position not in the stream's window")

// joinAfter makes s a member that starts with the first frame after
// JetStream position p, which the window must cover.
func (t *tail) joinAfter(s *subscriber, p uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return t.broken
	}
	if p < t.after || p > t.last {
		return errNotCovered
	}
	n := uint64(len(t.ring))
	k := sort.Search(int(t.head-t.first), func(i int) bool { return t.ring[(t.first+uint64(i))%n].seq > p })
	next := t.first + uint64(k)
	s.place(next)
	t.members = append(t.members, s)
	if next < t.head {
		s.notify()
	}
	return nil
}

// leave removes s if it is a member.
func (t *tail) leave(s *subscriber) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, m := range t.members {
		if m == s {
			t.drop(i)
			return
		}
	}
}

// read appends to buf the frames s has not written yet, up to max, and
// advances s past them (its taken follows once they are written). It
// returns errOutOfWindow if they are gone.
func (t *tail) read(s *subscriber, buf []*frame, limit int) ([]*frame, bool, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	next := s.next.Load()
	if next < t.first {
		return buf, false, errOutOfWindow
	}
	n := uint64(len(t.ring))
	for next < t.head && len(buf) < limit {
		buf = append(buf, t.ring[next%n])
		next++
	}
	s.next.Store(next)
	return buf, next < t.head, nil
}

// breakWith ends the tail: the reader can no longer deliver every message
// in order (it failed, or the stream was recreated), so every member is
// cut off and resumes with its Last-Event-ID.
func (t *tail) breakWith(err error) {
	t.mu.Lock()
	if t.broken != nil {
		t.mu.Unlock()
		return
	}
	t.broken = err
	members := t.members
	t.members = nil
	if t.flush != nil {
		t.flush.Stop()
	}
	t.mu.Unlock()
	for _, s := range members {
		s.fail(err)
	}
}

// isBroken reports whether the tail has ended.
func (t *tail) isBroken() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.broken != nil
}
