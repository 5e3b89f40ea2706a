package bridge

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// TestReadinessFollowsKafka: with a kafka block, readiness needs a broker
// that speaks Kafka, probed at most once per TTL.
func TestReadinessFollowsKafka(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"t": 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{DataDir: t.TempDir(), Kafka: config.Kafka{Brokers: []string{k.Addr()}}}
	cfg.SetDefaults()
	b, err := New(cfg, Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	<-b.Started()

	st := b.Status()
	if !st.Ready || st.Kafka == nil || !st.Kafka.Connected || st.Kafka.Broker != k.Addr() {
		t.Fatalf("with kfake up: %+v %+v", st, st.Kafka)
	}
	k.Close()
	// Cached: the broker is not dialled again within the TTL.
	if st := b.Status(); !st.Ready {
		t.Fatal("probe not cached within its TTL")
	}
	b.kafka.mu.Lock()
	b.kafka.ttl = time.Nanosecond
	b.kafka.mu.Unlock()
	if st := b.Status(); st.Ready || st.Kafka.Connected || st.Kafka.Error == "" {
		t.Fatalf("with kfake closed: ready=%v %+v", st.Ready, st.Kafka)
	}
	k.Restart(t)
	if st := b.Status(); !st.Ready {
		t.Fatalf("after kfake restart: %+v", st.Kafka)
	}
}
