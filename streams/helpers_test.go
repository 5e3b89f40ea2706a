package streams

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLong bounds every wait so that a broken feature fails the test
// instead of hanging it; it is never the thing asserted.
const waitLong = 20 * time.Second

// startServer runs a streams Server behind an httptest server; both are
// shut down when the test ends, before the brokers (cleanups run LIFO).
func startServer(t *testing.T, cfgs []Config, deps Deps) (*Server, *httptest.Server) {
	t.Helper()
	srv, err := New(cfgs, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv, serveForTest(t, srv, false)
}

// serveForTest serves srv behind an httptest server, with small socket
// send buffers if asked; both are shut down when the test ends.
func serveForTest(t *testing.T, srv *Server, smallBuffers bool) *httptest.Server {
	t.Helper()
	hs := httptest.NewUnstartedServer(srv)
	if smallBuffers {
		hs.Listener = smallBufferListener{hs.Listener}
	}
	hs.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return hs
}

// natsEnv is a real nats-server with JetStream and a client connection.
type natsEnv struct {
	broker *testbroker.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
}

func startNATS(t *testing.T) *natsEnv {
	t.Helper()
	b := testbroker.StartNATS(t)
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return &natsEnv{broker: b, nc: nc, js: js}
}

func (e *natsEnv) createStream(t *testing.T, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects})
	if err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	return st
}

// natsMsg builds a message the way the NATS sink publishes one.
func natsMsg(subject, typ, data string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(data)
	m.Header.Set(sinks.HeaderEvent, typ)
	m.Header.Set(sinks.HeaderSource, "test")
	m.Header.Set(sinks.HeaderReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	return m
}

// jsPublish publishes to JetStream and waits for the ack.
func (e *natsEnv) jsPublish(t *testing.T, subject, typ, data string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, natsMsg(subject, typ, data))
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// publish sends on core NATS and flushes, so the server has routed the
// message when it returns.
func (e *natsEnv) publish(t *testing.T, subject, typ, data string) {
	t.Helper()
	if err := e.nc.PublishMsg(natsMsg(subject, typ, data)); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// sseClient is one subscriber reading a stream with the sse decoder.
type sseClient struct {
	resp     *http.Response
	events   chan sse.Event
	comments chan string
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	err      error // why reading ended
}

// get issues a GET and returns the response without reading it.
func get(t *testing.T, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// subscribe opens a stream and checks that it answered 200; events are
// decoded in the background until close.
func subscribe(t *testing.T, url string, hdr map[string]string) *sseClient {
	t.Helper()
	return subscribeWith(t, http.DefaultClient, url, hdr)
}

func subscribeWith(t *testing.T, hc *http.Client, url string, hdr map[string]string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	c := &sseClient{
		resp:     resp,
		events:   make(chan sse.Event, 100000),
		comments: make(chan string, 100000),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go c.read()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) read() {
	defer close(c.done)
	dec := sse.NewDecoder(c.resp.Body)
	dec.OnComment(func(text string) {
		select {
		case c.comments <- text:
		default:
		}
	})
	for {
		ev, err := dec.Next()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		c.events <- ev
	}
}

// next returns the next event, failing the test if none comes.
func (c *sseClient) next(t *testing.T) sse.Event {
	t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case <-c.done:
		select {
		case ev := <-c.events:
			return ev
		default:
		}
		t.Fatalf("stream ended while waiting for an event: %v", c.readErr())
	case <-time.After(waitLong):
		t.Fatalf("no event within %s", waitLong)
	}
	return sse.Event{}
}

// take reads n events.
func (c *sseClient) take(t *testing.T, n int) []sse.Event {
	t.Helper()
	out := make([]sse.Event, 0, n)
	for range n {
		out = append(out, c.next(t))
	}
	return out
}

// ended waits for the server to end the stream and returns the events
// still received before the end.
func (c *sseClient) ended(t *testing.T) []sse.Event {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLong):
		t.Fatalf("stream not ended within %s", waitLong)
	}
	var out []sse.Event
	for {
		select {
		case ev := <-c.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func (c *sseClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *sseClient) close() {
	c.cancel()
	<-c.done
	c.resp.Body.Close()
}

// datas lists the data of events as strings.
func datas(evs []sse.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Data)
	}
	return out
}

// metricValue reads a counter or gauge child, e.g.
// metricValue(metrics.ResumeTooOld.WithLabelValues(path)).
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	if c := pb.GetCounter(); c != nil {
		return c.GetValue()
	}
	return pb.GetGauge().GetValue()
}

// probe returns the status of a GET without reading the body, so it also
// works on a stream (whose body never ends).
func probe(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	cancel()
	resp.Body.Close()
	return resp.StatusCode
}

// clientSubs counts the subscriptions the test's NATS connection (the one
// the streams server uses) holds on the server.
func (e *natsEnv) clientSubs(t *testing.T) int {
	t.Helper()
	cid, err := e.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := e.broker.Server().Connz(&server.ConnzOptions{CID: cid, Subscriptions: true})
	if err != nil || len(cz.Conns) != 1 {
		t.Fatalf("connz for cid %d: %v (%d conns)", cid, err, len(cz.Conns))
	}
	return int(cz.Conns[0].NumSubs)
}
