package streams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	ssemsg "github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sse"
)

// headerEvent is the broker header holding a message's event type.
const headerEvent = ssemsg.HeaderEvent

// errSlow is why a subscriber that fell behind was cut off: more than
// max_pending events behind while its connection took no data for
// stallAfter (or out of the window, errOutOfWindow).
var errSlow = errors.New("subscriber fell more than max_pending events behind and its connection stopped taking data")

// errBroker marks a subscription ended by its broker side.
var errBroker = errors.New("broker subscription failed")

// errCutOff ends a handler whose subscriber was cut off.
var errCutOff = errors.New("subscriber cut off")

// message is one queue message on its way to a subscriber. Data is shared
// read-only between the subscribers of a core NATS subject.
type message struct {
	subject string
	typ     string
	data    []byte
	// seq is the JetStream stream sequence.
	seq uint64
	// partition and offset locate a Kafka message.
	partition int
	offset    int64
	// join, set on the marker after the last message of a catch-up,
	// tells the handler to continue from the stream's tail (JetStream:
	// after position seq; Kafka: at the position the handler holds).
	join bool
}

func (m *message) eventType() string {
	if m.typ == "" {
		return sse.DefaultType
	}
	return m.typ
}

// cursor turns the messages a subscriber has been given into the id of the
// last one, which the client sends back as Last-Event-ID.
type cursor interface {
	// advance accounts m as delivered (or deliberately skipped).
	advance(m *message)
	// id is the resume token for the position after the last advance.
	id() string
}

// feed is a subscriber's live broker subscription.
type feed struct {
	cur cursor
	// tail is the stream's shared window the subscriber reads from, or
	// joins once its catch-up (on sub.ch) is done; nil for a feed that
	// only offers messages (Kafka).
	tail *tail
	// subject narrows the events written to those of matching subjects
	// ("": all), for feeds that read more than the subscriber asked.
	subject string
	// start is the id of the position the feed starts from, exactly as a
	// Last-Event-ID resuming there: a client that came without one is told
	// it before any event, so that dropping before its first event still
	// leaves it an id to resume from. "" where the start has no id (core
	// NATS; a JetStream start by time).
	start string
	// join continues from the tail after the last message of a catch-up
	// (m, its join marker); errNotCovered if the window moved on.
	join func(m *message) error
	// kj, when set and on, gives the ids of a Kafka subscriber whose
	// position is not one of the tail's (see kafkaJoin).
	kj   *kafkaJoin
	stop func() // idempotent; returns once nothing more will be offered
	// check, when set, is called at every heartbeat; an error ends the
	// response, so that a feed that can no longer deliver (its connection
	// closed for good) is never mistaken for a quiet one.
	check func() error
}

// newFeed wraps stop so that it runs once.
func newFeed(cur cursor, stop func()) feed {
	var once sync.Once
	return feed{cur: cur, stop: func() { once.Do(stop) }}
}

// backend is one kind of broker behind a stream.
type backend interface {
	// kind is "nats", "jetstream" or "kafka".
	kind() string
	// subscribe positions a feed for req and returns once the broker-side
	// subscription is in place: every message published afterwards (or
	// after the requested position) will be offered to sub. Errors wrap
	// ErrInvalidLastEventID, ErrForeignLastEventID, ErrBadRequest or
	// ErrUnavailable.
	subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error)
	// close releases what the backend shares between subscribers, after
	// every feed has stopped.
	close()
}

