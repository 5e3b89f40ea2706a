package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/segmentio/kafka-go"
)

// A Kafka stream, while it has subscribers, reads its topic with one
// partition reader per partition into its tail. The tail's position is the
// vector of next offsets of every partition; each frame's id is that
// vector after the frame, encoded once, so every subscriber writes the
// same bytes.
//
// A subscriber's position is a vector too, and one from a catch-up or from
// an earlier tail need not be one the tail went through: the partitions
// interleave differently. Such a subscriber joins at the first frame it
// has not seen in any partition, skips the frames of a partition it is
// already past (no repeat) and writes ids of its own until the tail's
// position catches up with its own in every partition; from then on it
// writes the tail's bytes (see kafkaJoin).

// kafkaTail is the topic's partition readers and the tail they fill.
type kafkaTail struct {
	*tail
	b     *kafkaBackend
	parts []int // sorted, fixed for the tail's life

	// pmu orders the readers' frames: each is given the tail's position
	// after it, then published.
	pmu sync.Mutex
	pos *offsetCursor // the readers' position; its seen is read by the watch
	// after is the position before the window's first frame, per
	// partition, guarded by tail.mu (see evicted).
	after position

	watched *kafkaSub
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	tailUse
	once sync.Once
}

// startTail starts readers of every partition of parts at start.
func (b *kafkaBackend) startTail(parts []int, start position) (*kafkaTail, error) {
	t := &kafkaTail{
		tail:  newTail(b.winEvents, b.winBytes, b.maxPending, 0),
		b:     b,
		parts: parts,
		pos:   newOffsetCursor(b.tag, start),
		after: make(position, len(start)),
	}
	for p, off := range start {
		t.after[p] = off
	}
	t.headID = t.pos.id()
	t.evicted = func(f *frame) { t.after[f.partition] = f.offset + 1 }
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	readers := make([]*kafka.Reader, 0, len(parts))
	for _, p := range parts {
		r, err := b.newReader(p, start[p])
		if err != nil {
			for _, r := range readers {
				_ = r.Close()
			}
			cancel()
			return nil, err
		}
		readers = append(readers, r)
	}
	t.watched = &kafkaSub{cur: t.pos, end: t.breakWith}
	b.watch.add(t.watched)
	b.tailsStarted.Add(1)
	for i, r := range readers {
		t.wg.Add(1)
		go t.read(ctx, parts[i], r)
	}
	return t, nil
}

// read runs one partition's reader into the tail.
func (t *kafkaTail) read(ctx context.Context, p int, r *kafka.Reader) {
	defer t.wg.Done()
	defer r.Close()
	b := t.b
	for {
		km, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if err := b.readError(p, err); err != nil {
				t.breakWith(err)
				return
			}
			continue
		}
		t.pmu.Lock()
		m := kafkaMessage(km)
		t.pos.advance(&m)
		fr := newFrame(0, km.Topic, m.typ, km.Value, t.pos.id())
		fr.partition, fr.offset = km.Partition, km.Offset
		t.publish(fr)
		t.pmu.Unlock()
		if fr.wire == nil {
			b.log.Warn("message skipped: SSE-Event header is not a valid event type", "stream", b.path, "type", m.typ)
		}
	}
}

// readError classifies a reader's error: nil to go on reading, or why the
// reading ends.
func (b *kafkaBackend) readError(p int, err error) error {
	switch {
	case errors.Is(err, kafka.UnknownTopicOrPartition), errors.Is(err, kafka.LeaderNotAvailable):
		// The topic is missing (deleted, not recreated yet) or has no
		// leader yet. kafka-go retries on its own, with backoff: its
		// leader look-up waits for the topic, but a failure past
		// MaxAttempts elsewhere (reading the offsets) is reported. Keep
		// the clients on heartbeats rather than end them into a 503,
		// which ends an EventSource for good; the watch ends them if the
		// topic comes back shorter.
		b.log.Debug("Kafka partition unavailable; the reader retries", "stream", b.path, "topic", b.topic, "partition", p, "err", err)
		return nil
	case errors.Is(err, kafka.OffsetOutOfRange):
		return fmt.Errorf("%w: kafka %s/%d: %w", errLogBelow, b.topic, p, err)
	default:
		return fmt.Errorf("kafka %s/%d: %w", b.topic, p, err)
	}
}

// stop ends the readers and waits for them. It is idempotent.
func (t *kafkaTail) stop() {
	t.once.Do(func() {
		t.b.watch.remove(t.watched)
		t.cancel()
		t.wg.Wait()
		t.breakWith(ErrClosed)
	})
}

// covers reports whether a subscriber at pos can be served from the
// window: it holds every message of every partition from pos on.
func (t *kafkaTail) covers(pos position) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.coversLocked(pos)
}

func (t *kafkaTail) coversLocked(pos position) bool {
	if t.broken != nil || len(pos) != len(t.parts) {
		return false
	}
	for _, p := range t.parts {
		off, ok := pos[p]
		if !ok || off < t.after[p] {
			return false
		}
	}
	return true
}

