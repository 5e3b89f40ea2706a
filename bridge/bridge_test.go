package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/demo"
	"github.com/ssebridge/ssebridge/internal/natsserver"
	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// Idle keep-alive connections of the default client are no leak:
	// close them, and goleak (which waits for goroutines to wind down)
	// then sees every connection still in use, such as a response body a
	// test never closed.
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// feed is an upstream SSE server that counts connections per path, so a
// test can tell whether a reload touched a pipeline.
type feed struct {
	srv   *httptest.Server
	mu    sync.Mutex
	conns map[string]int
}

func newFeed(t *testing.T) *feed {
	f := &feed{conns: map[string]int{}}
	ticks := &demo.Feed{Interval: 20 * time.Millisecond, Retry: 100 * time.Millisecond}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.conns[r.URL.Path]++
		f.mu.Unlock()
		ticks.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

func (f *feed) url(path string) string { return f.srv.URL + path }

func (f *feed) connections(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[path]
}

func pipelineCfg(name, url string) config.Pipeline {
	return config.Pipeline{
		Name:   name,
		Source: config.Source{URL: url, Retry: config.Retry{Initial: config.Duration(50 * time.Millisecond), Max: config.Duration(200 * time.Millisecond)}},
		Sink:   config.NewSink(natssink.Kind, natssink.Options{Subject: "t.{pipeline}"}),
	}
}

type running struct {
	b    *bridge.Bridge
	base string
	errc chan error
	stop context.CancelFunc
}

// newBridge is a bridge of cfg (defaults applied) on a free loopback
// port, not yet running.
func newBridge(t *testing.T, cfg *config.Config) (*bridge.Bridge, net.Listener) {
	t.Helper()
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(cfg, bridge.Options{Listener: ln, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return b, ln
}

// start runs b on a free loopback port and stops it when the test ends.
func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	b, ln := newBridge(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, base: "http://" + ln.Addr().String(), errc: make(chan error, 1), stop: cancel}
	go func() { r.errc <- b.Run(ctx) }()
	select {
	case <-b.Started():
	case err := <-r.errc:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if err := r.shutdown(); err != nil {
			t.Errorf("Run returned %v on a clean stop", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return r
}

// shutdown stops the bridge once and returns Run's result.
func (r *running) shutdown() error {
	r.stop()
	err, ok := <-r.errc
	if !ok {
		return nil
	}
	close(r.errc)
	return err
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

// eventually polls cond until it holds or a generous deadline passes: the
// deadline only bounds a failing test, it asserts no timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pipelineStatus(t *testing.T, base, name string) (bridge.PipelineStatus, bool) {
	var st bridge.Status
	getJSON(t, base+"/api/status", &st)
	for _, p := range st.Pipelines {
		if p.Name == name {
			return p, true
		}
	}
	return bridge.PipelineStatus{}, false
}

func TestReadinessFollowsNATS(t *testing.T) {
	ns := testbroker.StartNATS(t)
	f := newFeed(t)
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		NATS:      config.NATS{URL: ns.URL()},
		Pipelines: []config.Pipeline{pipelineCfg("p", f.url("/p"))},
	}
	r := start(t, cfg)

	type readyz struct {
		Ready     bool                    `json:"ready"`
		Pipelines []bridge.PipelineStatus `json:"pipelines"`
	}
	code := func() (int, readyz) {
		var rz readyz
		c := getJSON(t, r.base+"/readyz", &rz)
		return c, rz
	}
	eventually(t, "ready", func() bool { c, _ := code(); return c == http.StatusOK })
	c, rz := code()
	if !rz.Ready || len(rz.Pipelines) != 1 || rz.Pipelines[0].Name != "p" || rz.Pipelines[0].State != "connected" {
		t.Fatalf("readyz %d %+v, want ready with pipeline p connected", c, rz)
	}

	ns.Shutdown()
	eventually(t, "503 after NATS stopped", func() bool { c, _ := code(); return c == http.StatusServiceUnavailable })
	if _, rz := code(); rz.Ready {
		t.Fatal("503 with ready=true in the body")
	}
	// /healthz is liveness: the process is fine, only a dependency is down.
	resp, err := http.Get(r.base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while NATS is down: %v %v", resp, err)
	}
	resp.Body.Close()

	ns.Restart(t)
	eventually(t, "200 after NATS restarted", func() bool { c, _ := code(); return c == http.StatusOK })
}

func TestReloadTouchesOnlyWhatChanged(t *testing.T) {
	f := newFeed(t)
	dir := t.TempDir()
	cfg := &config.Config{
		DataDir: dir,
		NATS:    config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{
			pipelineCfg("keep", f.url("/keep")),
			pipelineCfg("drop", f.url("/drop")),
			pipelineCfg("change", f.url("/change")),
		},
		Streams: []config.Stream{
			{Path: "/sse/keep", NATS: &config.NATSStream{Subject: "t.keep"}},
			{Path: "/sse/drop", NATS: &config.NATSStream{Subject: "t.drop"}},
		},
	}
	r := start(t, cfg)
	for _, name := range []string{"keep", "drop", "change"} {
		eventually(t, name+" forwarding", func() bool {
			p, ok := pipelineStatus(t, r.base, name)
			return ok && p.State == "connected" && p.Forwarded > 0
		})
	}
	// A subscriber on the kept stream must survive the reload.
	resp, err := http.Get(r.base + "/sse/keep")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readID := func() string {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("kept stream: %v", err)
			}
			if id, ok := strings.CutPrefix(line, "id:"); ok {
				return strings.TrimSpace(id)
			}
		}
	}
	readID()

	next := *cfg
	next.Pipelines = []config.Pipeline{
		pipelineCfg("keep", f.url("/keep")),
		pipelineCfg("change", f.url("/change2")),
		pipelineCfg("added", f.url("/added")),
	}
	next.Streams = []config.Stream{
		{Path: "/sse/keep", NATS: &config.NATSStream{Subject: "t.keep"}},
		{Path: "/sse/added", NATS: &config.NATSStream{Subject: "t.added"}},
	}
	next.SetDefaults()
	if err := r.b.Reload(&next); err != nil {
		t.Fatal(err)
	}

	eventually(t, "added pipeline forwarding", func() bool {
		p, ok := pipelineStatus(t, r.base, "added")
		return ok && p.Forwarded > 0
	})
	eventually(t, "changed pipeline on its new URL", func() bool { return f.connections("/change2") == 1 })
	if _, ok := pipelineStatus(t, r.base, "drop"); ok {
		t.Fatal("removed pipeline still listed")
	}
	if n := f.connections("/keep"); n != 1 {
		t.Fatalf("unchanged pipeline reconnected: %d connections, want 1", n)
	}
	// The kept stream's subscriber still receives events.
	readID()
	readID()
	for path, want := range map[string]int{"/sse/drop": http.StatusNotFound, "/sse/added": http.StatusOK} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s after reload = %d, want %d", path, resp.StatusCode, want)
		}
		cancel()
		resp.Body.Close()
	}

	// The removed pipeline's and stream's series are gone, the others stay.
	mresp, err := http.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mtext, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if strings.Contains(string(mtext), `pipeline="drop"`) || strings.Contains(string(mtext), `stream="/sse/drop"`) {
		t.Error("metrics of the removed pipeline or stream still exported")
	}
	if !strings.Contains(string(mtext), `ssebridge_pipeline_events_forwarded_total{pipeline="keep"}`) {
		t.Error("metrics of the kept pipeline missing")
	}

	// The removed pipeline drained and wrote its checkpoint.
	if _, err := os.Stat(filepath.Join(dir, "checkpoints")); err != nil {
		t.Fatalf("no checkpoint directory: %v", err)
	}
	resp.Body.Close()
	if err := r.shutdown(); err != nil {
		t.Fatalf("Run after reload: %v", err)
	}
}

