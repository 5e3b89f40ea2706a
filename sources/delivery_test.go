package sources

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

// memStore is a checkpoint.Store in memory that counts Saves.
type memStore struct {
	mu    sync.Mutex
	m     map[string]string
	saves int
}

func (s *memStore) Load(ctx context.Context, p string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.m[p]
	return id, ok, nil
}

func (s *memStore) Save(ctx context.Context, p, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[p] = id
	s.saves++
	return nil
}

func (s *memStore) get(p string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.m[p]
	return id, ok
}

// TestRestartResumesFromFileStore: a worker is cancelled mid-stream; a new
// worker on the same checkpoint directory resumes with the right
// Last-Event-ID and nothing is delivered twice.
func TestRestartResumesFromFileStore(t *testing.T) {
	var log requestLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r, "")
		sseHeaders(w)
		start := startID(r)
		for id := start; id < start+3; id++ {
			write(w, event(id, "\r\n"))
		}
		<-r.Context().Done() // a live feed: no more for now
	})
	dir := t.TempDir()
	var all []string
	for round := range 2 {
		store, err := checkpoint.NewFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		sink := newTestSink()
		w, err := New(Config{Name: "wiki/recent changes", URL: srv.URL}, sink, store)
		if err != nil {
			t.Fatal(err)
		}
		stop, _ := run(t, w)
		waitFor(t, "3 events", func() bool { return len(sink.ids()) == 3 })
		if err := stop(); err != nil {
			t.Fatalf("round %d: Run after cancel = %v, want nil", round, err)
		}
		all = append(all, sink.ids()...)
		id, ok, err := store.Load(context.Background(), "wiki/recent changes")
		if err != nil || !ok || id != fmt.Sprint(3*(round+1)) {
			t.Fatalf("round %d: checkpoint = %q, %v, %v", round, id, ok, err)
		}
	}
	if !eqStrings(all, seq(1, 6)) {
		t.Errorf("ids over both runs = %v", all)
	}
	if r := log.all(); len(r) != 2 || r[0].hasLastEventID || r[1].lastEventID != "3" {
		t.Errorf("requests = %+v", r)
	}
}

// TestBackPressure: with a sink that blocks, the worker holds a bounded
// number of events and stops reading, so the server's writes stall; once
// the sink returns, everything arrives in order.
func TestBackPressure(t *testing.T) {
	t.Run("queue 8 batch 4", func(t *testing.T) { testBackPressure(t, 8, 4) })
	// A batch as large as the queue: the chunks the reader queues are
	// smaller than a batch, or the writer's overflow would exceed it.
	t.Run("queue 8 batch 8", func(t *testing.T) { testBackPressure(t, 8, 8) })
}

func testBackPressure(t *testing.T, queue, batch int) {
	const total = 2000
	payload := strings.Repeat("x", 2000)
	var written atomic.Int64
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		for i := 1; i <= total; i++ {
			n, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, payload)
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
			written.Add(int64(n))
		}
	}))
	// Small socket buffers so that the kernel does not hide the stall.
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		_ = c.(*net.TCPConn).SetWriteBuffer(8 << 10)
		return ctx
	}
	srv.Start()
	t.Cleanup(srv.Close)
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
	}}
	tr := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(tr.CloseIdleConnections)

	sink := newTestSink()
	sink.block = make(chan struct{})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, QueueSize: queue, BatchSize: batch, Sleep: sl.Sleep,
		Client: &http.Client{Transport: tr}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, r := run(t, w)
	<-sink.entered
	// Wait until the server's writes stop growing. This only decides when
	// to look; the assertions below hold however long it takes.
	last, still := written.Load(), 0
	for still < 20 {
		time.Sleep(20 * time.Millisecond)
		if n := written.Load(); n != last {
			last, still = n, 0
		} else {
			still++
		}
	}
	total64 := int64(total * (len(payload) + 16))
	if last > total64/4 {
		t.Fatalf("server wrote %d of ~%d bytes while the sink was blocked: no back-pressure", last, total64)
	}
	st := w.Status()
	if st.Received > uint64(queue+batch+2) {
		t.Fatalf("worker holds %d events with queue %d and batch %d: unbounded", st.Received, queue, batch)
	}
	recvBytes := value(metrics.BytesReceived.WithLabelValues(tname(t)))
	if recvBytes > float64(last) || recvBytes > 256<<10 {
		t.Fatalf("read %v bytes while blocked", recvBytes)
	}
	t.Logf("blocked sink: server wrote %d bytes, worker read %v bytes and holds %d events", last, recvBytes, st.Received)

	sink.mu.Lock()
	close(sink.block)
	sink.block = nil
	sink.mu.Unlock()
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, total)) {
		t.Fatalf("got %d events, want 1..%d in order", len(got), total)
	}
}

