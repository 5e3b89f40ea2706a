package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	prometheus "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/sinks"
)

// proxyFeedHost is a host name that does not resolve: requests for it only
// work through the proxy that TestMain installs in HTTP_PROXY.
const proxyFeedHost = "feed.invalid"

var proxyHits atomic.Int32

func TestMain(m *testing.M) {
	// net/http reads the proxy variables once per process, so they are set
	// before any request. Loopback addresses never go through a proxy, so
	// the other tests are unaffected.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host != proxyFeedHost {
			http.Error(w, "proxy: unexpected host "+r.URL.Host, http.StatusBadGateway)
			return
		}
		proxyHits.Add(1)
		if r.Header.Get("Last-Event-ID") != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, "id: p1\ndata: via proxy\n\n")
	}))
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "NO_PROXY", "REQUEST_METHOD"} {
		os.Unsetenv(k)
	}
	os.Setenv("HTTP_PROXY", proxy.URL)
	code := m.Run()
	proxy.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testSink records what it acknowledges. It can block every Write until
// released and fail a number of Writes (optionally after acknowledging the
// first message, to exercise partial acknowledgement).
type testSink struct {
	mu      sync.Mutex
	got     []sinks.Message
	writes  int
	fails   int  // remaining Writes to fail
	partial bool // a failing Write first acknowledges one message
	block   chan struct{}
	entered chan struct{} // receives (non-blocking) when a Write starts
	changed chan struct{} // receives (non-blocking) after every Write
}

var errSinkDown = errors.New("test sink down")

func newTestSink() *testSink {
	return &testSink{entered: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

func (s *testSink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}()
	s.writes++
	if s.fails > 0 {
		s.fails--
		if s.partial && len(msgs) > 1 {
			s.got = append(s.got, own(msgs[0]))
			return 1, errSinkDown
		}
		return 0, errSinkDown
	}
	for _, m := range msgs {
		s.got = append(s.got, own(m))
	}
	return len(msgs), nil
}

// own copies m's memory, which the worker reuses once Write returns (see
// Sink).
func own(m sinks.Message) sinks.Message {
	m.Event.ID, m.Event.Type = strings.Clone(m.Event.ID), strings.Clone(m.Event.Type)
	m.Event.Data = bytes.Clone(m.Event.Data)
	return m
}

func (s *testSink) Close() error { return nil }

func (s *testSink) messages() []sinks.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinks.Message(nil), s.got...)
}

func (s *testSink) ids() []string {
	var ids []string
	for _, m := range s.messages() {
		ids = append(ids, m.Event.ID)
	}
	return ids
}

// waitFor polls cond until true or fails the test after a generous
// deadline; it measures nothing, it only bounds a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeSleep records every backoff delay the worker asks for and returns at
// once, so delays are asserted exactly without waiting.
type fakeSleep struct {
	mu sync.Mutex
	ds []time.Duration
}

func (f *fakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.ds = append(f.ds, d)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakeSleep) delays() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.ds...)
}

// requestLog records the requests a test server received.
type requestLog struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, lastEventID, body string
	header                    http.Header
	hasLastEventID            bool
}

func (l *requestLog) add(r *http.Request, body string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, has := r.Header["Last-Event-Id"]
	l.reqs = append(l.reqs, recorded{method: r.Method, lastEventID: r.Header.Get("Last-Event-ID"), hasLastEventID: has, body: body, header: r.Header.Clone()})
	return len(l.reqs)
}

func (l *requestLog) all() []recorded {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recorded(nil), l.reqs...)
}

// sseHeaders starts an event-stream response.
func sseHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

func write(w http.ResponseWriter, s string) {
	_, _ = w.Write([]byte(s))
	w.(http.Flusher).Flush()
}

// startID is the first event ID to send after Last-Event-ID.
func startID(r *http.Request) int {
	n, err := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	if err != nil {
		return 1
	}
	return n + 1
}

func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// run starts w.Run; stop cancels it and returns its error, done is closed
// when Run returned (its error is then *errp).
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func run(t *testing.T, w *Worker) (stop func() error, r *running) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r = &running{cancel: cancel, done: make(chan struct{})}
	go func() { r.err = w.Run(ctx); close(r.done) }()
	stop = func() error {
		cancel()
		select {
		case <-r.done:
			return r.err
		case <-time.After(30 * time.Second):
			return errors.New("Run did not return after cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop, r
}

func wait(t *testing.T, r *running) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func seq(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func event(id int, lineEnd string) string {
	return fmt.Sprintf("id: %d%sdata: payload %d%s%s", id, lineEnd, id, lineEnd, lineEnd)
}

// value reads a counter or gauge child (testutil would need a module that
// go.mod does not list).
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	panic("not a counter or gauge")
}

var (
	namesMu sync.Mutex
	names   = map[*testing.T]string{}
	nameSeq int
)

// tname is a pipeline name unique to this test run, so that the global
// metrics of one run (-count=N) do not add up with another's.
func tname(t *testing.T) string {
	namesMu.Lock()
	defer namesMu.Unlock()
	if n, ok := names[t]; ok {
		return n
	}
	nameSeq++
	n := fmt.Sprintf("%s#%d", t.Name(), nameSeq)
	names[t] = n
	return n
}
