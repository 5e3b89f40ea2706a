package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// tailLeaks checks for goroutines left by a tail test. Goroutines of other
// tests running before are ignored, and so is the os/signal loop that
// signal.NotifyContext starts once per process and never stops.
func tailLeaks(t *testing.T) {
	t.Helper()
	opts := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("os/signal.loop")}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func runTail(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = dispatch(append([]string{"tail"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func tailServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func streamHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

// writes sends each part as its own flushed write.
func writes(w http.ResponseWriter, parts ...string) {
	for _, p := range parts {
		_, _ = io.WriteString(w, p)
		w.(http.Flusher).Flush()
	}
}

// TestTailOnceSplitCRLF: CR at the end of one write and LF at the start of
// the next is one line end; multi-line data, types, ids and comments come
// out exactly.
func TestTailOnceSplitCRLF(t *testing.T) {
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		writes(w, ":hi <there>\r", "\nid: 1\r", "\nevent: add\r", "\ndata: a\r", "\ndata: \"b\"\r", "\n\r", "\n",
			"data: no id change\r\n\r", "\nid\r\ndata: x&y\r", "\n\r", "\ndata: unterminated\r\n")
	})
	tailLeaks(t)
	code, out, errOut := runTail(t, "-once", "-comments", url)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := `{"comment":"hi <there>"}
{"id":"1","event":"add","data":"a\n\"b\""}
{"id":"1","event":"message","data":"no id change"}
{"id":"","event":"message","data":"x&y"}
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if errOut != "" {
		t.Errorf("stderr %q", errOut)
	}
}

// TestTailLimit: -n exits 0 after N events of an endless feed.
func TestTailLimit(t *testing.T) {
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		for i := 1; r.Context().Err() == nil; i++ {
			writes(w, fmt.Sprintf("id: %d\ndata: %d\n\n", i, i))
		}
	})
	tailLeaks(t)
	code, out, errOut := runTail(t, url, "-n", "3") // flags after the URL work too
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if want := "{\"id\":\"1\",\"event\":\"message\",\"data\":\"1\"}\n{\"id\":\"2\",\"event\":\"message\",\"data\":\"2\"}\n{\"id\":\"3\",\"event\":\"message\",\"data\":\"3\"}\n"; out != want {
		t.Errorf("stdout %q", out)
	}
}

func TestTailOnceFailures(t *testing.T) {
	tailLeaks(t)
	for _, tc := range []struct {
		name   string
		h      http.HandlerFunc
		stderr string
	}{
		{"status", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusBadGateway) }, "502 Bad Gateway"},
		{"content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			writes(w, "data: x\n\n")
		}, `not text/event-stream: got "text/html"`},
		{"redirect without location", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMovedPermanently) }, "without a Location"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tailServer(t, tc.h)
			code, out, errOut := runTail(t, "-once", url)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.stderr) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q (want one line with %q)", code, out, errOut, tc.stderr)
			}
			// The error speaks of the URL the user typed, not of the
			// source worker's internal name.
			if !strings.HasPrefix(errOut, "ssebridge tail: "+url+": ") || strings.Contains(errOut, `source "`) {
				t.Errorf("stderr %q, want it to start with ssebridge tail: %s: and not name the source", errOut, url)
			}
			// With -errors the error is printed once: as a JSON line.
			code, out, errOut = runTail(t, "-once", "-errors", url)
			var line struct{ Error string }
			_ = json.Unmarshal([]byte(out), &line)
			if code != 1 || errOut != "" || strings.Count(out, "\n") != 1 || !strings.Contains(line.Error, tc.stderr) {
				t.Errorf("-errors: exit %d, stdout %q, stderr %q (want one JSON error line and nothing on stderr)", code, out, errOut)
			}
		})
	}
	// A parameter on the content type is fine.
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		writes(w, "data: ok\n\n")
	})
	if code, out, errOut := runTail(t, "-once", url); code != 0 || out != `{"id":"","event":"message","data":"ok"}`+"\n" {
		t.Errorf("charset parameter: exit %d, %q, %q", code, out, errOut)
	}
}

// Test204 exits 0 without reconnecting, with or without -once.
func TestTail204(t *testing.T) {
	tailLeaks(t)
	var n atomic.Int32
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	for _, args := range [][]string{{url}, {"-once", "-errors", url}} {
		if code, out, errOut := runTail(t, args...); code != 0 || out != "" || errOut != "" {
			t.Errorf("%v: exit %d, %q, %q", args, code, out, errOut)
		}
	}
	if n.Load() != 2 {
		t.Errorf("%d requests, want 2", n.Load())
	}
}

