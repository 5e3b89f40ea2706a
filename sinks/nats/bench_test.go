package nats_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// BenchmarkWrite measures acknowledged throughput of 256-event batches of
// ~1 KiB: core (one flush per batch) and JetStream with one publish in
// flight (a synchronous publish per event, the baseline) against the
// default window. Compare ns/event within one run.
func BenchmarkWrite(b *testing.B) {
	payload := []byte(fmt.Sprintf(`{"meta":{"domain":"en.wikipedia.org"},"text":%q}`, make([]byte, 900)))
	for _, bc := range []struct {
		name string
		cfg  natssink.Options
	}{
		{"core", natssink.Options{Subject: "b.{event}"}},
		{"jetstream/inflight=1", natssink.Options{Subject: "b.{event}", JetStream: true, MaxInFlight: 1, Stream: &natssink.StreamOptions{Name: "B", Subjects: []string{"b.>"}}}},
		{"jetstream/inflight=256", natssink.Options{Subject: "b.{event}", JetStream: true, MaxInFlight: 256, Stream: &natssink.StreamOptions{Name: "B", Subjects: []string{"b.>"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := testbroker.StartNATS(b)
			nc := connect(b, srv.URL())
			s, err := natssink.New(context.Background(), nc, "bench", bc.cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]sinks.Message, 256)
			id := 0
			b.SetBytes(int64(len(payload) * len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range batch {
					id++
					batch[j] = sinktest.Msg("bench", strconv.Itoa(id), "edit", payload)
				}
				if n, err := s.Write(context.Background(), batch); n != len(batch) || err != nil {
					b.Fatalf("Write = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
		})
	}
}
