package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

func coreCfg(path, subject string) Config {
	return Config{Path: path, NATS: &NATSConfig{Subject: subject}}
}

func TestCoreNATSFanOutIDsAndNarrowing(t *testing.T) {
	e := startNATS(t)
	srv, hs := startServer(t, []Config{coreCfg("/core/wiki", "wiki.>")}, Deps{NATS: e.nc})

	// A Last-Event-ID on a core stream is ignored, not refused: browsers
	// send one on every reconnect.
	all := subscribe(t, hs.URL+"/core/wiki", map[string]string{"Last-Event-ID": "whatever"})
	en := subscribe(t, hs.URL+"/core/wiki?subject="+url.QueryEscape("wiki.en.>"), nil)
	edits := subscribe(t, hs.URL+"/core/wiki?event=edit&event=log", nil)

	e.publish(t, "wiki.en.page", "edit", "en-edit")
	e.publish(t, "wiki.de.page", "new", "de-new")
	e.publish(t, "wiki.en.page", "new", "en-new")
	e.publish(t, "wiki.de.page", "log", "de-log")

	got := all.take(t, 4)
	if d := datas(got); !slices.Equal(d, []string{"en-edit", "de-new", "en-new", "de-log"}) {
		t.Fatalf("unfiltered subscriber got %v", d)
	}
	for i, ev := range got {
		if want := fmt.Sprint(i + 1); ev.ID != want {
			t.Errorf("event %d id = %q, want per-connection counter %q", i, ev.ID, want)
		}
	}
	if d := datas(en.take(t, 2)); !slices.Equal(d, []string{"en-edit", "en-new"}) {
		t.Fatalf("subject-narrowed subscriber got %v", d)
	}
	if d := datas(edits.take(t, 2)); !slices.Equal(d, []string{"en-edit", "de-log"}) {
		t.Fatalf("event-filtered subscriber got %v", d)
	}
	// The filters dropped the other events rather than delaying them.
	e.publish(t, "wiki.en.page", "edit", "marker")
	if d := string(en.next(t).Data); d != "marker" {
		t.Fatalf("narrowed subscriber then got %q", d)
	}
	if d := string(edits.next(t).Data); d != "marker" {
		t.Fatalf("filtered subscriber then got %q", d)
	}
	if d := string(all.next(t).Data); d != "marker" {
		t.Fatalf("unfiltered subscriber then got %q", d)
	}

	// Three subscribers share one NATS subscription.
	if n := e.clientSubs(t); n != 1 {
		t.Errorf("the connection holds %d subscriptions for 3 subscribers, want 1", n)
	}
	st := srv.Stats()
	if len(st) != 1 || st[0].Backend != "nats" || st[0].Subscribers != 3 || st[0].EventsSent != 5+3+3 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestCoreNATSBadRequests(t *testing.T) {
	e := startNATS(t)
	_, hs := startServer(t, []Config{coreCfg("/core/bad", "wiki.en.>")}, Deps{NATS: e.nc})
	for _, q := range []string{
		"since=2020-01-01T00:00:00Z",                // no history
		"since=yesterday",                           // not RFC 3339
		"subject=" + url.QueryEscape("wiki.>"),      // wider than the stream
		"subject=" + url.QueryEscape("wiki.de.>"),   // beside it
		"subject=" + url.QueryEscape("wiki..en"),    // invalid
		"subject=" + url.QueryEscape("wiki.en.>.x"), // invalid
	} {
		resp := get(t, hs.URL+"/core/bad?"+q, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %s, want 400", q, resp.Status)
		}
	}
	if resp := get(t, hs.URL+"/nope", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/core/bad", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

func TestHeartbeatComments(t *testing.T) {
	e := startNATS(t)
	cfg := coreCfg("/core/hb", "hb")
	cfg.Heartbeat = time.Duration(20 * time.Millisecond)
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})
	c := subscribe(t, hs.URL+"/core/hb", nil)
	beats := 0
	for beats < 3 {
		select {
		case text := <-c.comments:
			if text == "heartbeat" {
				beats++
			}
		case <-time.After(waitLong):
			t.Fatalf("%d heartbeats within %s, want 3", beats, waitLong)
		}
	}
}

// smallBufferListener shrinks the send buffer of accepted connections, so
// that a client which stops reading blocks the server's writes after a few
// KiB instead of a few MiB.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// startSmallBufferServer is startServer with small socket send buffers.
func startSmallBufferServer(t *testing.T, cfgs []Config, deps Deps) (*Server, *httptest.Server) {
	t.Helper()
	srv, err := New(cfgs, deps)
	if err != nil {
		t.Fatal(err)
	}
	return srv, serveForTest(t, srv, true)
}

// slowGet opens a stream through a small receive buffer and never reads
// it, like a stalled client.
func slowGet(t *testing.T, url string) *http.Response {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("slow subscriber: %s", resp.Status)
	}
	return resp
}

