package bridge_test

import (
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

// TestPipelineWaitsForNATSAtStart: with NATS down when the bridge starts,
// a JetStream pipeline failed with "nats: outbound buffer limit exceeded"
// and retried on a backoff that grew to 30 s, so it started long after
// NATS was back. The error must say NATS is not connected, and the
// pipeline must start once NATS is reachable without a backoff step.
func TestPipelineWaitsForNATSAtStart(t *testing.T) {
	ns := testbroker.StartNATS(t)
	ns.Shutdown()
	f := newFeed(t)
	pc := pipelineCfg("p", f.url("/p"))
	pc.Sink = config.NewSink(natssink.Kind, natssink.Options{Subject: "t.p", JetStream: true, Stream: &natssink.StreamOptions{Name: "T"}})
	cfg := &config.Config{DataDir: t.TempDir(), NATS: config.NATS{URL: ns.URL()}, Pipelines: []config.Pipeline{pc}}
	r := start(t, cfg)

	eventually(t, "the pipeline reporting NATS down", func() bool {
		st, _ := pipelineStatus(t, r.base, "p")
		return strings.Contains(st.LastError, "NATS is not connected")
	})
	st, _ := pipelineStatus(t, r.base, "p")
	if strings.Contains(st.LastError, "outbound buffer") || st.Ready {
		t.Fatalf("status while NATS is down: %+v", st)
	}
	ns.Restart(t)
	eventually(t, "connected once NATS is back", func() bool {
		st, _ := pipelineStatus(t, r.base, "p")
		return st.State == "connected" && st.Forwarded > 0
	})
}