// subscriber is one response's place in its stream: an index into the
// stream's shared tail, and for a feed of its own (a Kafka reader, a
// JetStream catch-up) the bounded buffer between that feed (which must
// never block) and the HTTP response (which may).
type subscriber struct {
	ch   chan message  // nil when the subscriber reads only the tail
	done chan struct{} // closed when cut off
	rc   *http.ResponseController
	// next is the absolute index of the next tail frame to write.
	next atomic.Uint64
	// taken is the absolute index of the first tail frame its connection
	// has not wholly taken: the frames before it were written to it. The
	// frames of a write still waiting for room count as not taken.
	taken atomic.Uint64
	// stalled is since when a write to it has been waiting for room in
	// its connection (UnixNano; 0: no write waiting).
	stalled atomic.Int64
	// wake says that the tail has frames after next.
	wake chan struct{}

	// isCut is set with err, for the checks on every message.
	isCut atomic.Bool
	// cs is set once the server has taken the connection over (conn.go):
	// the writers, not a goroutine of its own, then serve it.
	cs atomic.Pointer[connSub]

	mu       sync.Mutex
	err      error     // why it was cut off
	deadline time.Time // of writes, as last set
}

// newSubscriber makes a subscriber with a buffer of maxPending messages
// for a feed of its own (0: none, it reads the tail).
func newSubscriber(maxPending int, rc *http.ResponseController) *subscriber {
	s := &subscriber{
		done: make(chan struct{}),
		wake: make(chan struct{}, 1),
		rc:   rc,
	}
	if maxPending > 0 {
		s.ch = make(chan message, maxPending)
	}
	return s
}

// place sets the subscriber's position in the tail to the frame at index
// k, which it has neither written nor been given.
func (s *subscriber) place(k uint64) {
	s.next.Store(k)
	s.taken.Store(k)
}

// notify wakes the handler (or schedules the writers) without blocking.
func (s *subscriber) notify() {
	if c := s.cs.Load(); c != nil {
		c.schedule()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// push hands m to the handler, waiting for room: a catch-up reader is the
// subscriber's own, so it follows its client's pace. It reports false once
// the subscriber is cut off or stop is closed.
func (s *subscriber) push(m message, stop <-chan struct{}) bool {
	select {
	case s.ch <- m:
		return !s.isCut.Load()
	case <-s.done:
		return false
	case <-stop:
		return false
	}
}

// offer hands m over without ever blocking the broker side; a subscriber
// whose buffer is full is cut off instead of slowing everyone down.
func (s *subscriber) offer(m message) {
	// Once a message has been dropped, none after it may pass: the
	// handler could write them, and the client would hold an id beyond
	// the gap. The cut makes the client resume from before it instead.
	if s.isCut.Load() {
		return
	}
	select {
	case s.ch <- m:
	default:
		s.cut(errSlow)
	}
}

// cut ends the subscription for err (the first reason wins). A handler
// blocked writing to a client that stopped reading is woken by an expired
// write deadline, so the cut takes effect at once.
func (s *subscriber) cut(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	s.isCut.Store(true)
	close(s.done)
	if s.rc != nil {
		_ = s.rc.SetWriteDeadline(time.Now())
	}
	if c := s.cs.Load(); c != nil {
		_ = c.conn.SetWriteDeadline(time.Now())
		c.schedule()
	}
}

// fail cuts the subscription because the broker side broke; the client
// reconnects with its Last-Event-ID.
func (s *subscriber) fail(err error) { s.cut(fmt.Errorf("%w: %w", errBroker, err)) }

func (s *subscriber) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// armWrite makes sure the next write has a deadline at least
// writeTimeout/2 away, unless the subscriber has been cut off. Setting a
// deadline resets a runtime timer, so it is renewed only when half of it
// has passed, not on every write: a busy subscriber costs one timer reset
// per writeTimeout/2 instead of one per event. Holding mu orders it with
// cut: a cut can never be undone by a later deadline.
func (s *subscriber) armWrite() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	if s.rc != nil {
		now := time.Now()
		if s.deadline.Sub(now) < writeTimeout/2 {
			// ErrNotSupported (e.g. a wrapped writer) leaves only the
			// cut via done, which is checked between writes.
			s.deadline = now.Add(writeTimeout)
			_ = s.rc.SetWriteDeadline(s.deadline)
		}
	}
	return true
}