func TestSlowSubscriberIsCutOffWithoutSlowingOthers(t *testing.T) {
	e := startNATS(t)
	const path = "/core/slow"
	cfg := coreCfg(path, "slow")
	cfg.MaxPending = 8
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{NATS: e.nc})
	slow := slowGet(t, hs.URL+path)
	fast := subscribe(t, hs.URL+path, nil)
	drops := metrics.SlowSubscriberDrops.WithLabelValues(path)
	before := metricValue(t, drops)

	// Publish in batches of max_pending and let the fast subscriber take
	// each batch before the next: it can never overflow, while the slow
	// one's buffer fills once its socket is full. Ordering, not timing.
	payload := strings.Repeat("x", 8<<10)
	var want, got []string
	for batch := 0; metricValue(t, drops) == before; batch++ {
		if batch == 2000 {
			t.Fatalf("slow subscriber still connected after %d events", len(want))
		}
		for i := range cfg.MaxPending {
			d := fmt.Sprintf("%d-%d %s", batch, i, payload)
			want = append(want, d)
			e.publish(t, "slow", "", d)
		}
		got = append(got, datas(fast.take(t, cfg.MaxPending))...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fast subscriber got %d events, want all %d in order", len(got), len(want))
	}
	// The slow subscriber's response ends (it may resume with its id).
	if _, err := io.Copy(io.Discard, slow.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("slow body ended with %v", err)
	}
	// The fast one keeps going.
	e.publish(t, "slow", "", "after")
	if d := string(fast.next(t).Data); d != "after" {
		t.Fatalf("fast subscriber then got %q", d)
	}
}

func TestSubscriberLimits(t *testing.T) {
	e := startNATS(t)
	a, b, c := coreCfg("/lim/a", "a"), coreCfg("/lim/b", "b"), coreCfg("/lim/c", "c")
	a.MaxSubscribers = 1
	_, hs := startServer(t, []Config{a, b, c}, Deps{NATS: e.nc, MaxSubscribers: 2})
	rejA := metricValue(t, metrics.SubscribersRejected.WithLabelValues("/lim/a"))

	a1 := subscribe(t, hs.URL+"/lim/a", nil)
	if code := probe(t, hs.URL+"/lim/a"); code != http.StatusServiceUnavailable {
		t.Fatalf("second subscriber of a stream capped at 1: %d", code)
	}
	if d := metricValue(t, metrics.SubscribersRejected.WithLabelValues("/lim/a")) - rejA; d != 1 {
		t.Errorf("stream_subscribers_rejected_total grew by %v, want 1", d)
	}
	subscribe(t, hs.URL+"/lim/b", nil)
	if code := probe(t, hs.URL+"/lim/c"); code != http.StatusServiceUnavailable {
		t.Fatalf("third subscriber past the global cap of 2: %d", code)
	}
	if g := metricValue(t, metrics.Subscribers.WithLabelValues("/lim/a")); g != 1 {
		t.Errorf("stream_subscribers{/lim/a} = %v, want 1", g)
	}

	// Leaving frees the slot (once the server noticed the disconnect).
	a1.close()
	deadline := time.Now().Add(waitLong)
	for {
		code := probe(t, hs.URL+"/lim/c")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %d", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownEndsStreamsAndRefusesNewOnes(t *testing.T) {
	e := startNATS(t)
	srv, hs := startServer(t, []Config{coreCfg("/core/shut", "shut")}, Deps{NATS: e.nc})
	c := subscribe(t, hs.URL+"/core/shut", nil)
	e.publish(t, "shut", "", "one")
	e.publish(t, "shut", "", "two")
	if d := datas(c.take(t, 2)); !slices.Equal(d, []string{"one", "two"}) {
		t.Fatalf("got %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.ended(t)
	if err := c.readErr(); !errors.Is(err, io.EOF) {
		t.Errorf("stream ended with %v, want a clean end (EOF)", err)
	}
	if resp := get(t, hs.URL+"/core/shut", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Shutdown: %s, want 503", resp.Status)
	}
	if err := srv.Shutdown(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("second Shutdown = %v, want ErrClosed", err)
	}
	// The shared NATS subscription is gone (once the server has read the
	// UNSUB, which Flush waits for).
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := e.clientSubs(t); n != 0 {
		t.Errorf("%d subscriptions left on the server", n)
	}
}

func TestShutdownCutsOffAClientThatStoppedReading(t *testing.T) {
	e := startNATS(t)
	cfg := coreCfg("/core/stuck", "stuck")
	cfg.MaxPending = 100000 // never cut for slowness: only Shutdown may end it
	srv, hs := startSmallBufferServer(t, []Config{cfg}, Deps{NATS: e.nc})
	slowGet(t, hs.URL+"/core/stuck")
	// Far more than the socket buffers hold: the handler blocks writing.
	payload := strings.Repeat("x", 8<<10)
	for range 200 {
		e.publish(t, "stuck", "", payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's deadline error", err)
	}
	// Shutdown returned only once the stuck handler was gone.
	if n := srv.Stats()[0].Subscribers; n != 0 {
		t.Fatalf("%d subscribers still connected after Shutdown", n)
	}
}

func TestCoreStreamEndsWhenItsConnectionCloses(t *testing.T) {
	e := startNATS(t)
	nc, err := nats.Connect(e.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := coreCfg("/core/closed", "closed")
	cfg.Heartbeat = time.Duration(20 * time.Millisecond)
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: nc})
	c := subscribe(t, hs.URL+"/core/closed", nil)
	nc.Close()
	// Heartbeats alone would keep a dead stream looking alive forever.
	c.ended(t)
}
