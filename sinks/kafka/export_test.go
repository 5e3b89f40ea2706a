package kafka

import (
	"testing"

	"github.com/ssebridge/ssebridge/bridge/config"
)

// TestWriterDefaults pins the settings a live feed depends on: kafka-go's
// own defaults (one-second batches, leader-only acks) are wrong for it,
// and since Write waits for each chunk, a batch must never linger (see
// flushNow).
func TestWriterDefaults(t *testing.T) {
	s, err := New(t.Context(), config.Kafka{Brokers: []string{"127.0.0.1:1"}}, "p", config.KafkaSink{Topic: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.w.BatchTimeout != flushNow || s.w.RequiredAcks != -1 || s.w.BatchSize != config.DefaultKafkaBatchSize {
		t.Fatalf("BatchTimeout %v, RequiredAcks %v, BatchSize %d", s.w.BatchTimeout, s.w.RequiredAcks, s.w.BatchSize)
	}
	if s.w.AllowAutoTopicCreation {
		t.Fatal("topics auto-created without create_topic")
	}
}
