package nats_test

// End to end: an httptest SSE feed → sources.Worker → this sink → a real
// nats-server → read back with a real consumer.

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	gonats "github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/pipelinetest"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
	"github.com/ssebridge/ssebridge/sources"
)

func startWorker(t *testing.T, pipeline, url string, sink sinks.Sink, store checkpoint.Store) *pipelinetest.Worker {
	return pipelinetest.StartWorker(t, pipeline, url, sink, store)
}

func waitFor(t *testing.T, what string, cond func() bool) { sinktest.WaitFor(t, what, cond) }

func jsReceived(t *testing.T, e jsEnv, stream string) []sinktest.Received {
	var out []sinktest.Received
	for _, m := range e.streamMsgs(t, stream) {
		out = append(out, received(&gonats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}))
	}
	return out
}

func e2eConfig() natssink.Options {
	return natssink.Options{Subject: "e2e.{event}", JetStream: true, MaxInFlight: 64,
		Stream: &natssink.StreamOptions{Name: "E2E", Subjects: []string{"e2e.>"}}}
}

func TestEndToEndCore(t *testing.T) {
	b := testbroker.StartNATS(t)
	feed := sinktest.NewFeed(t, 300)
	r := newCoreReaderSubject(t, b.URL(), "e2e.>")
	s := (jsEnv{nc: connect(t, b.URL())}).open(t, "wiki", natssink.Options{Subject: "e2e.{event}"})
	w := startWorker(t, "wiki", feed.URL(), s, nil)
	feed.Release(300)
	w.WaitAcked(t, "300")
	got := r.all(t, 300)
	sinktest.CheckDelivered(t, "wiki", feed.Events(), got)
	for i, g := range got {
		if want := "e2e." + feed.Events()[i].Type; g.Dest != want {
			t.Fatalf("message %d on %s, want %s", i, g.Dest, want)
		}
	}
}

func TestEndToEndJetStream(t *testing.T) {
	e := newJSEnv(t)
	feed := sinktest.NewFeed(t, 300)
	w := startWorker(t, "wiki", feed.URL(), e.open(t, "wiki", e2eConfig()), nil)
	feed.Release(300)
	w.WaitAcked(t, "300")
	sinktest.CheckDelivered(t, "wiki", feed.Events(), jsReceived(t, e, "E2E"))
}

