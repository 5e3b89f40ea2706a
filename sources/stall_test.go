package sources

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// flakyStore fails its first fails Saves, then stores like memStore.
type flakyStore struct {
	memStore
	mu    sync.Mutex
	fails int
}

func (s *flakyStore) Save(ctx context.Context, p, id string) error {
	s.mu.Lock()
	fail := s.fails > 0
	if fail {
		s.fails--
	}
	s.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return s.memStore.Save(ctx, p, id)
}

// TestCheckpointRetriedWhileFeedIdle: a checkpoint save that fails right
// after a batch is retried on the checkpoint interval even when no further
// event arrives; it used to wait for the next event (or shutdown), so a
// quiet feed kept a stale checkpoint indefinitely.
func TestCheckpointRetriedWhileFeedIdle(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		sseHeaders(w)
		write(w, event(1, "\n"))
		select { // then stay silent, connection open
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	store := &flakyStore{fails: 1}
	w, err := New(Config{Name: tname(t), URL: srv.URL, CheckpointInterval: 10 * time.Millisecond}, newTestSink(), store)
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := run(t, w)
	waitFor(t, "checkpoint saved while the feed is idle", func() bool {
		id, ok := store.get(tname(t))
		return ok && id == "1"
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}
