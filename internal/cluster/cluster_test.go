package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/testbroker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 1500 * time.Millisecond

// replica is a Cluster with its loop and one supervisor per pipeline that
// holds each lease it gets until lost, as the bridge does.
type replica struct {
	*Cluster
	nc     *nats.Conn
	cancel context.CancelFunc
	freeze context.CancelFunc // stops the renewal loop only
	wg     sync.WaitGroup

	mu   sync.Mutex
	runs map[string]int // pipelines running here now
}

func startReplica(t *testing.T, url, id string, pipelines []string, holders *holders) *replica {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c := New(nc, Options{Bucket: "test", LeaseTTL: ttl, ReplicaID: id, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	c.SetPipelines(pipelines)
	ctx, cancel := context.WithCancel(context.Background())
	loopCtx, freeze := context.WithCancel(ctx)
	r := &replica{Cluster: c, nc: nc, cancel: cancel, freeze: freeze, runs: map[string]int{}}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = c.Run(loopCtx) }()
	for _, p := range pipelines {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for ctx.Err() == nil {
				lost, release, err := c.Acquire(ctx, p)
				if err != nil {
					return
				}
				holders.enter(t, p, id)
				r.set(p, 1)
				select {
				case <-lost:
				case <-ctx.Done():
				}
				r.set(p, 0)
				holders.leave(p, id)
				release()
			}
		}()
	}
	t.Cleanup(r.stop)
	return r
}

func (r *replica) set(p string, n int) {
	r.mu.Lock()
	r.runs[p] = n
	r.mu.Unlock()
}

func (r *replica) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.runs {
		n += v
	}
	return n
}

// stop leaves gracefully: presence first, then every lease released.
func (r *replica) stop() {
	if r.cancel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r.Close(ctx)
	cancel()
	r.cancel()
	r.wg.Wait()
	r.nc.Close()
	r.cancel = nil
}

// holders records who runs each pipeline and fails on two at once.
type holders struct {
	mu  sync.Mutex
	now map[string]string
	bad []string
}

func (h *holders) enter(t *testing.T, p, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if other, ok := h.now[p]; ok {
		h.bad = append(h.bad, fmt.Sprintf("%s held by %s and %s at once", p, other, id))
	}
	h.now[p] = id
}

func (h *holders) leave(p, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.now[p] == id {
		delete(h.now, p)
	}
}

func (h *holders) snapshot() (map[string]string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string]string{}
	for k, v := range h.now {
		m[k] = v
	}
	return m, append([]string(nil), h.bad...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("feed-%02d", i))
	}
	return out
}

// TestLeasesSpreadAndMove: 12 pipelines over three replicas, four each;
// a fourth replica takes a share; one leaving gracefully hands its
// pipelines over; never two holders of one pipeline.
func TestLeasesSpreadAndMove(t *testing.T) {
	ns := testbroker.StartNATS(t)
	h := &holders{now: map[string]string{}}
	pipes := names(12)
	var rs []*replica
	for _, id := range []string{"a", "b", "c"} {
		rs = append(rs, startReplica(t, ns.URL(), id, pipes, h))
	}
	spread := func(want ...int) func() bool {
		return func() bool {
			now, _ := h.snapshot()
			if len(now) != len(pipes) {
				return false
			}
			for i, r := range rs {
				if r.cancel != nil && r.count() != want[i] {
					return false
				}
			}
			return true
		}
	}
	eventually(t, "12 pipelines spread 4/4/4", spread(4, 4, 4))

	rs = append(rs, startReplica(t, ns.URL(), "d", pipes, h))
	eventually(t, "a fourth replica taking a share (3 each)", spread(3, 3, 3, 3))

	rs[1].stop() // b leaves gracefully
	eventually(t, "b's pipelines moved to the others (4 each)", spread(4, 0, 4, 4))
	if _, bad := h.snapshot(); len(bad) > 0 {
		t.Fatalf("double ownership: %v", bad)
	}
	// The owners are visible to every replica.
	eventually(t, "owners seen by a", func() bool {
		o, mine := rs[0].Owner(pipes[0])
		return o.Replica != "" && mine == (o.Replica == "a")
	})
}

// TestFencing: a replica that stops renewing (frozen, cut off) loses its
// lease before the server expires it; the new owner fences the checkpoint,
// so the old owner can neither publish (Valid) nor save.
func TestFencing(t *testing.T) {
	ns := testbroker.StartNATS(t)
	h := &holders{now: map[string]string{}}
	a := startReplica(t, ns.URL(), "a", []string{"p"}, h)
	eventually(t, "a owns p", func() bool { now, _ := h.snapshot(); return now["p"] == "a" })
	ctx := context.Background()
	if err := a.Save(ctx, "p", "41"); err != nil {
		t.Fatal(err)
	}
	if err := a.Valid("p"); err != nil {
		t.Fatalf("Valid while owning: %v", err)
	}

	// Freeze a's renewals the way SIGSTOP or a split would: its loop
	// stops, its pipeline still believes it runs.
	a.freeze()
	eventually(t, "a's lease invalid past two thirds of the TTL", func() bool { return errors.Is(a.Valid("p"), ErrNotOwner) })

	b := startReplica(t, ns.URL(), "b", []string{"p"}, &holders{now: map[string]string{}})
	eventually(t, "b owns p once a's lease expired", func() bool { _, mine := b.Owner("p"); return mine })
	id, ok, err := b.Load(ctx, "p")
	if err != nil || !ok || id != "41" {
		t.Fatalf("b resumes from %q, %v, %v; want 41", id, ok, err)
	}
	if err := b.Save(ctx, "p", "57"); err != nil {
		t.Fatal(err)
	}
	// a wakes up and its checkpointer saves an older position.
	if err := a.Save(ctx, "p", "45"); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale owner's Save = %v, want ErrFenced", err)
	}
	if err := a.Valid("p"); err == nil {
		t.Fatal("the stale owner is valid again after its save was fenced")
	}
	if id, _, _ := b.Load(ctx, "p"); id != "57" {
		t.Fatalf("checkpoint = %q after the stale save, want 57 (never back)", id)
	}
}
