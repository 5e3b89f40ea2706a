package kafka_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestBatchFitsBrokerLimit: events that are each well under the message
// limit but together fill one kafka-go batch right up to its byte bound
// must still be accepted by a broker with the default max.message.bytes
// (1048588, checked against the whole record batch). The writer's batch
// bound used to be 4 KiB above that, so such a batch was rejected as
// MESSAGE_TOO_LARGE on every retry: the pipeline paused forever.
func TestBatchFitsBrokerLimit(t *testing.T) {
	const n = kafkasink.DefaultBatchSize // one kafka-go batch
	sizes := []int{10330, 10350, 10370, 10390, 10410, 10430}
	topics := map[string]int32{}
	for i := range sizes {
		topics["fill"+strconv.Itoa(i)] = 1
	}
	k := testbroker.StartKafka(t, topics)
	for i, size := range sizes {
		topic := "fill" + strconv.Itoa(i)
		s := open(t, k.Addr(), topic, kafkasink.Options{Topic: topic})
		msgs := make([]sinks.Message, n)
		for j := range msgs {
			msgs[j] = sinktest.Msg(topic, strconv.Itoa(j+1), "message", make([]byte, size))
		}
		ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
		got, err := s.Write(ctx, msgs)
		cancel()
		if err != nil || got != n {
			t.Errorf("%d events of %d bytes: Write = %d, %v; want %d, nil", n, size, got, err, n)
		}
	}
}
