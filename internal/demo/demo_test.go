package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"go.uber.org/goleak"
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

type sseEvent struct{ id, typ, data string }

// readEvents reads n events from an SSE response body.
func readEvents(t *testing.T, body io.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				out = append(out, cur)
				if len(out) == n {
					return out
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id:"):
			cur.id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			cur.typ = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			cur.data = strings.TrimSpace(line[5:])
		}
	}
	t.Fatalf("stream ended after %d events: %v", len(out), sc.Err())
	return nil
}

func TestFeedTicksAndResumes(t *testing.T) {
	srv := httptest.NewServer(&Feed{Interval: 5 * time.Millisecond, Burst: 2, Retry: 1500 * time.Millisecond})
	defer srv.Close()
	defer srv.CloseClientConnections()

	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Last-Event-ID", "41")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	head, _ := br.ReadString('\n')
	retry, _ := br.ReadString('\n')
	if !strings.HasPrefix(head, ":") || retry != "retry: 1500\n" {
		t.Fatalf("stream starts %q %q, want a comment then retry: 1500", head, retry)
	}
	evs := readEvents(t, br, 4)
	for i, e := range evs {
		want := strconv.Itoa(42 + i)
		if e.id != want || e.typ != "tick" || !strings.Contains(e.data, `"n":`+want) {
			t.Fatalf("event %d = %+v, want id %s after Last-Event-ID 41", i, e, want)
		}
	}
}

// startDemo runs a demo on a free port and returns it with a stop func.
func startDemo(t *testing.T) (*Demo, func()) {
	t.Helper()
	return startDemoWith(t, Options{Logger: slog.New(slog.DiscardHandler)})
}

