package sources

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
)

// checkingSink checks, while Write runs, that every message still holds
// what the feed sent for its ID, and fails its first Write of every few
// so that unacknowledged events are handed over again.
type checkingSink struct {
	want    func(id string) string
	total   int
	worker  atomic.Pointer[Worker]
	mu      sync.Mutex
	bad     []string
	writes  int
	lastID  string
	settled atomic.Int64
}

func (s *checkingSink) Write(_ context.Context, msgs []sinks.Message) (int, error) {
	// Let the reader decode ahead (into released memory, were any of
	// these events' memory released too early) before looking at them:
	// it can, the queue has room for more than this many events.
	if w := s.worker.Load(); w != nil {
		ahead := uint64(s.settled.Load()) + uint64(len(msgs)) + 1500
		for st := w.Status(); st.Received < ahead && st.Received < uint64(s.total); st = w.Status() {
			runtime.Gosched()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	n := len(msgs)
	if s.writes%7 == 0 {
		n /= 2 // a partial acknowledgement: the rest comes again
	}
	for i := range msgs {
		m := &msgs[i]
		if got, want := string(m.Event.Data), s.want(m.Event.ID); got != want || m.Event.Type != "tick" {
			s.bad = append(s.bad, fmt.Sprintf("id %q: type %q data %.40q, want %.40q", m.Event.ID, m.Event.Type, got, want))
		}
	}
	if n > 0 {
		s.lastID = strings.Clone(msgs[n-1].Event.ID)
		s.settled.Add(int64(n))
	}
	if n < len(msgs) {
		return n, errSinkDown
	}
	return n, nil
}

// TestBatchMemoryReusedOnlyAfterAck: the decoder reuses an event's memory
// only once the sink acknowledged it; every message a sink sees, retried
// ones included, holds the feed's bytes while Write runs.
func TestBatchMemoryReusedOnlyAfterAck(t *testing.T) {
	const total = 20000
	data := func(id string) string {
		// Sizes vary, so events straddle slabs and read buffers; 1500
		// events fill several of the decoder's 64 KiB slabs.
		return "payload " + id + " " + strings.Repeat(id, 30+len(id)*7%13)
	}
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		var b strings.Builder
		for i := 1; i <= total; i++ {
			id := fmt.Sprint(i)
			fmt.Fprintf(&b, "id: %s\nevent: tick\ndata: %s\n\n", id, data(id))
			if i%500 == 0 {
				write(w, b.String())
				b.Reset()
			}
		}
		write(w, b.String())
	})
	sink := &checkingSink{want: data, total: total}
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, QueueSize: 4096, BatchSize: 64, Sleep: sl.Sleep}, sink, &memStore{})
	if err != nil {
		t.Fatal(err)
	}
	sink.worker.Store(w)
	_, r := run(t, w)
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.bad) > 0 {
		t.Fatalf("%d messages changed under the sink, first: %s", len(sink.bad), sink.bad[0])
	}
	if got := sink.settled.Load(); got != total || sink.lastID != fmt.Sprint(total) {
		t.Errorf("acknowledged %d events up to %q, want %d up to %d", got, sink.lastID, total, total)
	}
}
