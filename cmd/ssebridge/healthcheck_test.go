package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/demo"
)

func runHealthcheck(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = dispatch(append([]string{"healthcheck"}, args...), &o, &e)
	return code, o.String(), e.String()
}

// TestHealthcheckAnswers: 200 is healthy (exit 0); a 503 is not (exit 1),
// with what /readyz says is not ready; so is no answer at all.
func TestHealthcheckAnswers(t *testing.T) {
	tailLeaks(t)
	readyz := `{"ready": false, "nats": {"mode": "external", "connected": false, "status": "reconnecting"},
 "pipelines": [{"name": "wiki", "state": "connected", "ready": true},
   {"name": "ticks", "state": "paused", "ready": false, "last_error": "nats: timeout"}]}`
	var ready bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if ready {
			_, _ = w.Write([]byte(`{"ready": true}`))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(readyz))
	}))
	defer srv.Close()

	code, out, errOut := runHealthcheck("-url", srv.URL+"/readyz")
	want := "ssebridge healthcheck: not ready: " + srv.URL + "/readyz answered 503 Service Unavailable: NATS reconnecting; pipeline ticks paused (nats: timeout)\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("not ready: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
	}
	ready = true
	if code, out, errOut := runHealthcheck("-url", srv.URL+"/readyz"); code != 0 || out != "ready\n" || errOut != "" {
		t.Errorf("ready: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := runHealthcheck("-url", srv.URL+"/nope"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("404: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runHealthcheck("-url", "http://"+freeAddr(t)+"/readyz"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("nothing listening: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runHealthcheck("-timeout", "0"); code != 2 || !strings.Contains(errOut, "usage: ssebridge healthcheck") {
		t.Errorf("-timeout 0: exit %d, stderr %q", code, errOut)
	}
}

// TestHealthcheckHangingServer: a bridge that accepts but never answers is
// unhealthy within -timeout, not a probe hanging until the container
// runtime kills it.
func TestHealthcheckHangingServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	code, _, errOut := runHealthcheck("-url", srv.URL+"/readyz", "-timeout", "200ms")
	if code != 1 || !strings.Contains(errOut, "deadline exceeded") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// TestHealthcheckAgainstDemo probes a real bridge (the demo) on its
// /readyz: exit 0 once its pipeline is connected.
func TestHealthcheckAgainstDemo(t *testing.T) {
	tailLeaks(t) // nothing of the demo or the probe outlives the test
	d, err := demo.New(demo.Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Interval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := d.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runHealthcheck("-url", d.BaseURL()+"/readyz"); code != 0 || out != "ready\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestHealthcheckOverHTTPS: a bridge serving HTTPS (http.tls) is probed
// with an https URL; its certificate names the public host, so -insecure
// accepts it, and without the flag the probe says why it failed.
func TestHealthcheckOverHTTPS(t *testing.T) {
	tailLeaks(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ready": true}`))
	}))
	defer srv.Close()
	if code, _, errOut := runHealthcheck("-url", srv.URL+"/readyz"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("unknown certificate: exit %d, stderr %q; want 1 and the certificate named", code, errOut)
	}
	if code, out, errOut := runHealthcheck("-insecure", "-url", srv.URL+"/readyz"); code != 0 || out != "ready\n" {
		t.Errorf("-insecure: exit %d, stdout %q, stderr %q; want 0 and ready", code, out, errOut)
	}
}
