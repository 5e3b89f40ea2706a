package sources

import (
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestGzipWhenAcceptEncodingSet: a user who sets Accept-Encoding: gzip
// (copied from a browser or curl) turns off net/http's transparent
// decompression; the worker must still decode the gzip stream instead of
// feeding compressed bytes to the SSE decoder and silently losing every
// event.
func TestGzipWhenAcceptEncodingSet(t *testing.T) {
	sink := newTestSink()
	var buffered atomic.Bool
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip, deflate" {
			http.Error(w, "want the user's Accept-Encoding", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		zw := gzip.NewWriter(w)
		for i := 1; i <= 3; i++ {
			_, _ = zw.Write([]byte(event(i, "\r\n")))
			_ = zw.Flush() // a streaming server flushes every event
			w.(http.Flusher).Flush()
			// Each event arrives while the stream is still open,
			// not only once the gzip stream ends.
			// (Polled here, not with waitFor: this is the handler's
			// goroutine; a hang ends with the missing ids below.)
			for deadline := time.Now().Add(10 * time.Second); len(sink.ids()) < i && time.Now().Before(deadline); {
				time.Sleep(2 * time.Millisecond)
			}
			if len(sink.ids()) < i {
				buffered.Store(true)
			}
		}
		_ = zw.Close()
	})
	w, err := New(Config{Name: tname(t), URL: srv.URL, Once: true,
		Header: http.Header{"Accept-Encoding": {"gzip, deflate"}}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, 3)) {
		t.Errorf("ids = %v, want 1..3", got)
	}
	if buffered.Load() {
		t.Error("events were held back until the gzip stream ended")
	}
	if m := sink.messages(); len(m) > 0 && string(m[0].Event.Data) != "payload 1" {
		t.Errorf("data = %q", m[0].Event.Data)
	}
}

// TestUnsupportedContentEncoding: an encoding the worker cannot decode is
// a clear configuration error, not garbage decoded as events.
func TestUnsupportedContentEncoding(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "br")
		w.WriteHeader(http.StatusOK)
		write(w, "\x8b\x05\x80id: 1\ndata: x\n\n\x03")
	})
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: srv.URL, Once: true,
		Header: http.Header{"Accept-Encoding": {"br"}}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(context.Background())
	if !errors.Is(err, ErrContentEncoding) {
		t.Fatalf("Run = %v, want ErrContentEncoding", err)
	}
	if _, permanent, _ := classify(err); !permanent {
		t.Errorf("an unsupported encoding is not a configuration error")
	}
	if len(sink.ids()) != 0 {
		t.Errorf("events from an undecodable body: %v", sink.ids())
	}
}

// TestHostHeader: a Host header in the configured headers (a feed behind a
// shared IP or reached through an address, as with curl -H 'Host: ...')
// is sent; net/http ignores Host in Request.Header, so it was dropped.
func TestHostHeader(t *testing.T) {
	var log requestLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r, r.Host)
		if r.Host != "feed.example" {
			http.Error(w, "unknown virtual host "+r.Host, http.StatusNotFound)
			return
		}
		sseHeaders(w)
		write(w, event(1, "\n"))
	})
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: srv.URL, Once: true,
		Header: http.Header{"Host": {"feed.example"}}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if reqs := log.all(); len(reqs) != 1 || reqs[0].body != "feed.example" {
		t.Errorf("requests = %+v, want one for Host feed.example", reqs)
	}
	if !eqStrings(sink.ids(), []string{"1"}) {
		t.Errorf("ids = %v", sink.ids())
	}
}

// TestLastEventIDHeaderInConfig: a pipeline whose headers set
// Last-Event-ID (to start after a known event) sends it on the first
// connection, when no checkpoint says otherwise, instead of the worker
// silently dropping it; later connections send the acknowledged ID.
func TestLastEventIDHeaderInConfig(t *testing.T) {
	var log requestLog
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r, "")
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, event(startID(r), "\n"))
	})
	// The runner maps a Last-Event-ID in the YAML headers to LastEventID
	// (bridge's TestSourceConfig).
	c := Config{Name: tname(t), URL: srv.URL, LastEventID: "41", Header: http.Header{"X-Api-Key": {"k"}}}
	var sl fakeSleep
	c.Sleep = sl.Sleep
	sink := newTestSink()
	w, err := New(c, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	reqs := log.all()
	if len(reqs) != 2 || reqs[0].lastEventID != "41" || reqs[1].lastEventID != "42" || reqs[0].header.Get("X-Api-Key") != "k" {
		t.Errorf("requests = %+v, want Last-Event-ID 41 then 42", reqs)
	}
	if !eqStrings(sink.ids(), []string{"42"}) {
		t.Errorf("ids = %v", sink.ids())
	}
}

// TestContentTypeWithOddParameters: what matters is the media type; a
// parameter net/http's parser finds malformed (a bare "charset", a
// trailing comma) must not turn a working feed into a configuration
// error, as browsers and curl read it fine. Other types still fail.
func TestContentTypeWithOddParameters(t *testing.T) {
	for _, tc := range []struct {
		ct string
		ok bool
	}{
		{"text/event-stream; charset", true},
		{"text/event-stream; charset=utf-8,", true},
		{"Text/Event-Stream;;", true},
		{"text/plain; charset", false},
		{"text/event-streams", false},
	} {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tc.ct)
			write(w, event(1, "\n"))
		})
		sink := newTestSink()
		w, err := New(Config{Name: tname(t), URL: srv.URL, Once: true}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = w.Run(context.Background())
		if tc.ok && (err != nil || !eqStrings(sink.ids(), []string{"1"})) {
			t.Errorf("%q: Run = %v, ids %v; want the event", tc.ct, err, sink.ids())
		}
		if !tc.ok && !errors.Is(err, ErrContentType) {
			t.Errorf("%q: Run = %v, want ErrContentType", tc.ct, err)
		}
	}
}
