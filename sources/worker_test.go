package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
)

// TestEveryEventOnceAcrossDrops: a feed that drops the connection every 7
// events, in the middle of an event half of the time, sometimes abruptly,
// with LF, CRLF (split across writes) and CR line ends, and replays from
// Last-Event-ID. Every event must reach the sink exactly once and in order.
func TestEveryEventOnceAcrossDrops(t *testing.T) {
	const total, every = 60, 7
	var conns atomic.Int32
	var log requestLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		k := int(conns.Add(1))
		log.add(r, "")
		start := startID(r)
		if start > total {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		lineEnd := []string{"\n", "\r\n", "\r"}[k%3]
		for id := start; id < start+every && id <= total; id++ {
			ev := event(id, lineEnd)
			if lineEnd == "\r\n" {
				// CR at the end of one write, LF at the start of the next.
				for _, part := range strings.SplitAfter(ev, "\r") {
					write(w, part)
				}
			} else {
				write(w, ev)
			}
		}
		switch k % 4 {
		case 0: // end cleanly in the middle of the next event
			write(w, fmt.Sprintf("id: %d%sdata: half", start+every, lineEnd))
		case 1: // abort the connection in the middle of an event
			write(w, fmt.Sprintf("id: %d%sdata: half%s", start+every, lineEnd, lineEnd))
			panic(http.ErrAbortHandler)
		case 2: // abort between events
			panic(http.ErrAbortHandler)
		}
	})
	sink := newTestSink()
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryInitial: time.Second, Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v, want ErrServerStopped", err)
	}
	if got, want := sink.ids(), seq(1, total); !eqStrings(got, want) {
		t.Fatalf("sink got ids\n%v\nwant\n%v", got, want)
	}
	for i, m := range sink.messages() {
		if want := fmt.Sprintf("payload %d", i+1); string(m.Event.Data) != want || m.Event.Type != "message" || m.Pipeline != tname(t) {
			t.Fatalf("message %d = %+v, want data %q", i, m, want)
		}
	}
	reqs := log.all()
	if reqs[0].hasLastEventID {
		t.Errorf("first request sent Last-Event-ID %q", reqs[0].lastEventID)
	}
	for i, r := range reqs[1:] {
		want := fmt.Sprint(min((i+1)*every, total))
		if r.lastEventID != want {
			t.Errorf("request %d Last-Event-ID = %q, want %q", i+2, r.lastEventID, want)
		}
	}
	if st := w.Status(); st.State != StateStopped || st.Forwarded != total || st.LastEventID != fmt.Sprint(total) {
		t.Errorf("status = %+v", st)
	}
}

// TestRetryFieldAndBackoff: the server's retry field sets the base delay,
// failures double it (with bounded jitter), a connection that delivered
// events resets it, and RetryMax caps it.
func TestRetryFieldAndBackoff(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch conns.Add(1) {
		case 1:
			sseHeaders(w)
			write(w, "retry: 2500\n\n"+event(1, "\n"))
		case 2, 3:
			w.WriteHeader(http.StatusInternalServerError)
		case 4:
			sseHeaders(w)
			write(w, event(2, "\n"))
		case 5, 6, 7, 8:
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryInitial: 100 * time.Millisecond, RetryMax: 12 * time.Second, Sleep: sl.Sleep}, newTestSink(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	ds := sl.delays()
	ms := time.Millisecond
	want := []struct{ lo, hi time.Duration }{
		{2500 * ms, 3125 * ms},  // base from retry: 2500, jitter only above
		{3750 * ms, 6250 * ms},  // doubled after a failure
		{7500 * ms, 12000 * ms}, // doubled again, capped at RetryMax
		{2500 * ms, 3125 * ms},  // reset: the 4th connection delivered an event
		{3750 * ms, 6250 * ms},  //
		{7500 * ms, 12000 * ms}, //
		{9000 * ms, 12000 * ms}, // RetryMax, jitter below it only
		{9000 * ms, 12000 * ms},
	}
	if len(ds) != len(want) {
		t.Fatalf("delays = %v, want %d of them", ds, len(want))
	}
	for i, d := range ds {
		if d < want[i].lo || d > want[i].hi {
			t.Errorf("delay %d = %v, want in [%v, %v] (all: %v)", i, d, want[i].lo, want[i].hi, ds)
		}
	}
	if got := value(metrics.Reconnects.WithLabelValues(tname(t), ReasonHTTP5xx)); got != 6 {
		t.Errorf("reconnects{http_5xx} = %v, want 6", got)
	}
	if got := value(metrics.Reconnects.WithLabelValues(tname(t), ReasonEOF)); got != 2 {
		t.Errorf("reconnects{eof} = %v, want 2", got)
	}
	if st := w.Status(); st.Reconnects != 8 {
		t.Errorf("Status.Reconnects = %d, want 8", st.Reconnects)
	}
}

// TestNoContentStops: 204 ends Run without any reconnection.
func TestNoContentStops(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	var states []State
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, Sleep: sl.Sleep, OnState: func(s State) { states = append(states, s) }}, newTestSink(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v, want ErrServerStopped", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if len(sl.delays()) != 0 {
		t.Errorf("backoff after 204: %v", sl.delays())
	}
	st := w.Status()
	if st.State != StateStopped || !strings.Contains(st.LastError, "204") {
		t.Errorf("status = %+v", st)
	}
	if len(states) == 0 || states[len(states)-1] != StateStopped {
		t.Errorf("states = %v", states)
	}
	if got := value(metrics.ConnectionState.WithLabelValues(tname(t), "stopped")); got != 1 {
		t.Errorf("connection_state{stopped} = %v", got)
	}
}

