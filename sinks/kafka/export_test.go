package kafka

import (
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/retry"
)

// TestWriterDefaults pins the settings a live feed depends on: kafka-go's
// own defaults (one-second batches, leader-only acks) are wrong for it,
// and since Write waits for each chunk, a batch must never linger (see
// flushNow).
func TestWriterDefaults(t *testing.T) {
	s, err := New(t.Context(), kafkaconn.Config{Brokers: []string{"127.0.0.1:1"}}, "p", Options{Topic: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.w.BatchTimeout != flushNow || s.w.RequiredAcks != -1 || s.w.BatchSize != DefaultBatchSize || s.w.Compression != 0 {
		t.Fatalf("BatchTimeout %v, RequiredAcks %v, BatchSize %d, Compression %v", s.w.BatchTimeout, s.w.RequiredAcks, s.w.BatchSize, s.w.Compression)
	}
	if s.w.AllowAutoTopicCreation {
		t.Fatal("topics auto-created without create_topic")
	}
}

// TestStartingBrokerIsNotConnected: a broker still starting answers
// BrokerNotAvailable, which kafka-go does not call temporary; the pipeline
// must treat it as "not connected" (retried at once when the broker is
// up), not as a failure that backs off to 30 s.
func TestStartingBrokerIsNotConnected(t *testing.T) {
	s := &Sink{pipeline: "p"}
	for _, err := range []error{kafka.BrokerNotAvailable, fmt.Errorf("create topic: %w", kafka.LeaderNotAvailable)} {
		if got := s.classify("create topic", err); retry.Classify(got) != retry.NotConnected {
			t.Errorf("classify(%v) = %v, want not connected", err, got)
		}
	}
	if got := s.classify("write", kafka.TopicAuthorizationFailed); retry.Classify(got) == retry.NotConnected {
		t.Errorf("classify(TopicAuthorizationFailed) = %v, want not \"not connected\"", got)
	}
}