// TestFilterAdvancesCheckpoint: filtered events are counted and skipped,
// and their IDs still become the checkpoint.
func TestFilterAdvancesCheckpoint(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		for i := 1; i <= 6; i++ {
			typ := "keep"
			if i%2 == 0 {
				typ = "skip"
			}
			write(w, fmt.Sprintf("event: %s\nid: %d\ndata: %d\n\n", typ, i, i))
		}
	})
	sink := newTestSink()
	store := &memStore{}
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, Events: []string{"keep"}, Sleep: sl.Sleep}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	_, r := run(t, w)
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, []string{"1", "3", "5"}) {
		t.Errorf("forwarded %v", got)
	}
	if id, _ := store.get(tname(t)); id != "6" {
		t.Errorf("checkpoint = %q, want 6 (the last, filtered, event)", id)
	}
	st := w.Status()
	if st.Received != 6 || st.Filtered != 3 || st.Forwarded != 3 || st.CheckpointID != "6" {
		t.Errorf("status = %+v", st)
	}
	if got := value(metrics.EventsFiltered.WithLabelValues(tname(t))); got != 3 {
		t.Errorf("events_filtered = %v", got)
	}
}

// TestOversizedEventSkipped: an event over MaxEventSize is counted and
// skipped; the stream goes on.
func TestOversizedEventSkipped(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, event(1, "\n"))
		write(w, "id: 2\ndata: "+strings.Repeat("y", 64<<10)+"\n\n")
		write(w, event(3, "\n"))
	})
	sink := newTestSink()
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, MaxEventSize: 1024, Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, r := run(t, w)
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, []string{"1", "3"}) {
		t.Errorf("ids = %v", got)
	}
	if st := w.Status(); st.Failed != 1 {
		t.Errorf("Status.Failed = %d", st.Failed)
	}
	if got := value(metrics.EventsFailed.WithLabelValues(tname(t), "too_large")); got != 1 {
		t.Errorf("events_failed{too_large} = %v", got)
	}
}

// TestShutdownFlushes: events received before cancellation still reach the
// sink and the checkpoint, after the connection is gone.
func TestShutdownFlushes(t *testing.T) {
	disconnected := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		for i := 1; i <= 10; i++ {
			write(w, event(i, "\n"))
		}
		<-r.Context().Done()
		close(disconnected)
	})
	sink := newTestSink()
	sink.block = make(chan struct{})
	store := &memStore{}
	w, err := New(Config{Name: tname(t), URL: srv.URL}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	waitFor(t, "10 events received", func() bool { return w.Status().Received == 10 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	<-disconnected // reading has stopped; the sink still holds everything
	if n := len(sink.ids()); n != 0 {
		t.Fatalf("sink had %d events before release", n)
	}
	sink.mu.Lock()
	close(sink.block)
	sink.block = nil
	sink.mu.Unlock()
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, 10)) {
		t.Errorf("ids = %v", got)
	}
	if id, _ := store.get(tname(t)); id != "10" {
		t.Errorf("checkpoint = %q, want 10", id)
	}
	if st := w.Status(); st.State != StateStopped {
		t.Errorf("state = %v", st.State)
	}
}

// TestShutdownTimeout: a sink that never answers cannot hold shutdown
// beyond ShutdownTimeout, and nothing unacknowledged is checkpointed.
func TestShutdownTimeout(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		write(w, event(1, "\n")+event(2, "\n"))
		<-r.Context().Done()
	})
	sink := newTestSink()
	sink.block = make(chan struct{}) // never released
	store := &memStore{}
	w, err := New(Config{Name: tname(t), URL: srv.URL, ShutdownTimeout: 50 * time.Millisecond}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	waitFor(t, "2 events received", func() bool { return w.Status().Received == 2 })
	if err := stop(); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	if _, ok := store.get(tname(t)); ok {
		t.Error("checkpoint saved for unacknowledged events")
	}
}

