//go:build browser

package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/testbrowser"
)

// browserPage subscribes with EventSource (token in the query, as a page
// must), shows each event in the DOM and, once it has them all, posts both
// what its handler saw and what the DOM shows back to the test.
const browserPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>ssebridge stream</title></head>
<body><ol id="events"></ol>
<script>
const want = %d;
const seen = [];
const list = document.getElementById("events");
const es = new EventSource("/events?access_token=%s");
es.addEventListener("tick", (e) => {
  seen.push({id: e.lastEventId, data: e.data});
  const li = document.createElement("li");
  li.textContent = e.data;
  list.appendChild(li);
  if (seen.length === want) {
    es.close();
    const dom = Array.from(list.children, (li) => li.textContent);
    fetch("/report", {method: "POST", body: JSON.stringify({seen, dom})});
  }
});
</script></body></html>`

type browserReport struct {
	Seen []struct{ ID, Data string } `json:"seen"`
	DOM  []string                    `json:"dom"`
}

// killAfter wraps the stream's ResponseWriter so that the test can cut the
// first connection dead (no chunked terminator, as a crashed proxy would)
// right after a given number of events reached the socket.
type killAfter struct {
	http.ResponseWriter
	events int
	limit  int
	kill   func()
	// opened is called at the first flush: the opening comment, sent once
	// the broker subscription is in place.
	opened  func()
	flushed bool
}

func (k *killAfter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("data:")) {
		k.events++
	}
	return k.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController calls to flush.
func (k *killAfter) FlushError() error {
	err := http.NewResponseController(k.ResponseWriter).Flush()
	if !k.flushed {
		k.flushed = true
		k.opened()
	}
	if k.limit > 0 && k.events >= k.limit {
		k.kill()
	}
	return err
}

func (k *killAfter) Unwrap() http.ResponseWriter { return k.ResponseWriter }

func TestBrowserEventSourceResumesAfterKilledConnection(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "BROWSER", "browser.>")
	cfg := jsStreamCfg("/events", "BROWSER", "browser.>")
	cfg.Auth = &Auth{BearerTokens: []string{"page-token"}}
	srv, err := New([]Config{cfg}, Deps{NATS: e.nc})
	if err != nil {
		t.Fatal(err)
	}

	const total, killAt = 8, 3
	var (
		mu         sync.Mutex
		conns      int
		lastIDs    []string // Last-Event-ID of each connection
		connected  = make(chan int, 4)
		killed     = make(chan struct{})
		reportc    = make(chan browserReport, 1)
		killedOnce sync.Once
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, browserPage, total, "page-token")
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep browserReport
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Errorf("report %q: %v", body, err)
		}
		select {
		case reportc <- rep:
		default:
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns++
		n := conns
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		if n > 1 {
			// The reconnection is served as the bridge serves it: its
			// connection is taken over once the headers are sent. It
			// resumes from its Last-Event-ID, so what is published from
			// now on reaches it whenever its subscription is in place.
			connected <- n
			srv.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		kw := &killAfter{ResponseWriter: w, kill: cancel, opened: func() { connected <- n }}
		kw.limit = killAt
		srv.ServeHTTP(kw, r.WithContext(ctx))
		t.Logf("connection %d (Last-Event-ID %q) ended after %d events", n, r.Header.Get("Last-Event-ID"), kw.events)
		if n == 1 && ctx.Err() != nil && r.Context().Err() == nil {
			killedOnce.Do(func() { close(killed) })
			// Drop the TCP connection without ending the response.
			panic(http.ErrAbortHandler)
		}
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := testbrowser.Open(t, ctx, hs.URL+"/")

	await := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; chromium said:\n%s", what, b.Said())
		}
	}
	awaitConn := func(want int) {
		t.Helper()
		select {
		case n := <-connected:
			if n != want {
				t.Fatalf("connection %d, want %d", n, want)
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for connection %d; chromium said:\n%s", want, b.Said())
		}
	}
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			e.jsPublish(t, "browser.tick", "tick", fmt.Sprintf("event %d", i))
		}
	}

	awaitConn(1)
	publish(1, killAt) // the page gets these, then the connection dies
	await("the kill", killed)
	publish(killAt+1, 6) // published while the browser is away
	awaitConn(2)         // EventSource reconnects by itself
	publish(7, total)

	var rep browserReport
	select {
	case rep = <-reportc:
	case <-ctx.Done():
		t.Fatalf("no report from the page; chromium said:\n%s", b.Said())
	}
	var want, wantIDs, gotData, gotIDs []string
	for i := 1; i <= total; i++ {
		want = append(want, fmt.Sprintf("event %d", i))
		wantIDs = append(wantIDs, e.jsIDOf(t, "BROWSER", uint64(i)))
	}
	for _, s := range rep.Seen {
		gotData = append(gotData, s.Data)
		gotIDs = append(gotIDs, s.ID)
	}
	if !slices.Equal(gotData, want) || !slices.Equal(rep.DOM, want) {
		t.Fatalf("page saw %q, DOM shows %q; want each event once: %q", gotData, rep.DOM, want)
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("event ids %q, want %q", gotIDs, wantIDs)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := e.jsIDOf(t, "BROWSER", killAt); len(lastIDs) < 2 || lastIDs[0] != "" || lastIDs[1] != want {
		t.Errorf("Last-Event-ID per connection = %q, want [\"\" %q]", lastIDs, want)
	}
}
