package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A feed is the replaying upstream of one pipeline: event seq (1..total)
// becomes available at start + seq/rate, and a connection carrying
// Last-Event-ID L continues with L+1. Its misbehaviour is chosen per
// connection by the hooks, so each row injects its own faults.
type feed struct {
	name  string
	total int
	rate  float64
	rng   *rand.Rand

	// idOf is the id: field of event seq; nil means strconv.Itoa(seq).
	idOf func(seq int) string
	// resume maps a Last-Event-ID to the next seq to send; nil parses the
	// decimal id. It returns 1 (start) for an unknown id.
	resume func(id string) int
	// dataOf is the data: field of event seq; nil means the default payload.
	dataOf func(seq int) []byte
	// dropBudget, when set, is the number of bytes connection conn may carry
	// before the feed cuts it (at whatever byte that falls on); 0 means no cut.
	dropBudget func(conn int) int
	// before, when set, may answer connection conn itself (an HTML page, a
	// stall): it returns true when it handled the request.
	before func(ctx context.Context, w http.ResponseWriter, r *http.Request, conn int) bool
	// after, when set, runs after event seq has been written on connection
	// conn: hostile bytes (a 1 GiB line, a trickle) are written there.
	after func(ctx context.Context, w *bufio.Writer, flush func() error, seq, conn int) error

	mu      sync.Mutex
	started time.Time
	conns   int
	drops   []time.Time
	lastIDs []string // Last-Event-ID of each connection, "" when absent
}

func newFeed(name string, total int, rate float64, seed uint64) *feed {
	return &feed{name: name, total: total, rate: rate, rng: rand.New(rand.NewPCG(seed, 7))}
}

func (f *feed) start(t time.Time) {
	f.mu.Lock()
	f.started = t
	f.mu.Unlock()
}

// available returns how many events exist now (0 before start).
func (f *feed) available(now time.Time) int {
	f.mu.Lock()
	st := f.started
	f.mu.Unlock()
	if st.IsZero() {
		return 0
	}
	n := int(now.Sub(st).Seconds() * f.rate)
	return min(n, f.total)
}

// timeOf is when event seq becomes available.
func (f *feed) timeOf(seq int) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started.Add(time.Duration(float64(seq) / f.rate * float64(time.Second)))
}

func (f *feed) id(seq int) string {
	if f.idOf != nil {
		return f.idOf(seq)
	}
	return strconv.Itoa(seq)
}

func (f *feed) data(seq int) []byte {
	if f.dataOf != nil {
		return f.dataOf(seq)
	}
	return defaultData(f.name, seq)
}

// defaultData is a JSON payload of about 120 bytes whose seq field the
// counters read back.
func defaultData(name string, seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"feed":%q,"pad":"%s"}`, seq, name, padding)
}

const padding = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"

func (f *feed) next(lastID string) int {
	if lastID == "" {
		return 1
	}
	if f.resume != nil {
		return f.resume(lastID)
	}
	n, err := strconv.Atoi(lastID)
	if err != nil || n < 0 {
		return 1
	}
	return n + 1
}

func (f *feed) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *feed) dropTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.drops...)
}

// countingWriter cuts the connection once budget bytes went through.
type countingWriter struct {
	w      http.ResponseWriter
	budget int // <= 0: unlimited
	n      int
	cut    bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.cut {
		return 0, errCut
	}
	if c.budget > 0 && c.n+len(p) >= c.budget {
		k := c.budget - c.n
		_, err := c.w.Write(p[:k])
		c.n += k
		c.cut = true
		if err != nil {
			return k, err
		}
		return k, errCut
	}
	k, err := c.w.Write(p)
	c.n += k
	return k, err
}

var errCut = fmt.Errorf("feed: connection cut on purpose")

// ServeHTTP serves one SSE connection.
func (f *feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f.mu.Lock()
	f.conns++
	conn := f.conns
	lastID := r.Header.Get("Last-Event-ID")
	f.lastIDs = append(f.lastIDs, lastID)
	f.mu.Unlock()
	if f.before != nil && f.before(ctx, w, r, conn) {
		return
	}
	budget := 0
	if f.dropBudget != nil {
		budget = f.dropBudget(conn)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	cw := &countingWriter{w: w, budget: budget}
	bw := bufio.NewWriterSize(cw, 32<<10)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	// stream ends with the connection (or the cut); the error says no more.
	_ = f.stream(ctx, bw, flush, f.next(lastID), conn)
	if cw.cut {
		_ = rc.Flush()
		f.mu.Lock()
		f.drops = append(f.drops, time.Now())
		cutHard := f.rng.IntN(2) == 0
		f.mu.Unlock()
		if cutHard {
			// Abort: no terminating chunk, the client sees a broken stream.
			panic(http.ErrAbortHandler)
		}
		return // a clean end of the response, mid-event
	}
}

func (f *feed) stream(ctx context.Context, bw *bufio.Writer, flush func() error, next, conn int) error {
	if _, err := bw.WriteString(": chaos feed\n\n"); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	hb := time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		avail := f.available(now)
		if next > avail {
			if err := flush(); err != nil {
				return err
			}
			wait := 200 * time.Millisecond
			if next <= f.total {
				wait = min(wait, time.Until(f.timeOf(next)))
			}
			if now.Sub(hb) > time.Second {
				if _, err := bw.WriteString(": hb\n\n"); err != nil {
					return err
				}
				if err := flush(); err != nil {
					return err
				}
				hb = now
			}
			if wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			continue
		}
		for ; next <= avail; next++ {
			if err := writeEvent(bw, f.id(next), f.data(next)); err != nil {
				return err
			}
			if f.after != nil {
				if err := f.after(ctx, bw, flush, next, conn); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		hb = time.Now()
	}
	return ctx.Err()
}

func writeEvent(bw *bufio.Writer, id string, data []byte) error {
	bw.WriteString("id: ")
	bw.WriteString(id)
	bw.WriteString("\ndata: ")
	bw.Write(data)
	_, err := bw.WriteString("\n\n")
	return err
}
