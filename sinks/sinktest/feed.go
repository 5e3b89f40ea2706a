package sinktest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func timeParse(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// FeedEvent is one event of a Feed, as a sink should deliver it.
type FeedEvent struct {
	ID   string
	Type string
	Data []byte
}

// Feed is an upstream SSE server for end-to-end tests: events 1..n with
// IDs "1".."n", alternating types, JSON data (every seventh event split
// over two data lines, so its payload holds a LF). It resumes after
// Last-Event-ID like a well-behaved server and releases events only up to
// the count the test allows, so a test can act between known points.
type Feed struct {
	srv    *httptest.Server
	events []FeedEvent

	mu       sync.Mutex
	released int
	changed  chan struct{} // closed and replaced when released grows
	conns    int
}

// NewFeed starts a feed of n events, none released.
func NewFeed(t testing.TB, n int) *Feed {
	f := &Feed{changed: make(chan struct{})}
	for i := 1; i <= n; i++ {
		typ := "edit"
		if i%3 == 0 {
			typ = "create"
		}
		data := fmt.Sprintf(`{"n":%d,"lang":"en","text":"event %d"}`, i, i)
		if i%7 == 0 {
			data = fmt.Sprintf("{\"n\":%d,\n\"text\":\"two lines\"}", i)
		}
		f.events = append(f.events, FeedEvent{ID: strconv.Itoa(i), Type: typ, Data: []byte(data)})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// URL is the feed's address.
func (f *Feed) URL() string { return f.srv.URL }

// Events are the feed's events in order.
func (f *Feed) Events() []FeedEvent { return f.events }

// Release lets the server send events up to and including number upto.
func (f *Feed) Release(upto int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if upto > f.released {
		f.released = min(upto, len(f.events))
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// Connections is how many requests the feed has served.
func (f *Feed) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *Feed) serve(w http.ResponseWriter, r *http.Request) {
	next := 0 // index of the next event to send
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		n, err := strconv.Atoi(last)
		if err != nil || n < 0 || n > len(f.events) {
			http.Error(w, "unknown Last-Event-ID", http.StatusBadRequest)
			return
		}
		next = n
	}
	f.mu.Lock()
	f.conns++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fmt.Fprint(w, ": hello\n\n")
	fl.Flush()
	for {
		f.mu.Lock()
		upto, changed := f.released, f.changed
		f.mu.Unlock()
		var b strings.Builder
		for ; next < upto; next++ {
			e := f.events[next]
			fmt.Fprintf(&b, "id: %s\nevent: %s\n", e.ID, e.Type)
			for line := range strings.SplitSeq(string(e.Data), "\n") {
				fmt.Fprintf(&b, "data: %s\n", line)
			}
			b.WriteString("\n")
		}
		if b.Len() > 0 {
			if _, err := w.Write([]byte(b.String())); err != nil {
				return
			}
			fl.Flush()
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

// CheckDelivered compares what a consumer read with the feed's events
// first..first+len(got)-1 (0-based): payload byte for byte and every SSE
// header.
func CheckDelivered(t testing.TB, pipeline string, want []FeedEvent, got []Received) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("delivered %d messages, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if string(g.Data) != string(w.Data) {
			t.Fatalf("message %d: payload %q, want %q", i, g.Data, w.Data)
		}
		h := g.Headers
		if h["SSE-Id"] != w.ID || h["SSE-Event"] != w.Type || h["SSE-Source"] != pipeline {
			t.Fatalf("message %d (id %s): headers %v", i, w.ID, h)
		}
		if _, err := timeParse(h["SSE-Received-At"]); err != nil {
			t.Fatalf("message %d: SSE-Received-At %q: %v", i, h["SSE-Received-At"], err)
		}
	}
}