// joinAt makes s a member at position pos, which the window must cover
// (errNotCovered otherwise). It returns the state s needs while its
// position is not the tail's, or nil when it is.
func (t *kafkaTail) joinAt(s *subscriber, pos position) (*kafkaJoin, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return nil, t.broken
	}
	if !t.coversLocked(pos) {
		return nil, errNotCovered
	}
	// Walk to the first frame s has not seen in its partition, keeping
	// the tail's position before it.
	at := make(position, len(t.after))
	for p, off := range t.after {
		at[p] = off
	}
	n := uint64(len(t.ring))
	k := t.first
	for ; k < t.head; k++ {
		f := t.ring[k%n]
		if f.offset >= pos[f.partition] {
			break
		}
		at[f.partition] = f.offset + 1
	}
	s.place(k)
	t.members = append(t.members, s)
	if k < t.head {
		s.notify()
	}
	var ahead map[int]bool
	for p, off := range pos {
		if off != at[p] {
			if ahead == nil {
				ahead = map[int]bool{}
			}
			ahead[p] = true
		}
	}
	if ahead == nil {
		return nil, nil
	}
	return &kafkaJoin{cur: newOffsetCursor(t.b.tag, pos), ahead: ahead}, nil
}

// kafkaJoin is a subscriber whose position is not the tail's: ahead holds
// the partitions where it is past the tail's position, whose frames it
// skips up to its own; it writes ids of its own (from cur) until ahead is
// empty, when its position is the tail's and its frames' ids are right.
type kafkaJoin struct {
	cur   *offsetCursor
	ahead map[int]bool
}

// frame accounts f and returns the id line to write instead of the
// frame's (nil: the frame's own), or skip for a frame already seen.
func (j *kafkaJoin) frame(f *frame) (idLine []byte, skip bool) {
	p := f.partition
	if j.ahead[p] {
		i, ok := j.cur.index[p]
		if ok && f.offset < j.cur.offs[i] {
			if f.offset+1 >= j.cur.offs[i] {
				delete(j.ahead, p) // the tail has reached it
			}
			return nil, true
		}
		delete(j.ahead, p)
	}
	j.cur.advance(&message{partition: p, offset: f.offset})
	if len(j.ahead) == 0 {
		return nil, false
	}
	return append(append([]byte("id: "), j.cur.id()...), '\n'), false
}

// aligned reports whether the subscriber's position is the tail's.
func (j *kafkaJoin) aligned() bool { return len(j.ahead) == 0 }

// kafkaMessage is the message of a Kafka record.
func kafkaMessage(km kafka.Message) message {
	m := message{subject: km.Topic, data: km.Value, partition: km.Partition, offset: km.Offset}
	for _, h := range km.Headers {
		if h.Key == headerEvent {
			m.typ = string(h.Value)
		}
	}
	return m
}

// acquireTail returns the running tail, starting it at start for the
// first subscriber (or after the last one broke, or when the topic's
// partitions are no longer parts); release must follow. A tail that
// lingers without subscribers is taken back: a client reconnecting soon
// after it left resumes from the window, with no reader to start. The
// watch kept looking at the topic meanwhile, so a lingering tail that no
// longer follows it (recreated, truncated) is broken, never taken back.
func (b *kafkaBackend) acquireTail(parts []int, start position) (*kafkaTail, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	}
	if t := b.cur; t != nil && !t.isBroken() && slices.Equal(t.parts, parts) {
		b.takeLocked(t)
		b.mu.Unlock()
		return t, nil
	}
	// A broken or outdated tail is stopped by its last user, or here if
	// it has none left (it lingered).
	stale, isStale := b.dropIdleLocked()
	b.cur = nil
	t, err := b.startTail(parts, start)
	if err == nil {
		t.users = 1
		b.cur = t
	}
	b.mu.Unlock()
	if isStale {
		stale.stop()
	}
	return t, err
}

// catchUpKafka reads every partition for one subscriber from start with
// readers of its own, at its client's pace, until the tail's window holds
// what follows the position reached: it then hands the subscriber over to
// the tail (a join marker after the last message). The returned stop ends
// it early and waits for it.
func (b *kafkaBackend) catchUpKafka(t *kafkaTail, sub *subscriber, start position) (func(), error) {
	readers := make(map[int]*kafka.Reader, len(start))
	for p, off := range start {
		r, err := b.newReader(p, off)
		if err != nil {
			for _, r := range readers {
				_ = r.Close()
			}
			return nil, err
		}
		readers[p] = r
	}
	b.catchUps.Add(1)
	sub.ch = make(chan message, catchUpBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	stopc := make(chan struct{})
	var (
		mu     sync.Mutex
		pos    = make(position, len(start))
		joined bool
		wg     sync.WaitGroup
	)
	for p, off := range start {
		pos[p] = off
	}
	for p, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				km, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if err := b.readError(p, err); err != nil {
						sub.fail(err)
						cancel()
						return
					}
					continue
				}
				mu.Lock()
				if joined {
					mu.Unlock()
					return
				}
				if !sub.push(kafkaMessage(km), stopc) {
					mu.Unlock()
					cancel()
					return
				}
				pos[p] = km.Offset + 1
				if t.covers(pos) {
					joined = true
					sub.push(message{join: true}, stopc)
					mu.Unlock()
					cancel()
					return
				}
				mu.Unlock()
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stopc)
			cancel()
			wg.Wait()
		})
	}, nil
}
