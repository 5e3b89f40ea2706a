package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestCloseContextBounded: a broker that stops answering produce requests
// leaves the batch of a timed-out Write retrying inside kafka-go (three
// attempts of a ten-second write timeout: ~30 s). CloseContext must give
// it up when its context ends instead, and leave no goroutine behind
// (goleak in TestMain, and kafka-go's before the cluster closes). The bound asserted is generous: the context allows
// 1 s, the unbounded close would take ~30 s.
func TestCloseContextBounded(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"stuck": 1})
	s, err := kafkasink.New(context.Background(), kafkaconn.Config{Brokers: []string{k.Addr()}}, "stuck", kafkasink.Options{Topic: "stuck"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, s, []sinks.Message{sinktest.Msg("stuck", "1", "message", []byte("before"))})

	// From now on the broker holds every produce request until the test
	// ends (cleanups run last-in first-out: before the cluster closes).
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	c := k.Cluster()
	held := make(chan struct{}, 16)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, errors.New("test: produce dropped"), true
	})

	wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	n, err := s.Write(wctx, []sinks.Message{sinktest.Msg("stuck", "2", "message", []byte("held"))})
	cancel()
	if n != 0 || err == nil {
		t.Fatalf("Write to a silent broker = %d, %v; want 0 and an error", n, err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker never saw the produce request")
	}

	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = s.CloseContext(cctx)
	took := time.Since(start)
	if took > 10*time.Second {
		t.Fatalf("CloseContext took %v with a 1 s context; want it bounded", took)
	}
	if !errors.Is(err, kafkasink.ErrCloseAborted) {
		t.Fatalf("CloseContext = %v; want ErrCloseAborted (the held batch was abandoned)", err)
	}
	t.Logf("CloseContext returned after %v: %v", took, err)
	// The broker still holds the request: no kafka-go goroutine may be
	// left reading its answer (goleak in TestMain runs only after the
	// cluster closed, which would free it anyway). Polled briefly, since
	// a goroutine may be returning as CloseContext does.
	testbroker.WaitGoroutinesGone(t, "github.com/segmentio/kafka-go.")
}
