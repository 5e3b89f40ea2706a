// Package sinktest is the conformance suite every sink driver passes
// against a real broker: order kept, payload bytes exact, headers present
// and right, unroutable events counted instead of stalling the feed, and a
// Write that returns promptly, counting nothing, when the broker is gone or
// the context ends.
//
// A driver's test supplies a Target factory that starts a fresh broker for
// each subtest:
//
//	func TestConformance(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) sinktest.Target { ... })
//	}
package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

// Received is a message read back from the broker.
type Received struct {
	// Dest is the subject or topic the message was published to.
	Dest    string
	Data    []byte
	Headers map[string]string
}

// Target is one broker and the sink driver under test.
//
// Every destination the suite uses starts with "conf." and is valid both as
// a NATS subject and as a Kafka topic; a JetStream target binds a stream to
// "conf.>".
type Target struct {
	// Kind is the driver name, the sink label of the sink metrics.
	Kind string
	// Open opens the sink for pipeline with the destination template dest
	// and fallback ("" for none). The suite closes it.
	Open func(t *testing.T, pipeline, dest, fallback string) sinks.Sink
	// Read returns the next n messages published to dest, in order,
	// failing the test if they do not arrive within a generous timeout.
	// Calls for the same dest continue where the previous one stopped.
	Read func(t *testing.T, dest string, n int) []Received
	// Stop stops the broker for good.
	Stop func(t *testing.T)
}

// Timeout bounds every wait of the suite; generous so a loaded CI machine
// under -race does not flake, since a correct sink finishes far earlier.
const Timeout = 20 * time.Second

var seq atomic.Int64

// pipelineName gives each subtest its own pipeline so metric counters and
// headers cannot leak between subtests.
func pipelineName() string { return fmt.Sprintf("conf-%d", seq.Add(1)) }

// Run runs the suite. open is called once per subtest.
func Run(t *testing.T, open func(t *testing.T) Target) {
	t.Run("OrderAndPayload", func(t *testing.T) { testOrderAndPayload(t, open(t)) })
	t.Run("Headers", func(t *testing.T) { testHeaders(t, open(t)) })
	t.Run("Routing", func(t *testing.T) { testRouting(t, open(t)) })
	t.Run("UnroutableCounted", func(t *testing.T) { testUnroutable(t, open(t)) })
	t.Run("Fallback", func(t *testing.T) { testFallback(t, open(t)) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceled(t, open(t)) })
	t.Run("BrokerGone", func(t *testing.T) { testBrokerGone(t, open(t)) })
}

func openSink(t *testing.T, tg Target, pipeline, dest, fallback string) sinks.Sink {
	t.Helper()
	s := tg.Open(t, pipeline, dest, fallback)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// Msg builds a message; exported for drivers' own tests.
func Msg(pipeline, id, typ string, data []byte) sinks.Message {
	return sinks.Message{Pipeline: pipeline, Event: sse.Event{ID: id, Type: typ, Data: data}, ReceivedAt: time.Now()}
}

func write(t *testing.T, s sinks.Sink, msgs []sinks.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	n, err := s.Write(ctx, msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("Write(%d messages) = %d, %v", len(msgs), n, err)
	}
}

// payloads are the bytes a faithful bridge must not touch: binary, CR/LF
// mixes, empty, large, UTF-8 and JSON.
func payloads() [][]byte {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	return [][]byte{
		[]byte(`{"n":1}`),
		all,
		[]byte("line one\nline two\r\nline three\r"),
		{},
		[]byte("  leading and trailing spaces  "),
		big,
		[]byte("h\u00e9llo \u4e16\u754c \U0001F600"),
		[]byte("data: looks like SSE\n\n"),
	}
}

func testOrderAndPayload(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.order", "")
	var want [][]byte
	var batch []sinks.Message
	for i, pl := range payloads() {
		want = append(want, pl)
		batch = append(batch, Msg(p, fmt.Sprint(i+1), "message", pl))
	}
	write(t, s, batch)
	// Many small writes interleaved with one large batch: order must hold
	// across Write calls too.
	for i := 0; i < 50; i++ {
		pl := []byte(fmt.Sprintf("small-%03d", i))
		want = append(want, pl)
		write(t, s, []sinks.Message{Msg(p, fmt.Sprint(100+i), "message", pl)})
	}
	batch = batch[:0]
	for i := 0; i < 500; i++ {
		pl := []byte(fmt.Sprintf("batch-%03d", i))
		want = append(want, pl)
		batch = append(batch, Msg(p, fmt.Sprint(1000+i), "message", pl))
	}
	write(t, s, batch)

	got := tg.Read(t, "conf.order", len(want))
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i]) {
			t.Fatalf("message %d: payload %q (%d bytes), want %q (%d bytes)", i, clip(got[i].Data), len(got[i].Data), clip(want[i]), len(want[i]))
		}
	}
	if v := CounterValue(metrics.SinkPublished.WithLabelValues(p, tg.Kind)); v != float64(len(want)) {
		t.Errorf("sink_published_total = %v, want %d", v, len(want))
	}
}

