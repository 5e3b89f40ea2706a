package bridge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
)

// TestShutdownBoundedBySilentKafka: when the Kafka broker stops answering
// produce requests mid-feed, the sink's writer holds a batch kafka-go
// would retry for ~30 s (three ten-second write timeouts). Run must still
// return within shutdown_timeout (1 s here; asserted < 10 s) and take the
// pipeline goroutine and the sink's kafka-go goroutines with it, instead
// of leaving them behind for the rest of the ~30 s.
func TestShutdownBoundedBySilentKafka(t *testing.T) {
	_, cancel, errc := startSilentKafkaPipeline(t)
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		t.Logf("Run returned after %v: %v", time.Since(start), err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of a 1 s shutdown_timeout")
	}
	noPipelineGoroutines(t)
}

// TestReloadBoundedBySilentKafka: a reload that removes a pipeline whose
// Kafka broker went silent returns within shutdown_timeout, and the old
// pipeline does not outlive it.
func TestReloadBoundedBySilentKafka(t *testing.T) {
	b, cancel, errc := startSilentKafkaPipeline(t)
	defer func() {
		cancel()
		<-errc
	}()
	cfg := &config.Config{DataDir: t.TempDir(), ShutdownTimeout: config.Duration(time.Second)}
	cfg.SetDefaults()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- b.Reload(cfg) }()
	select {
	case err := <-done:
		t.Logf("Reload returned after %v: %v", time.Since(start), err)
	case <-time.After(10 * time.Second):
		t.Fatal("Reload did not return within 10 s of a 1 s shutdown_timeout")
	}
	noPipelineGoroutines(t)
}

// startSilentKafkaPipeline runs a bridge with shutdown_timeout 1 s and one
// pipeline into kfake, and returns once the broker holds (never answers)
// a produce request of it. cancel stops Run, whose result errc receives.
func startSilentKafkaPipeline(t *testing.T) (*bridge.Bridge, context.CancelFunc, chan error) {
	t.Helper()
	k := testbroker.StartKafka(t, map[string]int32{"ticks": 1})
	f := newFeed(t)
	cfg := &config.Config{
		DataDir:         t.TempDir(),
		ShutdownTimeout: config.Duration(time.Second),
		Kafka:           config.Kafka{Brokers: []string{k.Addr()}},
		Pipelines: []config.Pipeline{{
			Name:   "k",
			Source: config.Source{URL: f.url("/k")},
			Sink:   config.NewSink(kafkasink.Kind, kafkasink.Options{Topic: "ticks"}),
		}},
	}
	b, ln := newBridge(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	<-b.Started()
	eventually(t, "kafka pipeline forwarding", func() bool {
		p, _ := pipelineStatus(t, "http://"+ln.Addr().String(), "k")
		return p.Forwarded >= 1
	})

	// The broker now holds every produce request until the test ends
	// (cleanups run last-in first-out: before the cluster closes).
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	c := k.Cluster()
	held := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, errors.New("test: produce dropped"), true
	})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no produce request reached the broker")
	}
	return b, cancel, errc
}

// noPipelineGoroutines fails t unless every pipeline and kafka-go
// goroutine is gone; unbounded, they would stay for the ~30 s kafka-go
// retries the held batch.
func noPipelineGoroutines(t *testing.T) {
	t.Helper()
	testbroker.WaitGoroutinesGone(t, "github.com/segmentio/kafka-go.", "ssebridge/bridge.(*pipeline)")
}
