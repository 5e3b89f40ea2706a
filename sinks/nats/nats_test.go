package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connect opens a bridge-style connection (natsconn: reconnect forever)
// with a short reconnect wait so restarts are quick in tests.
func connect(t testing.TB, url string) *gonats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(natsconn.Config{URL: url}, "test", nil, gonats.ReconnectWait(25*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// coreReader records everything published under conf.> from the start, so
// Read sees messages published before it is called.
type coreReader struct {
	mu   sync.Mutex
	cond *sync.Cond
	got  map[string][]sinktest.Received
	read map[string]int
}

func newCoreReader(t *testing.T, url string) *coreReader {
	r := &coreReader{got: map[string][]sinktest.Received{}, read: map[string]int{}}
	r.cond = sync.NewCond(&r.mu)
	nc, err := gonats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.Subscribe("conf.>", func(m *gonats.Msg) {
		r.mu.Lock()
		r.got[m.Subject] = append(r.got[m.Subject], received(m))
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func received(m *gonats.Msg) sinktest.Received {
	h := map[string]string{}
	for k := range m.Header {
		h[k] = m.Header.Get(k)
	}
	return sinktest.Received{Dest: m.Subject, Data: m.Data, Headers: h}
}

func (r *coreReader) Read(t *testing.T, dest string, n int) []sinktest.Received {
	t.Helper()
	deadline := time.AfterFunc(sinktest.Timeout, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.got[dest])-r.read[dest] < n {
		if time.Since(start) >= sinktest.Timeout {
			t.Fatalf("read %s: %d of %d messages arrived", dest, len(r.got[dest])-r.read[dest], n)
		}
		r.cond.Wait()
	}
	out := r.got[dest][r.read[dest] : r.read[dest]+n]
	r.read[dest] += n
	return out
}

func TestConformanceCore(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		b := testbroker.StartNATS(t)
		nc := connect(t, b.URL())
		r := newCoreReader(t, b.URL())
		return sinktest.Target{
			Kind: natssink.Kind,
			Open: func(t *testing.T, pipeline, dest, fallback string) sinks.Sink {
				s, err := sinks.Open(context.Background(), sinks.Deps{NATS: nc}, pipeline, natssink.Kind,
					sinktest.Block(t, natssink.Options{Subject: dest, FallbackSubject: fallback}))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Read: r.Read,
			Stop: func(t *testing.T) { b.Shutdown() },
		}
	})
}

// jsReader reads a subject of a stream from the start with an ordered
// consumer per subject.
type jsReader struct {
	js   jetstream.JetStream
	cons map[string]jetstream.Consumer
}

func (r *jsReader) Read(t *testing.T, dest string, n int) []sinktest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	c, ok := r.cons[dest]
	if !ok {
		var err error
		c, err = r.js.OrderedConsumer(ctx, "CONF", jetstream.OrderedConsumerConfig{FilterSubjects: []string{dest}})
		if err != nil {
			t.Fatalf("consumer for %s: %v", dest, err)
		}
		r.cons[dest] = c
	}
	var out []sinktest.Received
	for len(out) < n {
		batch, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch %s: %v", dest, err)
		}
		for m := range batch.Messages() {
			gm := &gonats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}
			out = append(out, received(gm))
		}
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d messages arrived", dest, len(out), n)
		}
	}
	return out
}

func jsSinkOptions(dest, fallback string) natssink.Options {
	return natssink.Options{Subject: dest, FallbackSubject: fallback, JetStream: true,
		Stream: &natssink.StreamOptions{Name: "CONF", Subjects: []string{"conf.>"}}}
}

func TestConformanceJetStream(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		b := testbroker.StartNATS(t)
		nc := connect(t, b.URL())
		js, err := jetstream.New(connect(t, b.URL()))
		if err != nil {
			t.Fatal(err)
		}
		r := &jsReader{js: js, cons: map[string]jetstream.Consumer{}}
		return sinktest.Target{
			Kind: natssink.Kind,
			Open: func(t *testing.T, pipeline, dest, fallback string) sinks.Sink {
				s, err := sinks.Open(context.Background(), sinks.Deps{NATS: nc}, pipeline, natssink.Kind, sinktest.Block(t, jsSinkOptions(dest, fallback)))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Read: r.Read,
			Stop: func(t *testing.T) { b.Shutdown() },
		}
	})
}

