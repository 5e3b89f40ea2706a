package streams

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

func (s *Server) takenOver() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// waitFor polls cond until it holds or waitLong passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A subscriber of the tail is served without a goroutine of its own: its
// connection is taken over, it gets its events and heartbeats, and a
// client that leaves is noticed at once (nothing reads the connection).
func TestTakenOverSubscriber(t *testing.T) {
	e := startNATS(t)
	cfg := coreCfg("/core/taken", "taken")
	cfg.Heartbeat = 20 * time.Millisecond
	srv, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})
	c := subscribe(t, hs.URL+"/core/taken", nil)
	if n := srv.takenOver(); n != 1 {
		t.Fatalf("%d connections taken over, want 1", n)
	}
	e.publish(t, "taken", "", "e1")
	e.publish(t, "taken", "", "e2")
	if got := datas(c.take(t, 2)); got[0] != "e1" || got[1] != "e2" {
		t.Fatalf("got %v", got)
	}
	for {
		select {
		case cm := <-c.comments:
			if cm != "heartbeat" {
				continue
			}
		case <-time.After(waitLong):
			t.Fatal("no heartbeat")
		}
		break
	}
	c.close()
	waitFor(t, "subscriber gone after the client left", func() bool {
		return srv.Stats()[0].Subscribers == 0 && srv.takenOver() == 0
	})
	// Unsubscribe returns before nats-server has read the UNSUB.
	waitFor(t, "the core subscription gone with its last subscriber", func() bool { return e.clientSubs(t) == 0 })
}

// Servers sharing a SubscriberLimit count taken-over subscribers until
// they leave, not only while their handler runs.
func TestSharedSubscriberLimit(t *testing.T) {
	e := startNATS(t)
	var limit SubscriberLimit
	limit.SetMax(1)
	_, hsA := startServer(t, []Config{coreCfg("/a", "a")}, Deps{NATS: e.nc, Shared: &limit})
	_, hsB := startServer(t, []Config{coreCfg("/b", "b")}, Deps{NATS: e.nc, Shared: &limit})
	a := subscribe(t, hsA.URL+"/a", nil)
	if code := probe(t, hsB.URL+"/b"); code != http.StatusServiceUnavailable {
		t.Fatalf("second subscriber across servers: %d, want 503", code)
	}
	a.close()
	waitFor(t, "slot released", func() bool { return limit.Subscribers() == 0 })
	b := subscribe(t, hsB.URL+"/b", nil)
	b.close()
}

// With Coalesce, the events of a burst gather before the write; every
// one still arrives, in order.
func TestCoalescedSubscriberGetsEveryEvent(t *testing.T) {
	e := startNATS(t)
	cfg := coreCfg("/core/coalesced", "co")
	cfg.Coalesce = 20 * time.Millisecond
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})
	c := subscribe(t, hs.URL+"/core/coalesced", nil)
	for i := 1; i <= 50; i++ {
		e.publish(t, "co", "", fmt.Sprint("e", i))
	}
	if got := datas(c.take(t, 50)); !slices.Equal(got, seqDatas(1, 50)) {
		t.Fatalf("got %v, want e1..e50", got)
	}
}