// TestTailReconnectsWithErrors: without -once tail reconnects with
// Last-Event-ID, resends method, headers and body, and -errors shows each
// connection error in order with the events.
func TestTailReconnectsWithErrors(t *testing.T) {
	tailLeaks(t)
	var mu sync.Mutex
	var seen []string
	var n atomic.Int32
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %s last=%q", r.Method, r.Header.Get("X-Key"), b, r.Header.Get("Last-Event-ID")))
		mu.Unlock()
		switch n.Add(1) {
		case 1:
			streamHeaders(w)
			writes(w, "id: 7\ndata: one\n\n", "id: 8\ndata: cut")
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			streamHeaders(w)
			writes(w, "data: two\n\n")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	code, out, errOut := runTail(t, "-errors", "-retry", "0", "-H", "X-Key: k", "-X", "put", "-d", "sub", "-last-event-id", "6", url)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := `{"id":"7","event":"message","data":"one"}
{"error":"server closed the stream"}
{"error":"unexpected HTTP status 503 Service Unavailable"}
{"id":"7","event":"message","data":"two"}
{"error":"server closed the stream"}
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if errOut != "" {
		t.Errorf("stderr %q: with -errors, errors are printed once, on stdout", errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	wantReqs := []string{`PUT k sub last="6"`, `PUT k sub last="7"`, `PUT k sub last="7"`, `PUT k sub last="7"`}
	if strings.Join(seen, "\n") != strings.Join(wantReqs, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(wantReqs, "\n"))
	}
}

// TestTailMaxEventSize: a 10 MiB event is skipped by default (4 MiB) and
// printed when -max-event-size allows it.
func TestTailMaxEventSize(t *testing.T) {
	tailLeaks(t)
	big := strings.Repeat("z", 10<<20)
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		writes(w, "id: big\ndata: "+big+"\n\n", "id: small\ndata: s\n\n")
	})
	code, out, errOut := runTail(t, "-once", url)
	if code != 0 || out != `{"id":"small","event":"message","data":"s"}`+"\n" {
		t.Errorf("default size: exit %d, stdout %.200q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runTail(t, "-once", "-max-event-size", fmt.Sprint(11<<20), url)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var ev struct{ ID, Event, Data string }
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.ID != "big" || ev.Data != big {
		t.Errorf("big event: id %q, %d bytes of data, err %v", ev.ID, len(ev.Data), err)
	}
}

func TestTailUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{nil, "URL is required"},
		{[]string{"-H", "novalue", "http://127.0.0.1:1"}, "want 'Name: value'"},
		{[]string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, "unexpected argument"},
		{[]string{"-retry", "1m", "-retry-max", "1s", "http://127.0.0.1:1"}, "-retry-max: must not be less than the initial delay (1m0s)"},
		{[]string{"ftp://127.0.0.1:1"}, `URL: must be an http:// or https:// URL, got "ftp://127.0.0.1:1"`},
		// Requests net/http can never send: exit 2 at once, not
		// "reconnecting" until interrupted.
		{[]string{"http://exa mple.com/"}, "URL: must be an http:// or https:// URL: invalid character"},
		{[]string{"-X", "GE T", "http://127.0.0.1:1"}, "-X: must be an HTTP method"},
		{[]string{"-H", "X-A: a\x01b", "http://127.0.0.1:1"}, "-H X-A: header values cannot contain control characters"},
		{[]string{"-last-event-id", "a\x01b", "http://127.0.0.1:1"}, "-last-event-id: contains a control character"},
		{[]string{"-idle-timeout", "-1s", "http://127.0.0.1:1"}, "-idle-timeout: must not be negative"},
	} {
		if code, _, errOut := runTail(t, tc.args...); code != 2 || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errOut, tc.stderr)
		}
	}
	if code, _, errOut := runTail(t, "-h"); code != 0 || !strings.Contains(errOut, "usage: ssebridge tail") {
		t.Errorf("-h: %d %q", code, errOut)
	}
}

// TestTailIdleTimeout: a feed that goes silent is an error with -once.
func TestTailIdleTimeout(t *testing.T) {
	tailLeaks(t)
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		streamHeaders(w)
		writes(w, "data: before\n\n")
		<-r.Context().Done()
	})
	code, out, errOut := runTail(t, "-once", "-idle-timeout", "100ms", url)
	if code != 1 || out != `{"id":"","event":"message","data":"before"}`+"\n" || !strings.Contains(errOut, "idle timeout") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestTailLastEventIDHeader: -H 'Last-Event-ID: x' is taken as the start ID
// (the worker manages that header itself), and -last-event-id wins over it.
func TestTailLastEventIDHeader(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		streamHeaders(w)
		writes(w, "data: after\n\n")
	})
	tailLeaks(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-once", "-H", "Last-Event-ID: 41", url}, "41"},
		{[]string{"-once", "-H", "last-event-id: 41", "-last-event-id", "7", url}, "7"},
	} {
		code, out, errOut := runTail(t, tc.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		mu.Lock()
		got := seen[len(seen)-1]
		mu.Unlock()
		if got != tc.want {
			t.Errorf("%v: server saw Last-Event-ID %q, want %q", tc.args, got, tc.want)
		}
		if want := fmt.Sprintf("{\"id\":%q,\"event\":\"message\",\"data\":\"after\"}\n", tc.want); out != want {
			t.Errorf("%v: stdout %q, want %q", tc.args, out, want)
		}
	}
}

// TestTailReconnectNotes: without -errors each connection error is one
// stderr line naming the URL, and the events stay alone on stdout.
func TestTailReconnectNotes(t *testing.T) {
	tailLeaks(t)
	var n atomic.Int32
	url := tailServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			streamHeaders(w)
			writes(w, "id: 1\ndata: one\n\n")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	code, out, errOut := runTail(t, "-retry", "0", url)
	if code != 0 || out != `{"id":"1","event":"message","data":"one"}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want := "ssebridge tail: " + url + ": unexpected HTTP status 503 Service Unavailable (reconnecting)\n" +
		"ssebridge tail: " + url + ": server closed the stream (reconnecting)\n"
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

// TestTailNetworkErrorNamesURLOnce: net/http's own `Get "URL":` prefix is
// not repeated after the URL tail already names.
func TestTailNetworkErrorNamesURLOnce(t *testing.T) {
	tailLeaks(t)
	ln := freeAddr(t) // nothing listens there any more
	url := "http://" + ln + "/feed"
	code, _, errOut := runTail(t, "-once", url)
	if code != 1 || strings.Count(errOut, url) != 1 || !strings.HasPrefix(errOut, "ssebridge tail: "+url+": ") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
