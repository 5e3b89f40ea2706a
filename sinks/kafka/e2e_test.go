package kafka_test

// End to end: an httptest SSE feed → sources.Worker → this sink → kfake
// over loopback TCP → read back with a kafka-go Reader.

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/ssebridge/ssebridge/internal/pipelinetest"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
	"github.com/ssebridge/ssebridge/sources"
)

func readTopic(t *testing.T, addr, topic string) []sinktest.Received {
	t.Helper()
	r := newReader(t, addr)
	var out []sinktest.Received
	for p, c := range partitionCounts(t, addr, topic) {
		for _, m := range r.partition(t, topic, p, int(c)) {
			out = append(out, sinktest.Received{Dest: m.Topic, Data: m.Value, Headers: header(m)})
		}
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"wiki-events": 3})
	feed := sinktest.NewFeed(t, 300)
	s := open(t, k.Addr(), "wiki", kafkasink.Options{Topic: "wiki-events"})
	w := pipelinetest.StartWorker(t, "wiki", feed.URL(), s, nil)
	feed.Release(300)
	w.WaitAcked(t, "300")
	// Keyless: one partition holds the whole feed, in order.
	sinktest.CheckDelivered(t, "wiki", feed.Events(), readTopic(t, k.Addr(), "wiki-events"))
}

// TestBrokerRestart closes the kfake cluster mid-stream and recreates it on
// the same port. Nothing is acknowledged while it is down, and afterwards
// every event is in the topic in order. kafka-go may have written a batch
// whose acknowledgement was lost with the connection, so an event may
// appear twice (at-least-once); it never goes missing.
func TestBrokerRestart(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"wiki-events": 1})
	feed := sinktest.NewFeed(t, 300)
	store := &memStore{}
	s := open(t, k.Addr(), "wiki", kafkasink.Options{Topic: "wiki-events"})
	w := pipelinetest.StartWorker(t, "wiki", feed.URL(), s, store)
	feed.Release(100)
	w.WaitAcked(t, "100")
	sinktest.WaitFor(t, "checkpoint 100", func() bool { return store.last() == "100" })

	k.Close()
	feed.Release(200)
	sinktest.WaitFor(t, "worker paused on the sink", func() bool {
		st := w.Status()
		return st.Received > 100 && st.State == sources.StatePaused
	})
	if id, cp := w.Status().LastEventID, store.last(); id != "100" || cp != "100" {
		t.Fatalf("while the broker was down: acknowledged %q, checkpointed %q; want 100", id, cp)
	}
	k.Restart(t)
	feed.Release(300)
	w.WaitAcked(t, "300")

	got := readTopic(t, k.Addr(), "wiki-events")
	// Drop repeats (at-least-once), then the feed must be there, whole and
	// in order.
	var uniq []sinktest.Received
	last := 0
	for _, g := range got {
		n, _ := strconv.Atoi(g.Headers["SSE-Id"])
		if n <= last {
			if n < last-sourcesBatch {
				t.Fatalf("event %d reappeared after %d: more than a retried batch", n, last)
			}
			continue
		}
		uniq = append(uniq, g)
		last = n
	}
	if dups := len(got) - len(uniq); dups > 0 {
		t.Logf("%d events written twice across the restart (at-least-once)", dups)
	}
	sinktest.CheckDelivered(t, "wiki", feed.Events(), uniq)
}

// sourcesBatch bounds how far back a retry can reach: one worker batch.
const sourcesBatch = sources.DefaultBatchSize

type memStore struct {
	mu sync.Mutex
	id string
}

func (s *memStore) Load(ctx context.Context, p string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.id != "", nil
}

func (s *memStore) Save(ctx context.Context, p, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id = id
	return nil
}

func (s *memStore) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}
