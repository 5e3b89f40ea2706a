package streams

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sse"
)

// The id of every event is computed per subscriber, so its cost is paid
// events × subscribers times. The JetStream id (a sequence and a fixed
// tag) is the baseline a Kafka token is measured against.

func BenchmarkEventID(b *testing.B) {
	b.Run("jetstream", func(b *testing.B) {
		c := &seqCursor{}
		m := &message{}
		for i := 0; b.Loop(); i++ {
			m.seq = uint64(i + 1_000_000)
			c.advance(m)
			idSink = c.id()
		}
	})
	for _, parts := range []int{1, 3, 12, 64} {
		b.Run(fmt.Sprintf("kafka/partitions=%d", parts), func(b *testing.B) {
			start := make(position, parts)
			for p := range parts {
				start[p] = 1_000_000
			}
			c := newOffsetCursor(topicTag("t"), start)
			m := &message{}
			for i := 0; b.Loop(); i++ {
				m.partition = i % parts
				m.offset = int64(1_000_000 + i)
				c.advance(m)
				idSink = c.id()
			}
		})
	}
}

// idSink keeps the compiler from dropping the id computation.
var idSink string

// BenchmarkCoreFanOut measures one event's way from a NATS publish to every
// subscriber's decoded SSE, through a real nats-server and real HTTP
// connections; ns/op is per published event. Compare subscribers=N with
// subscribers=1 (the baseline) to see what fan-out costs.
func BenchmarkCoreFanOut(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			broker := testbroker.StartNATS(b)
			nc, err := nats.Connect(broker.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			cfg := coreCfg("/bench", "bench")
			cfg.MaxPending = 1 << 20 // measure throughput, not drops
			srv, err := New([]Config{cfg}, Deps{NATS: nc})
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			defer srv.Shutdown(context.Background())

			payload := []byte(`{"title":"Main Page","user":"Example","bytes":1234}`)
			var wg sync.WaitGroup
			want := b.N
			for range n {
				resp, err := http.Get(hs.URL + "/bench")
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					dec := sse.NewDecoder(resp.Body)
					for got := 0; got < want; got++ {
						if _, err := dec.Next(); err != nil {
							return
						}
					}
				}()
			}
			b.ResetTimer()
			for range b.N {
				if err := nc.Publish("bench", payload); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.StopTimer()
			if d := metricValue(b, metrics.SlowSubscriberDrops.WithLabelValues("/bench")); d != 0 {
				b.Fatalf("%v subscribers dropped", d)
			}
		})
	}
}
