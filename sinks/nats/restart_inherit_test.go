package nats_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
)

// TestRestartKeepsEventWithInheritedID: an event without an id field
// inherits the previous event's ID. When it is the first event a restarted
// pipeline receives (resuming with Last-Event-ID = that ID, after a clean
// stop, a reload or a crash), the new sink has no previous message to
// compare with; it used to give the event the Nats-Msg-Id of the event
// whose ID it inherited, and JetStream discarded it as a duplicate of that
// stored event while the worker checkpointed it: the event was lost.
func TestRestartKeepsEventWithInheritedID(t *testing.T) {
	e := newJSEnv(t)
	// B comes after event 5 and carries no id of its own.
	feed, second := resumingFeed(t, "data: B\n\n")
	store := &recordingStore{}

	w1 := startWorker(t, "inh", feed.URL, e.open(t, "inh", e2eConfig()), store)
	w1.WaitAcked(t, "5")
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	second()
	w2 := startWorker(t, "inh", feed.URL, e.open(t, "inh", e2eConfig()), store)
	waitFor(t, "B acknowledged", func() bool { return w2.Status().Forwarded == 1 })
	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	got := jsReceived(t, e, "E2E")
	var data []string
	for _, g := range got {
		data = append(data, string(g.Data)+"@"+g.Headers[sinks.HeaderID])
	}
	if len(data) != 2 || data[0] != "A@5" || data[1] != "B@5" {
		t.Fatalf("stream holds %q, want A and B (both with SSE-Id 5)", data)
	}
}

// resumingFeed serves event 5 (data A) to a client without Last-Event-ID
// and, once second has been called, then to one resuming after 5.
func resumingFeed(t *testing.T, then string) (feed *httptest.Server, second func()) {
	var resumed atomic.Bool
	feed = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		switch r.Header.Get("Last-Event-ID") {
		case "":
			_, _ = w.Write([]byte("id: 5\ndata: A\n\n"))
		case "5":
			if resumed.Load() {
				_, _ = w.Write([]byte(then))
			}
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(feed.Close)
	return feed, func() { resumed.Store(true) }
}
