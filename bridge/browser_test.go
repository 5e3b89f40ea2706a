//go:build browser

package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbrowser"
)

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

	r := startHTTPS(t, &config.CORS{AllowedOrigins: []string{page.URL}})
	streamURL = r.base + "/sse/ticks"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := testbrowser.Open(t, ctx, page.URL+"/", "--ignore-certificate-errors") // the test's self-signed certificate

	var seen [][]string
	select {
	case seen = <-reportc:
	case <-ctx.Done():
		t.Fatalf("no report from the page: not every EventSource got its events; chromium said:\n%s", b.Said())
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
