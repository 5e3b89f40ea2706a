//go:build browser

package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testtls"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = "/usr/bin/chromium"

// manyStreamsPage opens more EventSources to the bridge than the six
// HTTP/1.1 connections a browser opens to one host, keeps them all open,
// and reports, once each has had a few events, what each saw.
const manyStreamsPage = `<!doctype html>
<meta charset="utf-8">
<script>
const sources = %d, want = 3, url = %q;
const seen = Array.from({length: sources}, () => []);
const all = [];
let done = 0;
for (let i = 0; i < sources; i++) {
  const es = new EventSource(url);
  all.push(es);
  // Every source stays open until all have their events: one that
  // closed early would free its connection for the next.
  es.addEventListener("tick", (e) => {
    if (seen[i].length === want) return;
    seen[i].push(e.lastEventId);
    if (seen[i].length === want && ++done === sources) {
      all.forEach((s) => s.close());
      fetch("/report", {method: "POST", body: JSON.stringify(seen)});
    }
  });
}
</script>`

// TestBrowserManyStreamsOverHTTPS: a page in Chromium holds eight event
// streams of a bridge serving HTTPS at once, each receiving its events
// in order. Over HTTP/1.1 the seventh would wait for one of the first six
// to close: they share one HTTP/2 connection instead.
func TestBrowserManyStreamsOverHTTPS(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v (apt-get install chromium)", chromiumPath, err)
	}
	const sources = 8
	reportc := make(chan [][]string, 1)
	var page *httptest.Server
	pageMux := http.NewServeMux()
	var streamURL string
	var once sync.Once
	pageMux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, manyStreamsPage, sources, streamURL)
	})
	pageMux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var seen [][]string
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &seen); err != nil {
			t.Errorf("report %q: %v", body, err)
		}
		once.Do(func() { reportc <- seen })
	})
	page = httptest.NewServer(pageMux)
	defer page.Close()

	f := newFeed(t)
	cert := testtls.SelfSigned(t, t.TempDir(), "localhost")
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		HTTP:      config.HTTP{TLS: &config.ServerTLS{CertFile: cert.CertFile, KeyFile: cert.KeyFile}},
		NATS:      config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{pipelineCfg("ticks", f.url("/ticks"))},
		Streams: []config.Stream{{Path: "/sse/ticks", NATS: &config.NATSStream{Subject: "t.ticks"},
			CORS: &config.CORS{AllowedOrigins: []string{page.URL}}}},
	}
	r := start(t, cfg)
	streamURL = "https://" + strings.TrimPrefix(r.base, "http://") + "/sse/ticks"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr strings.Builder
	var stderrMu sync.Mutex
	cmd := exec.CommandContext(ctx, chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--ignore-certificate-errors", // the test's self-signed certificate
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", page.URL+"/")
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		stderrMu.Lock()
		defer stderrMu.Unlock()
		return stderr.Write(p)
	})
	// Chromium forks renderers: kill its whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()

	var seen [][]string
	select {
	case seen = <-reportc:
	case <-ctx.Done():
		stderrMu.Lock()
		defer stderrMu.Unlock()
		t.Fatalf("no report from the page: not every EventSource got its events; chromium said:\n%s", stderr.String())
	}
	if len(seen) != sources {
		t.Fatalf("report of %d sources, want %d", len(seen), sources)
	}
	for i, ids := range seen {
		if err := consecutive(ids); err != nil {
			t.Errorf("source %d: ids %q: %v", i, ids, err)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
