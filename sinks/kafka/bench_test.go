package kafka_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// BenchmarkLiveEvent writes one event at a time, as a quiet live feed
// does: the latency of each acknowledged write through the sink against
// a kafka-go Writer with its defaults (the baseline), which lingers a
// second for every batch that is not full. Run with -benchtime=5x: the
// baseline costs a second per event.
func BenchmarkLiveEvent(b *testing.B) {
	b.Run("kafka-go-defaults", func(b *testing.B) {
		k := testbroker.StartKafka(b, map[string]int32{"live": 1})
		w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Topic: "live", RequiredAcks: kafka.RequireAll}
		defer w.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := w.WriteMessages(context.Background(), kafka.Message{Value: []byte(`{"n":1}`)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sink", func(b *testing.B) {
		k := testbroker.StartKafka(b, map[string]int32{"live": 1})
		s := open(b, k.Addr(), "bench", kafkasink.Options{Topic: "live"})
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m := []sinks.Message{sinktest.Msg("bench", strconv.Itoa(i), "edit", []byte(`{"n":1}`))}
			if n, err := s.Write(context.Background(), m); n != 1 || err != nil {
				b.Fatalf("Write = %d, %v", n, err)
			}
		}
	})
}

// BenchmarkBatch measures acknowledged throughput of 256-event batches.
func BenchmarkBatch(b *testing.B) {
	k := testbroker.StartKafka(b, map[string]int32{"batch": 1})
	s := open(b, k.Addr(), "bench", kafkasink.Options{Topic: "batch"})
	payload := make([]byte, 1024)
	batch := make([]sinks.Message, 256)
	b.SetBytes(int64(len(payload) * len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = sinktest.Msg("bench", strconv.Itoa(i*256+j), "edit", payload)
		}
		if n, err := s.Write(context.Background(), batch); n != len(batch) || err != nil {
			b.Fatalf("Write = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}
