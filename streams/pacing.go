package streams

import (
	"sync/atomic"
	"time"
)

// Pacing: each write to a socket costs about the same (most of it the
// kernel's, which on loopback also does the receiving side's work),
// whether it carries one event or several. While the writers have little
// to do, a tail wakes its subscribers for every event, and each is written
// at once. Once writing every event at once would keep the writers busy
// (more than pacingOn of a core), a tail wakes its subscribers at most
// once per pacingGap: the first event after a quiet gap still leaves at
// once, and the events that follow it within the gap leave together when
// it ends, in one write per subscriber. A subscriber's events are only
// held back, never dropped or reordered, and never more than pacingGap
// (or pacingHold events) at a time. A stream with Coalesce set gathers
// its own way and is not paced.

const (
	// pacingGap is the least time between two wake-ups of a tail's
	// subscribers while the writers are paced: at most this much latency
	// is added to an event, and at 100 events/s a write carries three.
	pacingGap = 30 * time.Millisecond
	// pacingOn and pacingOff are the writers' load, in cores, at which
	// pacing starts and stops: the time they would spend if each event
	// were written at once. The gap between them keeps it from flapping.
	pacingOn  = 0.4
	pacingOff = 0.2
	// pacingWindow is how often the writers' load is measured.
	pacingWindow = 100 * time.Millisecond
	// pacingHold bounds the events a tail holds back: a burst wakes the
	// subscribers at once, whatever the gap.
	pacingHold = 64
)

// pacer measures the writers' load and says whether tails pace.
type pacer struct {
	busy   atomic.Int64 // ns the writers spent running connSubs
	writes atomic.Int64 // writes made
	events atomic.Int64 // events they carried
	start  atomic.Int64 // UnixNano the window started
	gap    atomic.Int64 // ns; 0: not pacing
}

// account adds a writer's batch (busy ns, writes, events) and, once a
// window has passed, decides whether to pace.
func (p *pacer) account(now, busy, writes, events int64) {
	p.busy.Add(busy)
	p.writes.Add(writes)
	p.events.Add(events)
	start := p.start.Load()
	if start == 0 {
		p.start.CompareAndSwap(0, now)
		return
	}
	if now-start < int64(pacingWindow) || !p.start.CompareAndSwap(start, now) {
		return
	}
	p.gap.Store(int64(nextGap(time.Duration(p.gap.Load()), now-start, p.busy.Swap(0), p.writes.Swap(0), p.events.Swap(0))))
}

// nextGap is the pacing gap after a window of span ns in which the writers
// were busy for busy ns making writes writes that carried events events.
// Their load had they written each event at once is the load measured
// times the events per write (a write costs about the same whatever it
// carries).
func nextGap(gap time.Duration, span, busy, writes, events int64) time.Duration {
	if span <= 0 {
		return gap
	}
	perWrite := 1.0
	if writes > 0 {
		perWrite = max(float64(events)/float64(writes), 1)
	}
	load := float64(busy) / float64(span) * perWrite
	switch {
	case load >= pacingOn:
		return pacingGap
	case load < pacingOff:
		return 0
	}
	return gap
}

// pacingGapOf is the gap the tail's writers pace at now. Callers hold mu.
func (t *tail) pacingGapOf() int64 {
	if t.pace != nil {
		return int64(t.pace())
	}
	for _, s := range t.members {
		if c := s.cs.Load(); c != nil {
			if c.st.cfg.Coalesce > 0 {
				return 0 // the stream gathers its own way
			}
			return c.pool.pace.gap.Load()
		}
	}
	return 0
}

// wake wakes the members for the frames just published, or holds the
// wake-up back while paced (see above). Callers hold mu.
func (t *tail) wake(now *int64) {
	if gap := t.pacingGapOf(); gap > 0 {
		if *now == 0 {
			*now = t.now().UnixNano()
		}
		if since := *now - t.woke; since < gap && t.held < pacingHold {
			t.held++
			if !t.flushArmed {
				t.flushArmed = true
				if t.flush == nil {
					t.flush = time.AfterFunc(time.Duration(gap-since), t.flushHeld)
				} else {
					t.flush.Reset(time.Duration(gap - since))
				}
			}
			return
		}
		t.woke = *now
	}
	t.held = 0
	t.notifyLocked()
}

// flushHeld wakes the members for the frames held back.
func (t *tail) flushHeld() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushArmed = false
	if t.held == 0 || t.broken != nil {
		return
	}
	t.held = 0
	t.woke = t.now().UnixNano()
	t.notifyLocked()
}
