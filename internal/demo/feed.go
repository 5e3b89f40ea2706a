package demo

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Feed is the demo's upstream: an SSE feed that sends the current time.
//
// Every event has an increasing numeric id, so a client resuming with
// Last-Event-ID N continues at N+1, exactly like a real replaying feed; the
// stream starts with a retry: field, so clients reconnect at the pace the
// feed asks for.
type Feed struct {
	// Interval between ticks (default one second).
	Interval time.Duration
	// Burst, when above 1, sends that many events back to back per tick,
	// to watch the bridge under load.
	Burst int
	// Retry is the reconnection delay announced to clients (default 2s).
	Retry time.Duration
}

// ServeHTTP streams ticks until the client goes away.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	interval := f.Interval
	if interval <= 0 {
		interval = time.Second
	}
	retry := f.Retry
	if retry <= 0 {
		retry = 2 * time.Second
	}
	burst := max(f.Burst, 1)
	next := uint64(1)
	if last := strings.TrimSpace(r.Header.Get("Last-Event-ID")); last != "" {
		if n, err := strconv.ParseUint(last, 10, 64); err == nil {
			next = n + 1
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if _, err := fmt.Fprintf(w, ": ssebridge demo feed\nretry: %d\n\n", retry.Milliseconds()); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	buf := make([]byte, 0, 256)
	for {
		now := time.Now().UTC()
		for range burst {
			buf = buf[:0]
			buf = fmt.Appendf(buf, "id: %d\nevent: tick\ndata: {\"n\":%d,\"time\":%q}\n\n", next, next, now.Format(time.RFC3339Nano))
			if _, err := w.Write(buf); err != nil {
				return
			}
			next++
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}
