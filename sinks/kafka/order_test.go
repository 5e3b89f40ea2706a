package kafka_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestFailedBatchStopsTheWrite: one Write larger than the writer's batch
// size becomes several kafka-go batches for the partition, written one
// after the other. When the first fails (a retriable error outlasting
// kafka-go's attempts) the later ones must not be produced: kafka-go used
// to write them anyway, so after the caller's retry of the whole rest the
// partition held events 101..250 before 1..100, breaking upstream order.
func TestFailedBatchStopsTheWrite(t *testing.T) {
	const total = 250 // three kafka-go batches of at most 100
	k := testbroker.StartKafka(t, map[string]int32{"ord": 1})
	var refused atomic.Int32
	k.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if refused.Add(1) > 3 { // kafka-go's MaxAttempts for the first batch
			return nil, nil, false
		}
		k.Cluster().KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = 19 // NOT_ENOUGH_REPLICAS: retriable
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	s := open(t, k.Addr(), "ord", kafkasink.Options{Topic: "ord"})
	msgs := make([]sinks.Message, total)
	for i := range msgs {
		msgs[i] = sinktest.Msg("ord", strconv.Itoa(i+1), "message", []byte("e"+strconv.Itoa(i+1)))
	}
	// As a source worker does: retry the unacknowledged rest until done.
	for off, tries := 0, 0; off < total; tries++ {
		if tries > 5 {
			t.Fatalf("still %d events unacknowledged", total-off)
		}
		ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
		n, _ := s.Write(ctx, msgs[off:])
		cancel()
		off += n
	}
	got := newReader(t, k.Addr()).partition(t, "ord", 0, total)
	next := 1
	for _, m := range got {
		id, _ := strconv.Atoi(header(m)["SSE-Id"])
		switch {
		case id == next:
			next++
		case id < next: // a repeat from the retry: at-least-once
		default:
			t.Fatalf("event %d stored before event %d: order broken", id, next)
		}
	}
}