// TestShutdownDrainsAndResumes checks that a stopped bridge saved where it
// was and that the next one resumes there with Last-Event-ID, so nothing
// is lost and nothing repeated.
func TestShutdownDrainsAndResumes(t *testing.T) {
	var lastIDs []string
	var mu sync.Mutex
	ticks := &demo.Feed{Interval: 10 * time.Millisecond}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		ticks.ServeHTTP(w, r)
	}))
	defer up.Close()
	defer up.CloseClientConnections()
	dir := t.TempDir()
	mk := func() *config.Config {
		return &config.Config{
			DataDir: dir,
			NATS:    config.NATS{Embedded: true},
			Pipelines: []config.Pipeline{{
				Name:   "p",
				Source: config.Source{URL: up.URL},
				Sink: config.NewSink(natssink.Kind, natssink.Options{Subject: "p.tick", JetStream: true,
					Stream: &natssink.StreamOptions{Name: "P", Subjects: []string{"p.>"}}}),
			}},
		}
	}
	r := start(t, mk())
	var forwarded uint64
	eventually(t, "events forwarded", func() bool {
		p, _ := pipelineStatus(t, r.base, "p")
		forwarded = p.Forwarded
		return forwarded >= 5
	})
	if err := r.shutdown(); err != nil {
		t.Fatal(err)
	}

	r2 := start(t, mk())
	eventually(t, "second run forwarding", func() bool {
		p, _ := pipelineStatus(t, r2.base, "p")
		return p.Forwarded > 0
	})
	if err := r2.shutdown(); err != nil {
		t.Fatal(err)
	}
	checkConsecutive(t, dir, "P")
	mu.Lock()
	defer mu.Unlock()
	if len(lastIDs) < 2 || lastIDs[0] != "" {
		t.Fatalf("Last-Event-ID per connection = %q, want none then a resume", lastIDs)
	}
	resume, err := strconv.Atoi(lastIDs[len(lastIDs)-1])
	if err != nil || resume < 5 {
		t.Fatalf("resumed with Last-Event-ID %q, want the checkpoint of the first run (>= 5)", lastIDs[len(lastIDs)-1])
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]*config.Config{
		"nil":            nil,
		"no data dir":    {NATS: config.NATS{Embedded: true}},
		"url + embedded": {DataDir: "x", NATS: config.NATS{Embedded: true, URL: "nats://127.0.0.1:4222"}},
	} {
		if _, err := bridge.New(cfg, bridge.Options{}); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRunTwice(t *testing.T) {
	r := start(t, &config.Config{DataDir: t.TempDir()})
	if err := r.b.Run(context.Background()); !errors.Is(err, bridge.ErrAlreadyRun) {
		t.Fatalf("second Run = %v, want ErrAlreadyRun", err)
	}
}

// leaser grants "p" only after a signal and can take it back.
type testLeaser struct {
	grant chan struct{}
	lost  chan struct{}
	n     atomic.Int32
}

func (l *testLeaser) Acquire(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	select {
	case <-l.grant:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	l.n.Add(1)
	return l.lost, func() {}, nil
}

func TestLeaserDecidesWhoRuns(t *testing.T) {
	f := newFeed(t)
	l := &testLeaser{grant: make(chan struct{}, 2), lost: make(chan struct{})}
	cfg := &config.Config{DataDir: t.TempDir(), NATS: config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{pipelineCfg("p", f.url("/p"))}}
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(cfg, bridge.Options{Listener: ln, Leaser: l, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	<-b.Started()
	base := "http://" + ln.Addr().String()

	p, _ := pipelineStatus(t, base, "p")
	if p.State != bridge.StateStandby || !p.Ready {
		t.Fatalf("without the lease: %+v, want standby and ready", p)
	}
	if f.connections("/p") != 0 {
		t.Fatal("connected to the feed without the lease")
	}
	l.grant <- struct{}{}
	eventually(t, "connected with the lease", func() bool { p, _ := pipelineStatus(t, base, "p"); return p.State == "connected" })
	close(l.lost)
	eventually(t, "standby after losing the lease", func() bool {
		p, _ := pipelineStatus(t, base, "p")
		return p.State == bridge.StateStandby
	})
	if n := l.n.Load(); n != 1 {
		t.Fatalf("Acquire granted %d times, want 1 (no lease is granted twice)", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// checkConsecutive reopens the JetStream store of dir and checks that the
// stream holds the upstream ids 1..n, each once, in order: nothing lost
// and nothing repeated across the restart.
func checkConsecutive(t *testing.T, dir, stream string) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Msgs
	if n < 6 {
		t.Fatalf("stream %s holds %d messages, want events from both runs", stream, n)
	}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if got, want := m.Header.Get(sinks.HeaderID), strconv.FormatUint(seq, 10); got != want {
			t.Fatalf("message %d has upstream id %q, want %q: events lost or repeated", seq, got, want)
		}
	}
}

// testLogger collects the bridge's log and prints it only when the test
// failed; writing to t.Log directly could outlive the test.
func testLogger(t *testing.T) *slog.Logger {
	lw := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", lw.String())
		}
	})
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestUpstream204StopsPipeline: a feed that answers 204 asks clients to
// stop; the pipeline stays stopped (no reconnect loop) and readiness says so.
func TestUpstream204StopsPipeline(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	r := start(t, &config.Config{DataDir: t.TempDir(), NATS: config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{pipelineCfg("p", up.URL)}})
	eventually(t, "stopped", func() bool { p, _ := pipelineStatus(t, r.base, "p"); return p.State == bridge.StateStopped })
	p, _ := pipelineStatus(t, r.base, "p")
	if p.Ready || !strings.Contains(p.LastError, "204") {
		t.Fatalf("status after 204: %+v", p)
	}
	var rz struct{ Ready bool }
	if code := getJSON(t, r.base+"/readyz", &rz); code != http.StatusServiceUnavailable || rz.Ready {
		t.Fatalf("readyz after 204 = %d", code)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("feed contacted %d times after a 204, want 1", n)
	}
}

// TestKafkaPipelineAndStream wires the Kafka side through the runtime: a
// pipeline into a kfake topic through kafka-go and a reverse stream of the
// same topic read back over HTTP.
func TestKafkaPipelineAndStream(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"ticks": 1})
	f := newFeed(t)
	r := start(t, &config.Config{
		DataDir: t.TempDir(),
		Kafka:   config.Kafka{Brokers: []string{k.Addr()}},
		Pipelines: []config.Pipeline{{
			Name:   "k",
			Source: config.Source{URL: f.url("/k")},
			Sink:   config.NewSink(kafkasink.Kind, kafkasink.Options{Topic: "ticks"}),
		}},
		Streams: []config.Stream{{Path: "/sse/ticks", Kafka: &config.KafkaStream{Topic: "ticks", Start: config.KafkaStartEarliest}}},
	})
	eventually(t, "kafka pipeline forwarding", func() bool { p, _ := pipelineStatus(t, r.base, "k"); return p.Forwarded >= 3 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/sse/ticks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sse/ticks = %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	var data []string
	for len(data) < 3 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	for i, d := range data {
		if want := fmt.Sprintf(`"n":%d,`, i+1); !strings.Contains(d, want) {
			t.Fatalf("event %d from the topic = %s, want tick %d (from the start of the topic)", i, d, i+1)
		}
	}
	if len(data) < 3 {
		t.Fatalf("read %d events: %v", len(data), sc.Err())
	}
}

// TestStreamAuthAcrossStreams checks that a bearer token of one stream gets
// 403 on another although each path has its own streams.Server, and that
// the set of known tokens follows a reload.
func TestStreamAuthAcrossStreams(t *testing.T) {
	cfg := &config.Config{
		DataDir: t.TempDir(),
		NATS:    config.NATS{Embedded: true},
		Streams: []config.Stream{
			{Path: "/sse/a", NATS: &config.NATSStream{Subject: "t.a"}, Auth: &config.Auth{BearerTokens: []string{"token-a"}}},
			{Path: "/sse/b", NATS: &config.NATSStream{Subject: "t.b"}, Auth: &config.Auth{BearerTokens: []string{"token-b"}}},
		},
	}
	r := start(t, cfg)
	get := func(path, token string) int {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // ends a 200 stream
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/sse/b", "token-a", http.StatusForbidden},
		{"/sse/a", "token-b", http.StatusForbidden},
		{"/sse/b", "unknown", http.StatusUnauthorized},
		{"/sse/b", "", http.StatusUnauthorized},
		{"/sse/b", "token-b", http.StatusOK},
		{"/sse/a", "token-a", http.StatusOK},
	} {
		if code := get(tc.path, tc.token); code != tc.want {
			t.Errorf("GET %s with token %q = %d, want %d", tc.path, tc.token, code, tc.want)
		}
	}

	next := *cfg
	next.Streams = cfg.Streams[1:]
	next.SetDefaults()
	if err := r.b.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if code := get("/sse/b", "token-a"); code != http.StatusUnauthorized {
		t.Errorf("token of the removed stream on /sse/b = %d, want 401", code)
	}
	if code := get("/sse/b", "token-b"); code != http.StatusOK {
		t.Errorf("GET /sse/b with its token after reload = %d, want 200", code)
	}
}