// TestRetryAfter: 503 with Retry-After seconds and 429 with an HTTP date
// delay the reconnection by at least that much.
func TestRetryAfter(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch conns.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", time.Now().Add(40*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		case 3:
			sseHeaders(w)
			write(w, event(1, "\n"))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryInitial: time.Second, RetryMax: 5 * time.Second, Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	ds := sl.delays()
	if len(ds) != 3 {
		t.Fatalf("delays = %v", ds)
	}
	if ds[0] != 7*time.Second {
		t.Errorf("after 503 Retry-After: 7 waited %v, want 7s (above RetryMax: the server asked)", ds[0])
	}
	if ds[1] < 38*time.Second || ds[1] > 41*time.Second {
		t.Errorf("after 429 Retry-After date +40s waited %v", ds[1])
	}
	if got := sink.ids(); !eqStrings(got, []string{"1"}) {
		t.Errorf("ids = %v", got)
	}
	if got := value(metrics.Reconnects.WithLabelValues(tname(t), ReasonHTTP429)); got != 1 {
		t.Errorf("reconnects{http_429} = %v", got)
	}
}

// TestConfigurationErrors: a 404 and a wrong Content-Type are retried at
// RetryMax; a Content-Type with parameters is fine.
func TestConfigurationErrors(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch conns.Add(1) {
		case 1:
			http.NotFound(w, r)
		case 2:
			w.Header().Set("Content-Type", "text/plain")
			write(w, event(1, "\n"))
		case 3:
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			write(w, event(1, "\n")+event(2, "\n"))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	sink := newTestSink()
	var errs []error
	w, err := New(Config{Name: tname(t), URL: srv.URL, RetryInitial: 10 * time.Millisecond, RetryMax: 3 * time.Minute, Sleep: sl.Sleep,
		OnError: func(err error) { errs = append(errs, err) }}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	ds := sl.delays()
	if len(ds) != 3 || ds[0] != 3*time.Minute || ds[1] != 3*time.Minute || ds[2] > 20*time.Millisecond {
		t.Errorf("delays = %v, want [3m 3m ~10ms]", ds)
	}
	var se *StatusError
	if len(errs) != 4 || !errors.As(errs[0], &se) || se.Code != 404 || !errors.Is(errs[1], ErrContentType) ||
		!errors.Is(errs[2], ErrStreamEnded) || !errors.Is(errs[3], ErrServerStopped) {
		t.Errorf("errors = %v", errs)
	}
	if got := sink.ids(); !eqStrings(got, []string{"1", "2"}) {
		t.Errorf("ids = %v", got)
	}
}

// TestOnceReportsErrors: with Once, nothing is retried.
func TestOnceReportsErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     http.HandlerFunc
		check func(error) bool
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) },
			func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.Code == 500 }},
		{"content-type", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Type", "application/json") },
			func(err error) bool { return errors.Is(err, ErrContentType) }},
		{"redirect-without-location", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusFound) },
			func(err error) bool { return errors.Is(err, ErrBadRedirect) }},
		{"redirect-bad-location", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://[::1")
			w.WriteHeader(http.StatusFound)
		}, func(err error) bool { return errors.Is(err, ErrBadRedirect) }},
		{"eof", func(w http.ResponseWriter, r *http.Request) { sseHeaders(w); write(w, event(1, "\n")) },
			func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { conns.Add(1); tc.h(w, r) })
			var sl fakeSleep
			w, err := New(Config{Name: tname(t), URL: srv.URL, Once: true, Sleep: sl.Sleep}, newTestSink(), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Run(context.Background())
			if !tc.check(err) {
				t.Errorf("Run = %v", err)
			}
			if conns.Load() != 1 || len(sl.delays()) != 0 {
				t.Errorf("%d requests, delays %v: Once must not reconnect", conns.Load(), sl.delays())
			}
		})
	}
}