// TestBrokerRestartLosesNothing stops the server mid-stream, lets the feed
// run on while it is down, restarts it on the same port and store, and
// expects every event exactly once, in order.
func TestBrokerRestartLosesNothing(t *testing.T) {
	e := newJSEnv(t)
	feed := sinktest.NewFeed(t, 300)
	store := &recordingStore{}
	w := startWorker(t, "wiki", feed.URL(), e.open(t, "wiki", e2eConfig()), store)
	feed.Release(100)
	w.WaitAcked(t, "100")

	e.b.Shutdown()
	feed.Release(200)
	// The worker receives events after 100 and cannot deliver them: it must not
	// acknowledge (checkpoint) any of them.
	waitFor(t, "worker received more and paused on the sink", func() bool { st := w.Status(); return st.Received > 100 && st.State == sources.StatePaused })
	if id := w.Status().LastEventID; id != "100" {
		t.Fatalf("acknowledged %q while the broker was down", id)
	}
	e.b.Restart(t)
	feed.Release(300)
	w.WaitAcked(t, "300")
	sinktest.CheckDelivered(t, "wiki", feed.Events(), jsReceived(t, e, "E2E"))
	if err := store.checkMonotonic(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashReplayDeduplicated: the bridge dies with its checkpoint behind
// what JetStream already stored (the normal state of a crash). The restarted
// bridge replays from the file checkpoint; Nats-Msg-Id makes the stream
// drop the replayed copies.
func TestCrashReplayDeduplicated(t *testing.T) {
	e := newJSEnv(t)
	feed := sinktest.NewFeed(t, 300)
	dir := filepath.Join(t.TempDir(), "checkpoints")
	fs, err := checkpoint.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	crash := &crashStore{Store: fs}
	w1 := startWorker(t, "wiki", feed.URL(), e.open(t, "wiki", e2eConfig()), crash)
	feed.Release(120)
	w1.WaitAcked(t, "120")
	waitFor(t, "checkpoint saved at 120", func() bool { id, _, _ := fs.Load(context.Background(), "wiki"); return id == "120" })
	// From now on nothing reaches the disk: the process is as good as dead
	// but its in-flight work still lands in the stream.
	crash.crash()
	feed.Release(300)
	w1.WaitAcked(t, "300")
	w1.Stop() // its final checkpoint save fails: "crashed"

	id, ok, err := fs.Load(context.Background(), "wiki")
	if err != nil || !ok || id != "120" {
		t.Fatalf("checkpoint after crash = %q, %v, %v; want 120", id, ok, err)
	}
	// Restart from the file checkpoint: events 121..300 are sent again.
	s2 := e.open(t, "wiki", e2eConfig())
	w2 := startWorker(t, "wiki", feed.URL(), s2, fs)
	w2.WaitAcked(t, "300")
	if f := w2.Status().Forwarded; f != 180 {
		t.Fatalf("restarted bridge forwarded %d events, want the 180 replayed ones", f)
	}
	got := jsReceived(t, e, "E2E")
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g.Headers[sinks.HeaderID]] {
			t.Fatalf("duplicate id %s in the stream", g.Headers[sinks.HeaderID])
		}
		seen[g.Headers[sinks.HeaderID]] = true
	}
	sinktest.CheckDelivered(t, "wiki", feed.Events(), got)
	fe := feed.Events()[len(feed.Events())-1]
	last := sinktest.Msg("wiki", fe.ID, fe.Type, fe.Data)
	if got[len(got)-1].Headers[gonats.MsgIdHdr] != natssink.MsgID(&last) {
		t.Fatalf("last Nats-Msg-Id = %q", got[len(got)-1].Headers[gonats.MsgIdHdr])
	}
}

// crashStore forwards to a real store until crash, then fails every Save,
// as a killed process would never write again.
type crashStore struct {
	checkpoint.Store
	mu      sync.Mutex
	crashed bool
}

var errCrashed = errors.New("process crashed")

func (c *crashStore) crash() { c.mu.Lock(); c.crashed = true; c.mu.Unlock() }

func (c *crashStore) Save(ctx context.Context, p, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errCrashed
	}
	return c.Store.Save(ctx, p, id)
}

// recordingStore is an in-memory store that remembers every save.
type recordingStore struct {
	mu    sync.Mutex
	saves []string
}

func (s *recordingStore) Load(ctx context.Context, p string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.saves) == 0 {
		return "", false, nil
	}
	return s.saves[len(s.saves)-1], true, nil
}

func (s *recordingStore) Save(ctx context.Context, p, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves = append(s.saves, id)
	return nil
}

// checkMonotonic: checkpoints only move forward.
func (s *recordingStore) checkMonotonic() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := 0
	for _, id := range s.saves {
		n, _ := strconv.Atoi(id)
		if n < prev {
			return errors.New("checkpoint moved backwards: " + id)
		}
		prev = n
	}
	return nil
}

// newCoreReaderSubject is newCoreReader on another subject, connecting
// with opts (credentials, say).
func newCoreReaderSubject(t *testing.T, url, subject string, opts ...gonats.Option) *coreAll {
	r := &coreAll{}
	nc, err := gonats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.Subscribe(subject, func(m *gonats.Msg) {
		r.mu.Lock()
		r.got = append(r.got, received(m))
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

type coreAll struct {
	mu  sync.Mutex
	got []sinktest.Received
}

func (r *coreAll) all(t *testing.T, n int) []sinktest.Received {
	t.Helper()
	waitFor(t, "core messages", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sinktest.Received(nil), r.got...)
}
