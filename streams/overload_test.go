package streams

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sse"
)

// The rule under load: a subscriber receives every event of its stream in
// order, or is disconnected and resumes from its last id; it never skips an
// event silently. These tests overload a stream on purpose (a fast
// publisher, many subscribers, small buffers, a bridge connection the
// broker drops as a slow consumer) and check every subscriber's sequence.

// throttledConn slows down reading from the broker, like a congested link:
// every read takes at most 512 bytes and yields the processor, so the
// broker's outbound buffer for this connection fills under a burst and the
// broker drops the connection as a slow consumer.
type throttledConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *throttledConn) Read(p []byte) (int, error) {
	if len(p) > 512 {
		p = p[:512]
	}
	// A pause every 8 reads: a load generator, never a timing assertion.
	if c.reads.Add(1)%16 == 0 {
		time.Sleep(time.Millisecond)
	}
	return c.Conn.Read(p)
}

type throttledDialer struct{}

func (throttledDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &throttledConn{Conn: c}, nil
}

// startOverloadNATS is a broker that drops a client as a slow consumer once
// 64 KiB are pending for it, and a bridge connection reading through a
// throttled link that reconnects at once.
func startOverloadNATS(t *testing.T) (*testbroker.NATS, *nats.Conn, *nats.Conn) {
	t.Helper()
	b := testbroker.StartNATS(t, func(o *server.Options) {
		o.MaxPending = 256 << 10
		o.MaxPayload = 32 << 10
		o.WriteDeadline = 200 * time.Millisecond
	})
	slow, err := nats.Connect(b.URL(), nats.SetCustomDialer(throttledDialer{}),
		nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond), nats.ReconnectJitter(0, 0),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(slow.Close)
	pub, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pub.Close)
	return b, slow, pub
}

// seqReader follows one subscriber: it reads events whose data is a
// sequence number, resumes with its last id whenever the server ends the
// response (if resume is set), and records the first gap or repeat.
type seqReader struct {
	url    string
	resume bool
	want   int // the last sequence it must reach

	mu       sync.Mutex
	last     int // last sequence received
	lastID   string
	conns    int
	problem  error
	finished chan struct{}
}

func (r *seqReader) run(ctx context.Context, hc *http.Client, opened chan<- struct{}) {
	defer close(r.finished)
	first := true
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
		r.mu.Lock()
		if r.lastID != "" && r.resume {
			req.Header.Set("Last-Event-ID", r.lastID)
		}
		r.conns++
		r.mu.Unlock()
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A network error: EventSource reconnects, so does this.
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			// An overloaded broker may not set a subscription up in
			// time; a resilient client tries again a little later.
			resp.Body.Close()
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.fail(fmt.Errorf("GET: %s: %s", resp.Status, b))
			return
		}
		if first {
			opened <- struct{}{}
			first = false
		}
		done := r.read(resp.Body)
		resp.Body.Close()
		if done {
			return
		}
		if !r.resume {
			// Core NATS keeps no history: a new connection starts
			// wherever the subject is now.
			r.mu.Lock()
			r.last = -1
			r.mu.Unlock()
		}
	}
}

// read consumes one response; it reports whether the reader is done.
func (r *seqReader) read(body io.Reader) bool {
	dec := sse.NewDecoder(body)
	r.mu.Lock()
	dec.SetLastEventID(r.lastID)
	r.mu.Unlock()
	for {
		ev, err := dec.Next()
		if err != nil {
			// Like EventSource: the id to resume from is the decoder's
			// last event ID, which an id-only record also sets.
			r.mu.Lock()
			r.lastID = dec.LastEventID()
			r.mu.Unlock()
			return false
		}
		num, _, _ := strings.Cut(string(ev.Data), " ")
		n, err := strconv.Atoi(num)
		if err != nil {
			r.fail(fmt.Errorf("event data %q is not a sequence", ev.Data))
			return true
		}
		r.mu.Lock()
		if r.lastID == "" && dec.LastEventID() == "" {
			// Never told its start (cut before the first flush, like a
			// failed connection): it starts wherever the stream is.
			r.last = -1
		}
		if r.last >= 0 && n != r.last+1 || r.last < 0 && n <= 0 {
			r.problem = fmt.Errorf("after %d got %d (connection %d): a silent gap or repeat", r.last, n, r.conns)
			r.mu.Unlock()
			return true
		}
		r.last, r.lastID = n, ev.ID
		done := n >= r.want
		r.mu.Unlock()
		if done {
			return true
		}
	}
}

func (r *seqReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.problem == nil {
		r.problem = err
	}
}

