package sources

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestRetryAfterDateCapped: Retry-After in seconds is capped at a day, so a
// date (a server whose clock is years ahead, or a placeholder like
// 2100) must be capped the same way, not stall the source for decades.
func TestRetryAfterDateCapped(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch conns.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "Fri, 31 Dec 2100 23:59:59 GMT")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "99999999999")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryMax: 5 * time.Second, Sleep: sl.Sleep}, newTestSink(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	ds := sl.delays()
	if len(ds) != 2 {
		t.Fatalf("delays = %v", ds)
	}
	for i, d := range ds {
		if d < time.Hour || d > 24*time.Hour {
			t.Errorf("delay %d = %v, want honoured but at most 24h", i, d)
		}
	}
}