// TestIdleTimeout: a feed that stalls is recycled and resumed, and the
// hooks see events and errors in order.
func TestIdleTimeout(t *testing.T) {
	// On the bubble's clock: a first connection that is merely slow to
	// answer on a loaded machine can no longer be taken for idle.
	synctest.Test(t, testIdleTimeout)
}

func testIdleTimeout(t *testing.T) {
	var conns atomic.Int32
	var log requestLog
	srv := newPipeNet(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r, "")
		switch conns.Add(1) {
		case 1:
			sseHeaders(w)
			write(w, ": hello\n"+event(1, "\n"))
			<-r.Context().Done() // stall until the client gives up
		case 2:
			sseHeaders(w)
			write(w, event(2, "\n"))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	var mu sync.Mutex
	var trace []string
	add := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	sink := &traceSink{add: add}
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: "http://feed.test/", Client: srv.Client(), IdleTimeout: 150 * time.Millisecond, Sleep: sl.Sleep,
		OnError:   func(err error) { add("error: " + err.Error()) },
		OnComment: func(c string) { add("comment: " + c) },
	}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	want := []string{"comment: hello", "event 1", "error: " + ErrIdleTimeout.Error(), "event 2",
		"error: " + ErrStreamEnded.Error(), "error: " + ErrServerStopped.Error()}
	if !eqStrings(trace, want) {
		t.Errorf("trace =\n%q\nwant\n%q", trace, want)
	}
	if r := log.all(); len(r) != 3 || r[1].lastEventID != "1" {
		t.Errorf("requests = %+v", r)
	}
	if got := value(metrics.Reconnects.WithLabelValues(tname(t), ReasonIdle)); got != 1 {
		t.Errorf("reconnects{idle_timeout} = %v", got)
	}
}

// traceSink appends "event ID" for each message to a shared trace.
type traceSink struct{ add func(string) }

func (s *traceSink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	for _, m := range msgs {
		s.add("event " + m.Event.ID)
	}
	return len(msgs), nil
}
func (s *traceSink) Close() error { return nil }

// TestRequestShape: method, headers and body go with every connection;
// Last-Event-ID only once there is one.
func TestRequestShape(t *testing.T) {
	var conns atomic.Int32
	var log requestLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		log.add(r, string(b))
		switch conns.Add(1) {
		case 1:
			sseHeaders(w)
			write(w, event(1, "\n")+event(2, "\n"))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, Method: "POST", Body: `{"subscribe":true}`,
		Header: http.Header{"Authorization": {"Bearer x"}}, Sleep: sl.Sleep}, newTestSink(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	reqs := log.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, r := range reqs {
		if r.method != "POST" || r.body != `{"subscribe":true}` || r.header.Get("Authorization") != "Bearer x" ||
			r.header.Get("Accept") != "text/event-stream" || r.header.Get("Cache-Control") != "no-cache" {
			t.Errorf("request %d = %+v", i, r)
		}
	}
	if reqs[0].hasLastEventID || reqs[1].lastEventID != "2" {
		t.Errorf("Last-Event-ID: first %q (present %v), second %q", reqs[0].lastEventID, reqs[0].hasLastEventID, reqs[1].lastEventID)
	}
}

// TestRedirectResendsBody: a 307 is followed with method and body, on every
// reconnection.
func TestRedirectResendsBody(t *testing.T) {
	var conns atomic.Int32
	var log requestLog
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/feed", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/feed", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		log.add(r, string(b))
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, event(1, "\n"))
	})
	srv := newServer(t, mux.ServeHTTP)
	var sl fakeSleep
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: srv.URL + "/old", Method: "POST", Body: "b", Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	reqs := log.all()
	if len(reqs) != 2 || reqs[0].body != "b" || reqs[1].body != "b" || reqs[1].lastEventID != "1" {
		t.Errorf("requests at /feed = %+v", reqs)
	}
	if !eqStrings(sink.ids(), []string{"1"}) {
		t.Errorf("ids = %v", sink.ids())
	}
}

