package logging

import (
	"sync"
	"time"
)

// Every rate-limits a repeated log line: a failure that recurs per event
// (a checkpoint store that refuses every write, a stream of duplicates)
// must cost a line every few seconds, with a count, not one per event.
// The zero value is unusable; create it with NewEvery.
type Every struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewEvery allows one line per interval.
func NewEvery(interval time.Duration) *Every { return &Every{interval: interval} }

// Allow reports whether a line may be logged now; when it may, suppressed
// is how many calls were refused since the last allowed one, for the line
// to say how many occurrences it stands for.
func (e *Every) Allow() (ok bool, suppressed int) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.last.IsZero() && now.Sub(e.last) < e.interval {
		e.suppressed++
		return false, 0
	}
	e.last = now
	suppressed, e.suppressed = e.suppressed, 0
	return true, suppressed
}
