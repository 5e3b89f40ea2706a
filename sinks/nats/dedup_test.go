package nats_test

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestReusedIDsAllStored: feeds reuse IDs (one per ticker symbol, a counter
// restarted upstream, a correction under the ID of the update). JetStream
// acknowledges a message whose Nats-Msg-Id it already holds without storing
// it, so a Msg-Id made of the ID alone stored 2 of BTC, ETH, BTC while the
// worker checkpointed all three. A replay of the very same events must
// still be deduplicated, and counted.
func TestReusedIDsAllStored(t *testing.T) {
	e := newJSEnv(t)
	cfg := natssink.Options{Subject: "tick", JetStream: true, Stream: &natssink.StreamOptions{Name: "TICK", Subjects: []string{"tick"}}}
	const pipeline = "ticker-reused-ids"
	batch := []sinks.Message{
		sinktest.Msg(pipeline, "BTC", "price", []byte(`{"p":97000}`)),
		sinktest.Msg(pipeline, "ETH", "price", []byte(`{"p":3600}`)),
		sinktest.Msg(pipeline, "BTC", "price", []byte(`{"p":97010}`)),
		sinktest.Msg(pipeline, "ETH", "price", []byte(`{"p":3601}`)),
		sinktest.Msg(pipeline, "BTC", "correction", []byte(`{"p":97010}`)), // same data, other type
	}
	before := duplicates(t, pipeline) // the counter is process-wide: -count=N
	mustWrite(t, e.open(t, pipeline, cfg), batch)
	if got := len(e.streamMsgs(t, "TICK")); got != len(batch) {
		t.Fatalf("stream holds %d messages, want %d: distinct events sharing an id were deduplicated", got, len(batch))
	}
	if d := duplicates(t, pipeline) - before; d != 0 {
		t.Fatalf("ssebridge_sink_duplicates_total = %v before any replay, want 0", d)
	}

	// A crash replays the batch into a new sink: nothing new is stored,
	// and every replayed copy is counted.
	mustWrite(t, e.open(t, pipeline, cfg), batch)
	got := e.streamMsgs(t, "TICK")
	if len(got) != len(batch) {
		t.Fatalf("stream holds %d messages after the replay, want %d", len(got), len(batch))
	}
	for i, m := range got {
		if string(m.Data) != string(batch[i].Event.Data) || m.Header.Get(sinks.HeaderEvent) != batch[i].Event.Type {
			t.Errorf("message %d = %s %q, want %s %q", i, m.Header.Get(sinks.HeaderEvent), m.Data, batch[i].Event.Type, batch[i].Event.Data)
		}
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			t.Errorf("message %d has no Nats-Msg-Id", i)
		}
	}
	if d := duplicates(t, pipeline) - before; d != float64(len(batch)) {
		t.Fatalf("ssebridge_sink_duplicates_total = %v after replaying %d events, want %d", d, len(batch), len(batch))
	}
}

func duplicates(t *testing.T, pipeline string) float64 {
	t.Helper()
	var d dto.Metric
	if err := metrics.SinkDuplicates.WithLabelValues(pipeline).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// TestMsgIDIsStable: the Nats-Msg-Id of an event must not change between
// releases (a replay after an upgrade is deduplicated only if it maps to
// the same id): pipeline:id:FNV-1a 64 of type, 0, data, in hex.
func TestMsgIDIsStable(t *testing.T) {
	m := sinktest.Msg("wiki", "42", "edit", []byte(`{"n":42}`))
	h := fnv.New64a()
	h.Write([]byte("edit"))
	h.Write([]byte{0})
	h.Write([]byte(`{"n":42}`))
	want := fmt.Sprintf("wiki:42:%016x", h.Sum64())
	if got := natssink.MsgID(&m); got != want {
		t.Fatalf("MsgID = %q, want %q", got, want)
	}
}