// startDemoWith fills in a free port, a temporary data dir and a 50ms tick.
func startDemoWith(t *testing.T, opts Options) (*Demo, func()) {
	t.Helper()
	opts.Addr, opts.DataDir = "127.0.0.1:0", t.TempDir()
	if opts.Interval == 0 {
		opts.Interval = 50 * time.Millisecond
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	if err := d.WaitReady(rctx); err != nil {
		cancel()
		t.Fatalf("demo not ready: %v (Run: %v)", err, <-errc)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("demo stopped with %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	}
	t.Cleanup(stop)
	return d, stop
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("series %s not exported", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDemoEndToEnd is the README's first command: feed → pipeline →
// embedded JetStream → reverse stream, read by a plain HTTP client.
func TestDemoEndToEnd(t *testing.T) {
	logBuf := &syncbuf.Buffer{}
	// Bursts of 10: enough events that a line per event would show.
	d, stop := startDemoWith(t, Options{Burst: 10, Logger: slog.New(slog.NewTextHandler(logBuf, nil))})

	resp, err := http.Get(d.StreamURL())
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %s", d.StreamURL(), resp.Status)
	}
	evs := readEvents(t, resp.Body, 5)
	resp.Body.Close()
	lastID, lastN := -1, -1
	for _, e := range evs {
		// A JetStream id is the stream sequence, then a tag.
		seq, _, _ := strings.Cut(e.id, "-")
		id, err := strconv.Atoi(seq)
		if err != nil || id <= lastID {
			t.Fatalf("ids not increasing: %+v", evs)
		}
		var tick struct {
			N    int       `json:"n"`
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal([]byte(e.data), &tick); err != nil || tick.N <= lastN || tick.Time.IsZero() {
			t.Fatalf("tick %q: %v (previous n %d)", e.data, err, lastN)
		}
		lastID, lastN = id, tick.N
	}

	// The status API and the page report the pipeline as connected.
	var st struct {
		Ready     bool `json:"ready"`
		Pipelines []struct {
			Name, State string
			Forwarded   uint64
		} `json:"pipelines"`
		Streams []struct{ Path string } `json:"streams"`
	}
	r2, err := http.Get(d.BaseURL() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(r2.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if !st.Ready || len(st.Pipelines) != 1 || st.Pipelines[0].Name != Pipeline || st.Pipelines[0].State != "connected" ||
		st.Pipelines[0].Forwarded == 0 || len(st.Streams) != 1 || st.Streams[0].Path != StreamPath {
		t.Fatalf("/api/status = %+v", st)
	}
	page, err := http.Get(d.BaseURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != http.StatusOK || !strings.Contains(string(body), "<title>ssebridge status</title>") {
		t.Fatalf("status page: %s", page.Status)
	}

	// Metrics are exported and move while the demo runs.
	fwd := `ssebridge_pipeline_events_forwarded_total{pipeline="demo"}`
	first := scrape(t, d.BaseURL())
	for _, name := range []string{
		"ssebridge_pipeline_events_received_total", "ssebridge_pipeline_received_bytes_total",
		"ssebridge_pipeline_connection_state", "ssebridge_pipeline_checkpoint_timestamp_seconds",
		"ssebridge_pipeline_lag_seconds_bucket", "ssebridge_stream_events_sent_total",
		"ssebridge_stream_subscribers", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(first, "\n"+name) {
			t.Errorf("metric %s not exported", name)
		}
	}
	v1 := metricValue(t, first, fwd)
	if metricValue(t, first, `ssebridge_pipeline_connection_state{pipeline="demo",state="connected"}`) != 1 {
		t.Error("connection state gauge is not 1 for connected")
	}
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, scrape(t, d.BaseURL()), fwd) <= v1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s stuck at %v", fwd, v1)
		}
		time.Sleep(50 * time.Millisecond)
	}

	eventsSeen := metricValue(t, scrape(t, d.BaseURL()), fwd)
	for eventsSeen-v1 < 100 { // the registry is process-wide: count from v1
		if time.Now().After(deadline) {
			t.Fatalf("only %v events forwarded", eventsSeen-v1)
		}
		time.Sleep(50 * time.Millisecond)
		eventsSeen = metricValue(t, scrape(t, d.BaseURL()), fwd)
	}

	// A client still reading the upstream feed must not hold shutdown.
	feed, err := http.Get(d.BaseURL() + FeedPath)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Body.Close()
	readEvents(t, feed.Body, 1)
	stopped := time.Now()
	stop()
	if took := time.Since(stopped); took > 8*time.Second {
		t.Fatalf("shutdown took %s with a feed client connected", took)
	}

	// Info logs are per state change, never per event: dozens of events
	// went through, a handful of lines were written.
	lines := strings.Count(logBuf.String(), "\n")
	if lines > 25 {
		t.Fatalf("%d log lines for %v events:\n%s", lines, eventsSeen, logBuf.String())
	}
}

// TestTwoDemosSideBySide: different -addr and -data-dir must be enough.
func TestTwoDemosSideBySide(t *testing.T) {
	a, _ := startDemo(t)
	b, _ := startDemo(t)
	for _, d := range []*Demo{a, b} {
		resp, err := http.Get(d.StreamURL())
		if err != nil {
			t.Fatal(err)
		}
		readEvents(t, resp.Body, 2)
		resp.Body.Close()
	}
}

func TestPrintURLs(t *testing.T) {
	d := &Demo{base: "http://127.0.0.1:8080"}
	for _, self := range []string{"./ssebridge", "go run ./cmd/ssebridge"} {
		var sb strings.Builder
		d.PrintURLs(&sb, "/tmp/x", self)
		out := sb.String()
		for _, want := range []string{
			"http://127.0.0.1:8080/\n",
			"curl -N http://127.0.0.1:8080/sse/demo\n",
			"  or:              " + self + " tail http://127.0.0.1:8080/sse/demo\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
}

// TestDemoCORSAndBadLastEventID: with CORS set (ssebridge demo's default
// is "*") a page of another origin may read the stream, without it the
// browser gets no allow header; a bad Last-Event-ID of 8,000 bytes is
// answered 400 with the reason, without echoing it whole.
func TestDemoCORSAndBadLastEventID(t *testing.T) {
	open, _ := startDemoWith(t, Options{CORS: []string{"*"}, Logger: slog.New(slog.DiscardHandler)})
	closed, _ := startDemo(t)
	get := func(d *Demo, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, d.StreamURL(), nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			readEvents(t, resp.Body, 1)
			return resp, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	origin := map[string]string{"Origin": "http://localhost:5173"}
	if resp, _ := get(open, origin); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("with CORS: Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp, _ := get(closed, origin); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("without CORS: Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}

	long := strings.Repeat("x", 8000)
	resp, body := get(open, map[string]string{"Last-Event-ID": long})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad Last-Event-ID: %s %q", resp.Status, body)
	}
	if len(body) > 400 || !strings.Contains(body, "invalid Last-Event-ID") || !strings.Contains(body, "is not a JetStream sequence id") {
		t.Errorf("400 body of %d bytes: %q", len(body), body)
	}
	resp, body = get(open, map[string]string{"Last-Event-ID": "nope"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"nope" is not a JetStream sequence id`) {
		t.Errorf("a short bad id is quoted whole: %s %q", resp.Status, body)
	}
}

// TestStatusAPIChartData: /api/status carries what the status page's
// charts and checkpoint age are drawn from: events sent per stream and
// when each pipeline's checkpoint last advanced.
func TestStatusAPIChartData(t *testing.T) {
	d, _ := startDemo(t)
	resp, err := http.Get(d.StreamURL())
	if err != nil {
		t.Fatal(err)
	}
	readEvents(t, resp.Body, 3)
	resp.Body.Close()
	var st struct {
		Time      time.Time `json:"time"`
		Pipelines []struct {
			CheckpointAt time.Time `json:"checkpoint_at"`
		} `json:"pipelines"`
		Streams []struct {
			EventsSent uint64 `json:"events_sent"`
		} `json:"streams"`
	}
	r, err := http.Get(d.BaseURL() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(r.Body).Decode(&st)
	r.Body.Close()
	if err != nil || len(st.Pipelines) != 1 || len(st.Streams) != 1 {
		t.Fatalf("/api/status: %+v, %v", st, err)
	}
	if n := st.Streams[0].EventsSent; n < 3 {
		t.Errorf("events_sent %d after 3 events were read", n)
	}
	// Ticks every 50 ms are checkpointed within a fraction of a second.
	if age := st.Time.Sub(st.Pipelines[0].CheckpointAt); st.Pipelines[0].CheckpointAt.IsZero() || age < 0 || age > 10*time.Second {
		t.Errorf("checkpoint_at %v, status time %v", st.Pipelines[0].CheckpointAt, st.Time)
	}
}