// TestCheckpointBatched: a fast feed does not save once per event, but the
// final value is always saved.
func TestCheckpointBatched(t *testing.T) {
	const total = 500
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		var b strings.Builder
		for i := 1; i <= total; i++ {
			b.WriteString(event(i, "\n"))
		}
		write(w, b.String())
	})
	store := &memStore{}
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, BatchSize: 1, CheckpointInterval: time.Hour, CheckpointEvery: 100, Sleep: sl.Sleep}, newTestSink(), store)
	if err != nil {
		t.Fatal(err)
	}
	_, r := run(t, w)
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	store.mu.Lock()
	saves := store.saves
	store.mu.Unlock()
	if saves < 1 || saves > total/100+1 {
		t.Errorf("%d saves for %d events with CheckpointEvery 100", saves, total)
	}
	if id, _ := store.get(tname(t)); id != fmt.Sprint(total) {
		t.Errorf("checkpoint = %q", id)
	}
}

// TestTLSWithCAFile: an https feed signed by a CA given as ca_file.
func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		write(w, event(1, "\n"))
	}))
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the failed handshake below is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconf.Build(&tlsconf.Config{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: tname(t), URL: srv.URL, TLS: tc, Once: true}
	sink := newTestSink()
	w, err := New(cfg, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !eqStrings(sink.ids(), []string{"1"}) {
		t.Errorf("ids = %v", sink.ids())
	}

	// Without the CA the handshake fails, and says so.
	cfg.TLS = nil
	w, _ = New(cfg, newTestSink(), nil)
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Run without CA = %v, want a certificate error", err)
	}
}

// TestNewRejectsInvalidConfig: every problem at once, with the name.
func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(Config{Name: "q", URL: "ftp://x", RetryInitial: time.Minute, RetryMax: time.Second, QueueSize: -1}, newTestSink(), nil)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{`"q"`, "URL: must be an http:// or https:// URL", "RetryMax: must not be less than the initial delay", "QueueSize: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := New(Config{URL: "http://x"}, newTestSink(), &memStore{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("store without name: %v", err)
	}
	if _, err := New(Config{URL: "http://x", Client: &http.Client{Timeout: time.Minute}}, newTestSink(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("client with a timeout: %v", err)
	}
}

func TestStateString(t *testing.T) {
	want := []string{"connecting", "connected", "backoff", "paused", "stopped"}
	for i, s := range States() {
		if s.String() != want[i] {
			t.Errorf("%d: %q", i, s)
		}
	}
	if State(42).String() != "state(42)" {
		t.Error(State(42).String())
	}
}

// TestProxyFromEnvironment: the worker's own client goes through the proxy
// named by the environment (HTTP_PROXY here; HTTPS_PROXY is read by the
// same net/http function).
func TestProxyFromEnvironment(t *testing.T) {
	before := proxyHits.Load()
	sink := newTestSink()
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: "http://" + proxyFeedHost + "/stream", Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.messages(); len(got) != 1 || string(got[0].Event.Data) != "via proxy" {
		t.Errorf("messages = %+v", got)
	}
	if n := proxyHits.Load() - before; n != 2 {
		t.Errorf("%d requests through the proxy, want 2", n)
	}
}

// TestStatusWhileRunning: Status shows the connection and the backoff as
// they happen.
func TestStatusWhileRunning(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) == 1 {
			sseHeaders(w)
			write(w, event(1, "\n"))
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	sink := newTestSink()
	inBackoff := make(chan struct{}, 1)
	w, err := New(Config{Name: tname(t), URL: srv.URL, IdleTimeout: 100 * time.Millisecond, RetryInitial: time.Hour, RetryMax: time.Hour,
		Sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case inBackoff <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	waitFor(t, "event 1 forwarded", func() bool { return w.Status().Forwarded == 1 })
	st := w.Status()
	if (st.State != StateConnected && st.State != StateBackoff) || st.LastEventID != "1" || !st.HasLastEventID || st.Received != 1 {
		t.Errorf("while connected: %+v", st)
	}
	if st.State == StateConnected && st.ConnectedSince.IsZero() {
		t.Errorf("connected without ConnectedSince: %+v", st)
	}
	<-inBackoff // the idle timeout fired
	st = w.Status()
	if st.State != StateBackoff || time.Until(st.NextRetryAt) < 40*time.Minute || !st.ConnectedSince.IsZero() ||
		st.Reconnects != 1 || !strings.Contains(st.LastError, "idle") || st.LastErrorAt.IsZero() {
		t.Errorf("in backoff: %+v", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := w.Status(); st.State != StateStopped {
		t.Errorf("after Run: %v", st.State)
	}
}
