package nats_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/route"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestLongSubjectKeepsConnection: a subject template rendering a very long
// subject (a long JSON field) used to reach the server, which answered
// "maximum control line exceeded"; nats.go then closed the bridge's shared
// connection for good, stalling every pipeline and stream on it. Such an
// event is unroutable; the longest allowed subject is still published, in
// core and JetStream mode.
func TestLongSubjectKeepsConnection(t *testing.T) {
	for _, js := range []bool{false, true} {
		b := testbroker.StartNATS(t)
		nc := connect(t, b.URL())
		e := jsEnv{nc: nc}
		pipeline := "long-core"
		cfg := natssink.Options{Subject: "conf.{data.k}"}
		if js {
			pipeline = "long-js"
			cfg.JetStream = true
			cfg.Stream = &natssink.StreamOptions{Name: "LONG", Subjects: []string{"conf.>"}}
		}
		r := newCoreReader(t, b.URL())
		s := e.open(t, pipeline, cfg)
		unroutable := metrics.EventsFailed.WithLabelValues(pipeline, "unroutable")
		before := sinktest.CounterValue(unroutable)
		longest := strings.Repeat("y", route.MaxSubjectLen-len("conf."))
		msgs := []sinks.Message{
			sinktest.Msg(pipeline, "1", "message", []byte(`{"k":"`+strings.Repeat("x", 5000)+`"}`)),
			sinktest.Msg(pipeline, "2", "message", []byte(`{"k":"`+longest+`"}`)),
			sinktest.Msg(pipeline, "3", "message", []byte(`{"k":"short"}`)),
		}
		ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
		n, err := s.Write(ctx, msgs)
		cancel()
		if err != nil || n != len(msgs) {
			t.Fatalf("jetstream %v: Write = %d, %v (connection %v, %v)", js, n, err, nc.Status(), nc.LastError())
		}
		if !nc.IsConnected() {
			t.Fatalf("jetstream %v: connection %v after the batch: %v", js, nc.Status(), nc.LastError())
		}
		r.Read(t, "conf."+longest, 1)
		r.Read(t, "conf.short", 1)
		if d := sinktest.CounterValue(unroutable) - before; d != 1 {
			t.Fatalf("jetstream %v: unroutable grew by %v, want 1", js, d)
		}
	}
}