// overload opens subs readers on url, publishes total events with publish
// (data: 1, 2, ...) as fast as it can and waits until every reader got the
// last one or failed.
func overload(t *testing.T, url string, subs, total int, resume bool, publish func(i int)) []*seqReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: subs}
	hc := &http.Client{Transport: tr}
	readers := make([]*seqReader, subs)
	opened := make(chan struct{}, subs)
	for i := range readers {
		readers[i] = &seqReader{url: url, resume: resume, want: total, finished: make(chan struct{})}
		go readers[i].run(ctx, hc, opened)
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range readers {
			<-r.finished
		}
		tr.CloseIdleConnections()
	})
	for range subs {
		select {
		case <-opened:
		case <-time.After(waitLong):
			t.Fatalf("subscribers not connected within %s", waitLong)
		}
	}
	for i := 1; i <= total; i++ {
		publish(i)
	}
	// Then one event at a time until every reader is done: a core NATS
	// subscriber that was cut off may have missed the last ones.
	deadline := time.After(3 * waitLong)
	for i, r := total+1, 0; r < len(readers); {
		select {
		case <-readers[r].finished:
			r++
			continue
		case <-deadline:
			rd := readers[r]
			rd.mu.Lock()
			t.Fatalf("a subscriber stopped at %d of %d after %d connections", rd.last, total, rd.conns)
		case <-time.After(10 * time.Millisecond):
		}
		publish(i)
		i++
	}
	return readers
}

func TestOverloadedJetStreamNeverSkipsSilently(t *testing.T) {
	broker, slow, pub := startOverloadNATS(t)
	_ = broker
	js, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOAD", Subjects: []string{"load.>"}}); err != nil {
		t.Fatal(err)
	}
	const path = "/js/load"
	cfg := jsStreamCfg(path, "LOAD", "load.>")
	cfg.MaxPending = 16
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: slow})

	const subs, total = 24, 1200
	pad := " " + strings.Repeat("x", 2000)
	readers := overload(t, hs.URL+path, subs, total, true, func(i int) {
		if _, err := js.PublishAsync("load.x", []byte(strconv.Itoa(i)+pad)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	})
	reconnects := 0
	for _, r := range readers {
		if r.problem != nil {
			t.Errorf("subscriber: %v", r.problem)
		}
		reconnects += r.conns - 1
	}
	t.Logf("bridge connection reconnects: %d, subscriber reconnects: %d", slow.Stats().Reconnects, reconnects)
	if slow.Stats().Reconnects == 0 && reconnects == 0 {
		t.Fatal("nothing was overloaded: the test proves nothing")
	}
}

func TestOverloadedCoreNATSNeverSkipsSilently(t *testing.T) {
	_, slow, pub := startOverloadNATS(t)
	const path = "/core/load"
	cfg := coreCfg(path, "load.>")
	cfg.MaxPending = 16
	srv, hs := startServer(t, []Config{cfg}, Deps{NATS: slow})
	const subs, total = 24, 3000
	pad := " " + strings.Repeat("x", 2000)
	limited := false
	readers := overload(t, hs.URL+path, subs, total, false, func(i int) {
		if !limited {
			// The bridge's subscription may hold few messages, so the
			// client library drops some under the burst: every
			// subscriber must then be ended, not left to skip them.
			b := srv.streams[path].backend.(*coreBackend)
			b.mu.Lock()
			if err := b.cur.sub.SetPendingLimits(32, 1<<20); err != nil {
				t.Fatal(err)
			}
			b.mu.Unlock()
			limited = true
		}
		if err := pub.Publish("load.x", []byte(strconv.Itoa(i)+pad)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	})
	reconnects := 0
	for _, r := range readers {
		if r.problem != nil {
			t.Errorf("subscriber: %v", r.problem)
		}
		reconnects += r.conns - 1
	}
	t.Logf("bridge connection reconnects: %d, subscriber reconnects: %d", slow.Stats().Reconnects, reconnects)
	if reconnects == 0 {
		t.Fatal("no subscriber was ended: the test proves nothing")
	}
}

// A Kafka stream under a fast producer: subscribers cut off for falling
// behind resume (inside the window or through a catch-up) and none ever
// skips an event.
func TestOverloadedKafkaNeverSkipsSilently(t *testing.T) {
	e := startKafkaStream(t, "load", 1, func(c *Config) {
		c.MaxPending = 16
		c.WindowEvents = 64
	})
	const subs, total = 24, 3000
	pad := " " + strings.Repeat("x", 2000)
	var batch []string
	readers := overload(t, e.url, subs, total, true, func(i int) {
		batch = append(batch, strconv.Itoa(i)+pad)
		if len(batch) == 100 || i >= total {
			e.produce(t, 1, batch...)
			batch = batch[:0]
		}
	})
	reconnects := 0
	for _, r := range readers {
		if r.problem != nil {
			t.Errorf("subscriber: %v", r.problem)
		}
		reconnects += r.conns - 1
	}
	t.Logf("subscriber reconnects: %d, catch-ups: %d", reconnects, e.backend().catchUps.Load())
	if reconnects == 0 {
		t.Fatal("no subscriber was cut off: the test proves nothing")
	}
}