// TestSinkFailuresLoseNothing: a sink that fails (some Writes after a
// partial acknowledgement) pauses the worker; when it recovers every event
// is there once, in order.
func TestSinkFailuresLoseNothing(t *testing.T) {
	const total = 40
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		// Replays from Last-Event-ID: reconnecting before the sink
		// acknowledged what was received would duplicate events.
		start := startID(r)
		if start > total {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		for i := start; i <= total; i++ {
			write(w, event(i, "\n"))
		}
	})
	sink := newTestSink()
	sink.fails, sink.partial = 5, true
	sink.block = make(chan struct{})
	var paused atomic.Bool
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, BatchSize: 8, Sleep: sl.Sleep,
		OnState: func(s State) {
			if s == StatePaused {
				paused.Store(true)
			}
		}}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	// Let everything queue up so Writes get multi-message batches.
	waitFor(t, "all events received", func() bool { return w.Status().Received == total })
	sink.mu.Lock()
	close(sink.block)
	sink.block = nil
	sink.mu.Unlock()
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, total)) {
		t.Fatalf("ids = %v", got)
	}
	if !paused.Load() {
		t.Error("state paused never reported")
	}
	// One ~1ms reconnection delay (the stream ended), in any order with
	// 5 sink retries growing from 100ms.
	var retries []time.Duration
	for _, d := range sl.delays() {
		if d >= 50*time.Millisecond {
			retries = append(retries, d)
		}
	}
	if len(retries) != 5 || retries[0] < 75*time.Millisecond || retries[0] > 125*time.Millisecond {
		t.Errorf("sink retry delays = %v, want 5 growing from 100ms", retries)
	}
	for i := 1; i < len(retries); i++ {
		if retries[i] <= retries[i-1] {
			t.Errorf("sink retry delays = %v, want growing", retries)
		}
	}
	if st := w.Status(); st.Forwarded != total || !strings.Contains(st.LastError, errSinkDown.Error()) && !strings.Contains(st.LastError, "204") {
		t.Errorf("status = %+v", st)
	}
}

// TestIdleTimerIgnoresBackPressure: time spent waiting for a slow sink is
// not server silence, so it must not recycle the connection.
func TestIdleTimerIgnoresBackPressure(t *testing.T) {
	// On the bubble's clock, the 300 ms below are exactly six idle
	// timeouts' worth of blocked reader, whatever the machine's load.
	synctest.Test(t, testIdleTimerIgnoresBackPressure)
}

func testIdleTimerIgnoresBackPressure(t *testing.T) {
	var log requestLog
	srv := newPipeNet(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if log.add(r, "") > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		for i := 1; i <= 5; i++ {
			write(w, event(i, "\n"))
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	sink := newTestSink()
	sink.block = make(chan struct{})
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: "http://feed.test/", Client: srv.Client(), IdleTimeout: 50 * time.Millisecond, QueueSize: 1, BatchSize: 1, Sleep: sl.Sleep}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, r := run(t, w)
	<-sink.entered
	time.Sleep(300 * time.Millisecond) // several idle timeouts while the reader is blocked
	sink.mu.Lock()
	close(sink.block)
	sink.block = nil
	sink.mu.Unlock()
	if err := wait(t, r); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	if got := sink.ids(); !eqStrings(got, seq(1, 5)) {
		t.Errorf("ids = %v", got)
	}
	// One idle timeout, after all 5 events, when the server really was
	// silent.
	if reqs := log.all(); len(reqs) != 2 || reqs[1].lastEventID != "5" {
		t.Errorf("requests = %+v, want the second with Last-Event-ID 5", reqs)
	}
}

// TestCommentsAmongBatchedEvents: comments read in the same batch as
// events reach OnComment between the deliveries of the events around
// them, and a comment before any event is handed on without waiting for
// one.
func TestCommentsAmongBatchedEvents(t *testing.T) {
	var conns atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if conns.Add(1) > 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		sseHeaders(w)
		write(w, ": first\n")
		write(w, event(1, "\n")+": a\n"+": b\n"+event(2, "\n")+event(3, "\n")+": c\n")
	})
	var mu sync.Mutex
	var trace []string
	add := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	var sl fakeSleep
	w, err := New(Config{Name: tname(t), URL: srv.URL, Sleep: sl.Sleep,
		OnComment: func(c string) { add("comment: " + c) },
	}, &traceSink{add: add}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := run(t, w)
	if err := wait(t, done); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v", err)
	}
	want := []string{"comment: first", "event 1", "comment: a", "comment: b", "event 2", "event 3", "comment: c"}
	mu.Lock()
	defer mu.Unlock()
	if !eqStrings(trace, want) {
		t.Errorf("trace =\n%q\nwant\n%q", trace, want)
	}
}