// jsEnv is a server, the sink's connection and a JetStream handle for
// checking the stream.
type jsEnv struct {
	b  *testbroker.NATS
	nc *gonats.Conn
	js jetstream.JetStream
}

func newJSEnv(t *testing.T, opts ...testbroker.NATSOption) jsEnv {
	b := testbroker.StartNATS(t, opts...)
	// The reading side is a plain client with nats.go's reconnect buffer,
	// so that reads right after a broker restart wait for the reconnect;
	// the sink's connection (nc) is the bridge's, which has none.
	rc, err := gonats.Connect(b.URL(), gonats.ReconnectWait(25*time.Millisecond), gonats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	js, err := jetstream.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return jsEnv{b: b, nc: connect(t, b.URL()), js: js}
}

func (e jsEnv) open(t *testing.T, pipeline string, cfg natssink.Options) *natssink.Sink {
	t.Helper()
	s, err := natssink.New(context.Background(), e.nc, pipeline, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// streamMsgs returns every message of the stream, in order.
func (e jsEnv) streamMsgs(t *testing.T, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	st, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// msgs are events as the source hands them over: an event whose ID
// repeats the one before it is marked InheritedID (message.InheritsID).
func msgs(pipeline string, ids ...string) []sinks.Message {
	var out []sinks.Message
	prev := ""
	for _, id := range ids {
		m := sinktest.Msg(pipeline, id, "message", []byte("data-"+id))
		m.InheritedID = message.InheritsID(id, prev)
		prev = id
		out = append(out, m)
	}
	return out
}

func mustWrite(t *testing.T, s sinks.Sink, m []sinks.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	if n, err := s.Write(ctx, m); n != len(m) || err != nil {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(m))
	}
}

func TestJetStreamDedupOnReplay(t *testing.T) {
	e := newJSEnv(t)
	cfg := natssink.Options{Subject: "wiki.{event}", JetStream: true, Stream: &natssink.StreamOptions{Name: "WIKI", Subjects: []string{"wiki.>"}}}
	s := e.open(t, "wiki", cfg)
	mustWrite(t, s, msgs("wiki", "1", "2", "3", "4"))
	// A crash before the checkpoint: the source replays 3 and 4 (and a new
	// sink instance starts without any memory of them).
	s2 := e.open(t, "wiki", cfg)
	mustWrite(t, s2, msgs("wiki", "3", "4", "5"))
	got := e.streamMsgs(t, "WIKI")
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Header.Get(sinks.HeaderID))
		sm := sinktest.Msg("wiki", m.Header.Get(sinks.HeaderID), m.Header.Get(sinks.HeaderEvent), m.Data)
		if want := natssink.MsgID(&sm); m.Header.Get(jetstream.MsgIDHeader) != want {
			t.Errorf("Nats-Msg-Id = %q, want %q", m.Header.Get(jetstream.MsgIDHeader), want)
		}
	}
	if strings.Join(ids, ",") != "1,2,3,4,5" {
		t.Fatalf("stream holds ids %v, want 1..5 once each", ids)
	}
}

// TestInheritedIDsNotDeduplicated: events without an id field inherit the
// previous ID (WHATWG); they are distinct events and must all be stored.
func TestInheritedIDsNotDeduplicated(t *testing.T) {
	e := newJSEnv(t)
	s := e.open(t, "p", natssink.Options{Subject: "s", JetStream: true, Stream: &natssink.StreamOptions{Name: "S"}})
	mustWrite(t, s, msgs("p", "a", "a", "a", "b"))
	second := msgs("p", "b", "c")
	second[0].InheritedID = true // the inherited b spans two writes: the source knows
	mustWrite(t, s, second)
	got := e.streamMsgs(t, "S")
	if len(got) != 6 {
		t.Fatalf("stream holds %d messages, want 6", len(got))
	}
	for i, wantHdr := range []bool{true, false, false, true, false, true} {
		if has := got[i].Header.Get(jetstream.MsgIDHeader) != ""; has != wantHdr {
			t.Errorf("message %d (id %s): has Nats-Msg-Id = %v, want %v", i, got[i].Header.Get(sinks.HeaderID), has, wantHdr)
		}
	}
}

// TestAckedPrefix: a publish the server refuses (no stream for the
// subject) ends the batch; n is exactly the acknowledged prefix.
func TestAckedPrefix(t *testing.T) {
	for _, inFlight := range []int{1, 256} {
		t.Run(fmt.Sprint("max_in_flight=", inFlight), func(t *testing.T) {
			e := newJSEnv(t)
			s := e.open(t, "p", natssink.Options{Subject: "{data.s}", JetStream: true, MaxInFlight: inFlight,
				Stream: &natssink.StreamOptions{Name: "OK", Subjects: []string{"ok.>"}}})
			batch := []sinks.Message{
				sinktest.Msg("p", "1", "message", []byte(`{"s":"ok.1"}`)),
				sinktest.Msg("p", "2", "message", []byte(`{"s":"ok.2"}`)),
				sinktest.Msg("p", "3", "message", []byte(`{"s":"nostream.3"}`)),
				sinktest.Msg("p", "4", "message", []byte(`{"s":"ok.4"}`)),
			}
			ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
			defer cancel()
			n, err := s.Write(ctx, batch)
			if n != 2 || err == nil {
				t.Fatalf("Write = %d, %v; want 2 and an error", n, err)
			}
			if !strings.Contains(err.Error(), "nostream.3") {
				t.Errorf("error %q does not name the failing subject", err)
			}
			if got := len(e.streamMsgs(t, "OK")); got < 2 || (inFlight == 1 && got != 2) {
				t.Errorf("stream holds %d messages", got)
			}
		})
	}
}

func TestOversizedEventSkipped(t *testing.T) {
	e := newJSEnv(t, func(o *server.Options) { o.MaxPayload = 4096 })
	s := e.open(t, "big", natssink.Options{Subject: "s", JetStream: true, Stream: &natssink.StreamOptions{Name: "S"}})
	before := sinktest.CounterValue(metricsFailed("big"))
	batch := []sinks.Message{
		sinktest.Msg("big", "1", "message", []byte("small")),
		sinktest.Msg("big", "2", "message", make([]byte, 8192)),
		sinktest.Msg("big", "3", "message", []byte("small again")),
	}
	mustWrite(t, s, batch)
	got := e.streamMsgs(t, "S")
	if len(got) != 2 || string(got[1].Data) != "small again" {
		t.Fatalf("stream: %d messages", len(got))
	}
	if d := sinktest.CounterValue(metricsFailed("big")) - before; d != 1 {
		t.Errorf("oversized event counted %v times, want 1", d)
	}
}

func TestStreamCreation(t *testing.T) {
	e := newJSEnv(t)
	ctx := context.Background()
	// An existing stream is used as is, never reconfigured.
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}, MaxMsgs: 7}); err != nil {
		t.Fatal(err)
	}
	e.open(t, "p", natssink.Options{Subject: "mine.x", JetStream: true, Stream: &natssink.StreamOptions{Name: "MINE", Subjects: []string{"other"}}})
	st, _ := e.js.Stream(ctx, "MINE")
	if info, _ := st.Info(ctx); info.Config.MaxMsgs != 7 || info.Config.Subjects[0] != "mine.>" {
		t.Fatalf("existing stream was changed: %+v", info.Config)
	}
	// A static subject doubles as the stream's subject.
	e.open(t, "p", natssink.Options{Subject: "solo", JetStream: true, Stream: &natssink.StreamOptions{Name: "SOLO", MaxAge: time.Hour}})
	st, err := e.js.Stream(ctx, "SOLO")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := st.Info(ctx); info.Config.Subjects[0] != "solo" || info.Config.MaxAge != time.Hour {
		t.Fatalf("created stream: %+v", info.Config)
	}
	// A template subject needs explicit stream subjects.
	if _, err := natssink.New(ctx, e.nc, "p", natssink.Options{Subject: "t.{event}", JetStream: true, Stream: &natssink.StreamOptions{Name: "T"}}, nil); err == nil {
		t.Fatal("stream without subjects for a template subject accepted")
	}
	if _, err := natssink.New(ctx, nil, "p", natssink.Options{Subject: "x"}, nil); !errors.Is(err, natssink.ErrNoConnection) {
		t.Fatalf("nil connection: %v", err)
	}
	if _, err := natssink.New(ctx, e.nc, "p", natssink.Options{Subject: "bad subject"}, nil); err == nil {
		t.Fatal("invalid static subject accepted")
	}
}
