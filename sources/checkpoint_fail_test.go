package sources

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"github.com/ssebridge/ssebridge/sinks"
)

// brokenStore refuses every Save while down, like a read-only data_dir.
type brokenStore struct {
	memStore
	down     atomic.Bool
	attempts atomic.Int64
}

func (s *brokenStore) Save(ctx context.Context, p, id string) error {
	s.attempts.Add(1)
	if s.down.Load() {
		return errors.New("open checkpoints/p.tmp: read-only file system")
	}
	return s.memStore.Save(ctx, p, id)
}

// shortSleep waits a millisecond whatever the delay asked: the test
// observes what the worker does between attempts, not how long it waits.
func shortSleep(ctx context.Context, _ time.Duration) error { return sleep(ctx, time.Millisecond) }

// TestFailingCheckpointStorePausesForwarding: with a read-only data_dir
// the bridge used to forward on, report itself connected and ready, and log
// one warning per event; a crash then replayed the whole outage. Now the
// failure shows in Status, the warnings are rate-limited, forwarding stops
// once MaxUnsaved events are unsaved (not one more) and resumes by itself
// when the store is writable again.
func TestFailingCheckpointStorePausesForwarding(t *testing.T) {
	const total, maxUnsaved = 200, 20
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		for i := startID(r); i <= total; i++ {
			write(w, event(i, "\n"))
		}
		<-r.Context().Done()
	})
	store := &brokenStore{}
	store.down.Store(true)
	sink := newTestSink()
	var logs syncbuf.Buffer
	name := tname(t)
	w, err := New(Config{
		Name: name, URL: srv.URL, MaxUnsaved: maxUnsaved, BatchSize: 7, CheckpointEvery: 1, CheckpointInterval: time.Millisecond,
		Sleep: shortSleep, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)

	waitFor(t, "the worker paused on the failing store", func() bool {
		st := w.Status()
		return st.State == StatePaused && st.Unsaved == maxUnsaved
	})
	// It keeps retrying the save, and forwards nothing meanwhile.
	at := store.attempts.Load()
	waitFor(t, "more save attempts", func() bool { return store.attempts.Load() >= at+20 })
	if n := len(sink.messages()); n != maxUnsaved {
		t.Fatalf("sink got %d events while the checkpoint store failed, want exactly max_unsaved = %d", n, maxUnsaved)
	}
	st := w.Status()
	if !strings.Contains(st.CheckpointError, "read-only file system") || st.CheckpointErrorSince.IsZero() {
		t.Errorf("Status.CheckpointError = %q (since %v), want the store's error", st.CheckpointError, st.CheckpointErrorSince)
	}
	if got := value(metrics.CheckpointFailures.WithLabelValues(name)); got < 20 {
		t.Errorf("checkpoint failures metric = %v, want every failed save counted (>= 20)", got)
	}
	if n := strings.Count(logs.String(), "checkpoint not saved"); n > 2 {
		t.Errorf("%d 'checkpoint not saved' lines for %d failures, want them rate-limited", n, store.attempts.Load())
	}

	store.down.Store(false)
	waitFor(t, "every event delivered and checkpointed after the store recovered", func() bool {
		id, _ := store.get(name)
		return id == "200"
	})
	st = w.Status()
	if st.CheckpointError != "" || st.Unsaved != 0 || st.State != StateConnected {
		t.Errorf("after recovery: state %v, checkpoint error %q, unsaved %d; want connected, none, 0", st.State, st.CheckpointError, st.Unsaved)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, total)) {
		t.Errorf("sink got %v, want 1..%d once each, in order", got, total)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// TestShutdownWhileCheckpointStoreFails: a worker paused on a failing store
// stops promptly on cancellation and says what was not saved, instead of
// holding the shutdown until its timeout.
func TestShutdownWhileCheckpointStoreFails(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		for i := startID(r); i <= 100; i++ {
			write(w, event(i, "\n"))
		}
		<-r.Context().Done()
	})
	store := &brokenStore{}
	store.down.Store(true)
	w, err := New(Config{Name: tname(t), URL: srv.URL, MaxUnsaved: 5, BatchSize: 1, CheckpointEvery: 1, CheckpointInterval: time.Millisecond,
		Sleep: shortSleep, ShutdownTimeout: time.Minute}, newTestSink(), store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	waitFor(t, "paused", func() bool { return w.Status().State == StatePaused })
	err = stop()
	if err == nil || !strings.Contains(err.Error(), "not checkpointed") {
		t.Fatalf("Run = %v, want an error saying the acknowledged events were not checkpointed", err)
	}
	if errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("Run = %v: it waited for the shutdown timeout", err)
	}
}

// outageSink acknowledges the first message of the first Write made while
// down, then fails until up again: a broker that went away mid-batch.
type outageSink struct {
	testSink
	down    atomic.Bool
	partial atomic.Bool // the partial ack was given
	failed  atomic.Int64
}

func (s *outageSink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	if !s.down.Load() {
		return s.testSink.Write(ctx, msgs)
	}
	s.failed.Add(1)
	if s.partial.CompareAndSwap(false, true) {
		n, _ := s.testSink.Write(ctx, msgs[:1])
		return n, errSinkDown
	}
	return 0, errSinkDown
}

// TestCheckpointSavedDuringSinkOutage: what the broker acknowledged before
// an outage is checkpointed during it. The checkpoint used to stay where
// it was until the broker came back, so a crash meanwhile replayed it.
func TestCheckpointSavedDuringSinkOutage(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		for i := startID(r); i <= 10; i++ {
			write(w, event(i, "\n"))
		}
		<-r.Context().Done()
	})
	sink := &outageSink{testSink: *newTestSink()}
	sink.down.Store(true)
	store := &memStore{}
	name := tname(t)
	// A long checkpoint interval: only the outage path can save in time.
	w, err := New(Config{Name: name, URL: srv.URL, Sleep: shortSleep, CheckpointInterval: time.Hour, CheckpointEvery: 1 << 20}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	defer close(release)
	waitFor(t, "the sink failing after a partial ack", func() bool { return sink.failed.Load() >= 5 })
	id, ok := store.get(name)
	if !ok || id != "1" {
		t.Fatalf("checkpoint during the outage = %q, %v; want 1, the event the broker acknowledged", id, ok)
	}
	if !sink.down.Load() {
		t.Fatal("the sink recovered before the check")
	}
	sink.down.Store(false)
	waitFor(t, "all delivered", func() bool { return len(sink.messages()) == 10 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if id, _ := store.get(name); id != "10" {
		t.Fatalf("final checkpoint = %q, want 10", id)
	}
}

// TestServerRetryIsAFloor: the server's retry field is the reconnection
// time; the ±25% jitter used to take reconnections below it (258 ms after
// "retry: 300").
func TestServerRetryIsAFloor(t *testing.T) {
	const conns = 40
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > conns {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, "retry: 300\n"+event(int(n.Load()), "\n"))
	})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryInitial: time.Second, Sleep: sl.Sleep}, newTestSink(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	ds := sl.delays()
	if len(ds) != conns {
		t.Fatalf("%d delays, want %d", len(ds), conns)
	}
	spread := map[time.Duration]bool{}
	for i, d := range ds {
		if d < 300*time.Millisecond || d > 375*time.Millisecond {
			t.Errorf("delay %d = %v, want in [300ms, 375ms] (all: %v)", i, d, ds)
		}
		spread[d] = true
	}
	if len(spread) < conns/2 {
		t.Errorf("only %d distinct delays of %d: the jitter is gone", len(spread), conns)
	}
}
