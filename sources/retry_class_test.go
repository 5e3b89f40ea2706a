package sources

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/message"
)

// failingSink fails its first fails Writes with err, then acknowledges.
type failingSink struct {
	err   error
	fails atomic.Int32
}

func (s *failingSink) Write(_ context.Context, msgs []message.Message) (int, error) {
	if s.fails.Add(-1) >= 0 {
		return 0, s.err
	}
	return len(msgs), nil
}

// TestSinkRetryFollowsTheFailureClass: an unreachable broker is retried
// often (its return is all that is needed), a refusal that needs someone
// to act only at the longest backoff; the worker used to treat both alike.
func TestSinkRetryFollowsTheFailureClass(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		min, max time.Duration // every delay within
	}{
		{"not connected", fmt.Errorf("nats: %w", retry.ErrNotConnected), 0, notConnectedRetry},
		{"permanent", retry.MarkPermanent(fmt.Errorf("publish permission denied")), time.Minute, time.Minute},
		{"transient", fmt.Errorf("timeout"), 75 * time.Millisecond, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				sseHeaders(w)
				write(w, event(1, "\n"))
				<-r.Context().Done() // no reconnection: every delay is a sink retry
			})
			sink := &failingSink{err: tc.err}
			sink.fails.Store(6)
			var sl fakeSleep
			w, err := New(Config{Name: tname(t), URL: srv.URL, RetryMax: time.Minute, Sleep: sl.Sleep}, sink, nil)
			if err != nil {
				t.Fatal(err)
			}
			stop, _ := run(t, w)
			waitFor(t, "the event delivered", func() bool { return w.Status().Forwarded == 1 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			ds := sl.delays()
			if len(ds) != 6 {
				t.Fatalf("delays = %v, want six sink retries", ds)
			}
			for i, d := range ds {
				if d < tc.min || d > tc.max {
					t.Errorf("sink retry %d waited %v, want within [%v, %v] (all: %v)", i, d, tc.min, tc.max, ds)
				}
			}
		})
	}
}