// CounterValue reads a counter, for assertions on metrics.
func CounterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "..."...)
	}
	return b
}

func testHeaders(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.headers", "")
	at := time.Date(2026, 11, 26, 21, 4, 5, 123456789, time.FixedZone("X", 3600))
	with := sinks.Message{Pipeline: p, Event: sse.Event{ID: "evt-42", Type: "edit", Data: []byte("a")}, ReceivedAt: at}
	without := sinks.Message{Pipeline: p, Event: sse.Event{ID: "", Type: "message", Data: []byte("b")}, ReceivedAt: at}
	write(t, s, []sinks.Message{with, without})
	got := tg.Read(t, "conf.headers", 2)

	h := got[0].Headers
	for k, want := range map[string]string{sinks.HeaderID: "evt-42", sinks.HeaderEvent: "edit", sinks.HeaderSource: p} {
		if h[k] != want {
			t.Errorf("header %s = %q, want %q (all: %v)", k, h[k], want, h)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, h[sinks.HeaderReceivedAt])
	if err != nil || !ts.Equal(at) {
		t.Errorf("header %s = %q (%v), want %s to the nanosecond", sinks.HeaderReceivedAt, h[sinks.HeaderReceivedAt], err, at.Format(time.RFC3339Nano))
	}
	h = got[1].Headers
	if v, ok := h[sinks.HeaderID]; ok {
		t.Errorf("event without ID carries %s = %q", sinks.HeaderID, v)
	}
	if h[sinks.HeaderEvent] != "message" || h[sinks.HeaderSource] != p || h[sinks.HeaderReceivedAt] == "" {
		t.Errorf("headers of event without ID: %v", h)
	}
}

func testRouting(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.{event}.{data.meta.lang}", "")
	write(t, s, []sinks.Message{
		Msg(p, "1", "edit", []byte(`{"meta":{"lang":"en"},"n":1}`)),
		Msg(p, "2", "create", []byte(`{"meta":{"lang":"fr"},"n":2}`)),
		Msg(p, "3", "edit", []byte(`{"meta":{"lang":"en"},"n":3}`)),
	})
	en := tg.Read(t, "conf.edit.en", 2)
	fr := tg.Read(t, "conf.create.fr", 1)
	if string(en[0].Data) != `{"meta":{"lang":"en"},"n":1}` || string(en[1].Data) != `{"meta":{"lang":"en"},"n":3}` {
		t.Errorf("conf.edit.en got %q, %q", en[0].Data, en[1].Data)
	}
	if !strings.Contains(string(fr[0].Data), `"n":2`) {
		t.Errorf("conf.create.fr got %q", fr[0].Data)
	}
}

func unroutable(p string) float64 {
	return CounterValue(metrics.EventsFailed.WithLabelValues(p, "unroutable"))
}

func testUnroutable(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.u.{data.kind}", "")
	before := unroutable(p)
	// The bad events sit between good ones: they must neither stall the
	// batch nor reorder it, and Write reports them as written.
	write(t, s, []sinks.Message{
		Msg(p, "1", "message", []byte(`{"kind":"a","n":1}`)),
		Msg(p, "2", "message", []byte(`not json`)),
		Msg(p, "3", "message", []byte(`{"other":"x"}`)),
		Msg(p, "4", "message", []byte(`{"kind":"bad topic/subject"}`)),
		Msg(p, "5", "message", []byte(`{"kind":"a","n":5}`)),
	})
	if got := unroutable(p) - before; got != 3 {
		t.Errorf("pipeline_events_failed_total{reason=unroutable} grew by %v, want 3", got)
	}
	got := tg.Read(t, "conf.u.a", 2)
	if !strings.Contains(string(got[0].Data), `"n":1`) || !strings.Contains(string(got[1].Data), `"n":5`) {
		t.Errorf("conf.u.a got %q, %q; want n=1 then n=5", got[0].Data, got[1].Data)
	}
	// A batch of only unroutable events is also "written".
	write(t, s, []sinks.Message{Msg(p, "6", "message", []byte(`[]`))})
	if got := unroutable(p) - before; got != 4 {
		t.Errorf("after a batch of one unroutable event the counter grew by %v, want 4", got)
	}
}

func testFallback(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.f.{data.kind}", "conf.fallback")
	before := unroutable(p)
	write(t, s, []sinks.Message{
		Msg(p, "1", "message", []byte(`{"kind":"a"}`)),
		Msg(p, "2", "message", []byte(`no json here`)),
		Msg(p, "3", "message", []byte(`{"kind":"a","n":3}`)),
	})
	fb := tg.Read(t, "conf.fallback", 1)
	if string(fb[0].Data) != "no json here" || fb[0].Headers[sinks.HeaderID] != "2" {
		t.Errorf("fallback got %q with headers %v", fb[0].Data, fb[0].Headers)
	}
	if n := len(tg.Read(t, "conf.f.a", 2)); n != 2 {
		t.Errorf("routed %d, want 2", n)
	}
	if got := unroutable(p) - before; got != 0 {
		t.Errorf("an event delivered to the fallback was counted unroutable (%v)", got)
	}
}

func testCanceled(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.cancel", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.Write(ctx, []sinks.Message{Msg(p, "1", "message", []byte("x"))})
	if err == nil || n != 0 {
		t.Fatalf("Write with a canceled context = %d, %v; want 0 and an error", n, err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	// The sink stays usable.
	write(t, s, []sinks.Message{Msg(p, "2", "message", []byte("after"))})
	if got := tg.Read(t, "conf.cancel", 1); string(got[0].Data) != "after" {
		t.Errorf("after cancel got %q", got[0].Data)
	}
}

func testBrokerGone(t *testing.T, tg Target) {
	p := pipelineName()
	s := openSink(t, tg, p, "conf.gone", "")
	write(t, s, []sinks.Message{Msg(p, "1", "message", []byte("before"))})
	tg.Read(t, "conf.gone", 1)
	tg.Stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	n, err := s.Write(ctx, []sinks.Message{Msg(p, "2", "message", []byte("lost")), Msg(p, "3", "message", []byte("lost"))})
	took := time.Since(start)
	if err == nil || n != 0 {
		t.Fatalf("Write with the broker gone = %d, %v; want 0 and an error (nothing was acknowledged)", n, err)
	}
	if !errors.Is(err, sinks.ErrNotConnected) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v wraps neither sinks.ErrNotConnected nor the context's deadline", err)
	}
	// The context allowed 2 s; a sink that ignores it would block for its
	// own retry schedule. The bound is loose on purpose.
	if took > Timeout/2 {
		t.Errorf("Write took %s with a 2s context", took)
	}
}
