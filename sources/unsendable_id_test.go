package sources

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestUnsendableIDDoesNotStallSource: the standard lets an id hold any
// character but NUL, CR and LF, and a browser would send one with, say,
// \x01 as Last-Event-ID; net/http refuses to send such a header value. The
// worker used to retry that refused request forever (a network error to
// its eyes), so one odd id from the feed stopped the pipeline for good.
// It now reconnects without Last-Event-ID, warns, and goes on.
func TestUnsendableIDDoesNotStallSource(t *testing.T) {
	var log requestLog
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r, "")
		switch conns.Add(1) {
		case 1:
			sseHeaders(w)
			write(w, "id: a\x01b\ndata: first\n\n")
		case 2:
			sseHeaders(w)
			write(w, "id: c\ndata: second\n\n")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: srv.URL, Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v, want the feed's 204 after both events", err)
	}
	if got := sink.ids(); !eqStrings(got, []string{"a\x01b", "c"}) {
		t.Errorf("ids = %q, want both events", got)
	}
	reqs := log.all()
	if len(reqs) != 3 || reqs[1].hasLastEventID || reqs[2].lastEventID != "c" {
		t.Errorf("requests = %+v, want the second without Last-Event-ID and the third with c", reqs)
	}
}
