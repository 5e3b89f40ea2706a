package streams

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sse"
)

// A burst of several times max_pending events arriving at once (a Kafka
// fetch, a JetStream pull batch, a fast core publisher) puts every
// subscriber more than max_pending behind for a moment. Only the one whose
// connection stopped taking data is slow: the reader gets the whole burst
// on the connection it has, in order; the stalled one is cut off, and
// resumes with its Last-Event-ID with nothing lost.

// burstPending is max_pending in these tests; a burst is burstTimes that.
const (
	burstPending = 16
	burstTimes   = 8
)

// burstDatas are the events of one burst, 2 KiB each, so that the burst
// overflows the stalled client's socket buffers (4 KiB each way).
func burstDatas(prefix string) []string {
	pad := strings.Repeat("x", 2<<10)
	out := make([]string, burstPending*burstTimes)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d %s", prefix, i, pad)
	}
	return out
}

// checkBurst publishes a burst with publish while a reader and a stalled
// subscriber are connected, and checks that only the stalled one is cut
// off. resume says whether the stream has history to resume from (not
// core NATS): the stalled one then resumes with its Last-Event-ID and
// must get every event exactly once.
func checkBurst(t *testing.T, url, path string, resume bool, publish func(datas ...string)) {
	t.Helper()
	fast := subscribe(t, url, nil)
	stalled := slowGet(t, url)
	drops := metrics.SlowSubscriberDrops.WithLabelValues(path)
	before := metricValue(t, drops)

	burst := burstDatas("b")
	publish(burst...)
	if got := datas(fast.take(t, len(burst))); !slices.Equal(got, burst) {
		t.Fatalf("the reader got %d events, not the burst in order", len(got))
	}
	// The stalled one is cut off once its write has waited stallAfter.
	deadline := time.Now().Add(waitLong)
	for metricValue(t, drops) == before {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled subscriber was not cut off within %s", waitLong)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The reader was not cut off: the same response goes on.
	publish("after")
	if got := string(fast.next(t).Data); got != "after" {
		t.Fatalf("the reader then got %q", got)
	}
	if d := metricValue(t, drops) - before; d != 1 {
		t.Fatalf("%v subscribers cut off as slow, want only the stalled one", d)
	}

	// The stalled client reads what it was sent before the cut, a prefix
	// of the burst, then the end of the response (which must come: a
	// response that goes on fails the test instead of hanging it).
	bound := time.AfterFunc(waitLong, func() { stalled.Body.Close() })
	defer bound.Stop()
	dec := sse.NewDecoder(stalled.Body)
	var got []string
	for {
		ev, err := dec.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("stalled response ended with %v", err)
			}
			break
		}
		got = append(got, string(ev.Data))
	}
	if len(got) >= len(burst) || !slices.Equal(got, burst[:len(got)]) {
		t.Fatalf("the stalled subscriber got %d events before its cut, not a strict prefix of the burst", len(got))
	}
	t.Logf("the stalled subscriber got %d of %d events before it was cut off", len(got), len(burst))
	if !resume {
		return // core NATS keeps no history to resume from
	}
	id := dec.LastEventID()
	if id == "" {
		t.Fatal("the stalled subscriber holds no id to resume from")
	}
	again := subscribe(t, url, map[string]string{"Last-Event-ID": id})
	want := append(slices.Clone(burst[len(got):]), "after")
	if rest := datas(again.take(t, len(want))); !slices.Equal(rest, want) {
		t.Fatalf("resumed with %q: got %d events, not the rest of the burst in order", id, len(rest))
	}
}

func TestBurstCutsOnlyTheStalledCoreSubscriber(t *testing.T) {
	e := startNATS(t)
	const path = "/core/burst"
	cfg := coreCfg(path, "burst")
	cfg.MaxPending = burstPending
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{NATS: e.nc})
	checkBurst(t, hs.URL+path, path, false, func(ds ...string) {
		// Buffered by the client and flushed at once: the bridge's
		// subscription receives them in one read.
		for _, d := range ds {
			if err := e.nc.Publish("burst", []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBurstCutsOnlyTheStalledJetStreamSubscriber(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "BURST", "burst.>")
	const path = "/js/burst"
	cfg := jsStreamCfg(path, "BURST", "burst.>")
	cfg.MaxPending = burstPending
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{NATS: e.nc})
	checkBurst(t, hs.URL+path, path, true, func(ds ...string) {
		var acks []jetstream.PubAckFuture
		for _, d := range ds {
			a, err := e.js.PublishAsync("burst.a", []byte(d))
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, a)
		}
		for _, a := range acks {
			select {
			case <-a.Ok():
			case err := <-a.Err():
				t.Fatalf("publish: %v", err)
			case <-time.After(waitLong):
				t.Fatal("publish not acknowledged")
			}
		}
	})
}

func TestBurstCutsOnlyTheStalledKafkaSubscriber(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"burst": 1})
	const path = "/kafka/burst"
	cfg := kafkaCfg(path, "burst", "")
	cfg.MaxPending = burstPending
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	w := kafkaWriter(t, k.Addr(), "burst")
	checkBurst(t, hs.URL+path, path, true, func(ds ...string) {
		// One produce: the tail's reader fetches them as one batch.
		msgs := make([]kafka.Message, len(ds))
		for i, d := range ds {
			msgs[i] = kafkaMsg(0, "", d, time.Time{})
		}
		produce(t, w, msgs...)
	})
}

// The same through net/http's own response (HTTP/2, a wrapped writer):
// the reader takes the burst whole on its connection.
func TestBurstKeepsTheReaderOnItsRequestsGoroutine(t *testing.T) {
	e := startNATS(t)
	const path = "/core/burst-http"
	cfg := coreCfg(path, "bursth")
	cfg.MaxPending = burstPending
	srv, err := New([]Config{cfg}, Deps{NATS: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	srv.noTakeOver = true
	hs := startHTTPTest(t, srv)
	fast := subscribe(t, hs+path, nil)
	drops := metrics.SlowSubscriberDrops.WithLabelValues(path)
	before := metricValue(t, drops)
	burst := burstDatas("h")
	for _, d := range burst {
		if err := e.nc.Publish("bursth", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := datas(fast.take(t, len(burst))); !slices.Equal(got, burst) {
		t.Fatalf("the reader got %d events, not the burst in order", len(got))
	}
	e.publish(t, "bursth", "", "after")
	if got := string(fast.next(t).Data); got != "after" {
		t.Fatalf("the reader then got %q", got)
	}
	if d := metricValue(t, drops) - before; d != 0 {
		t.Fatalf("%v subscribers cut off as slow, want none", d)
	}
}

// startHTTPTest serves srv with small send buffers, shut down at the end
// of the test; it returns the base URL.
func startHTTPTest(t *testing.T, srv *Server) string {
	t.Helper()
	return serveForTest(t, srv, true).URL
}

// The rule itself, on a tail with an injected clock: more than max_pending
// frames not taken is not enough to be cut off, nor is a write waiting for
// room; both for stallAfter are.
func TestTailCutsOnlyAStalledMemberBehind(t *testing.T) {
	fr := func(seq uint64) *frame { return newFrame(seq, "s", "", []byte("x"), jsID(seq, jsTag{})) }
	now := time.Unix(1000, 0)
	tl := newTail(100, 1<<30, 4, 0)
	tl.now = func() time.Time { return now }
	reader, waiting, stalled := newSubscriber(0, nil), newSubscriber(0, nil), newSubscriber(0, nil)
	for _, s := range []*subscriber{reader, waiting, stalled} {
		if _, err := tl.joinHead(s); err != nil {
			t.Fatal(err)
		}
	}
	// A burst of 5 x max_pending: nobody has had a chance to take it.
	seq := uint64(0)
	burst := func(n int) {
		for range n {
			seq++
			tl.publish(fr(seq))
		}
	}
	burst(20)
	for name, s := range map[string]*subscriber{"reader": reader, "waiting": waiting, "stalled": stalled} {
		if err := s.reason(); err != nil {
			t.Fatalf("%s cut off by a burst it had no chance to take: %v", name, err)
		}
	}
	// The reader takes it; the others get a write that waits for room.
	got, _, _ := tl.read(reader, nil, 100)
	reader.taken.Store(reader.next.Load())
	for _, s := range []*subscriber{waiting, stalled} {
		if _, _, err := tl.read(s, nil, 100); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 20 {
		t.Fatalf("reader read %d frames", len(got))
	}
	stalled.stalled.Store(now.UnixNano())
	now = now.Add(stallAfter - time.Millisecond)
	waiting.stalled.Store(now.UnixNano())
	burst(1)
	if err := stalled.reason(); err != nil {
		t.Fatalf("cut off before its write waited stallAfter: %v", err)
	}
	now = now.Add(time.Millisecond)
	burst(1)
	if err := stalled.reason(); !errors.Is(err, errSlow) || errors.Is(err, errOutOfWindow) {
		t.Fatalf("a member stalled for stallAfter, 22 frames behind, ended with %v, want errSlow", err)
	}
	if err := waiting.reason(); err != nil {
		t.Fatalf("a member whose write waited less than stallAfter was cut off: %v", err)
	}
	if err := reader.reason(); err != nil {
		t.Fatalf("the reader was cut off: %v", err)
	}
	// A stalled member within max_pending stays; its write completing
	// makes it a reader again.
	waiting.taken.Store(waiting.next.Load())
	now = now.Add(time.Hour)
	burst(2)
	if err := waiting.reason(); err != nil {
		t.Fatalf("a member 2 frames behind was cut off: %v", err)
	}
	// Whatever the clock says, a member whose next frame leaves the
	// window is cut off.
	waiting.stalled.Store(0)
	burst(100)
	if err := waiting.reason(); !errors.Is(err, errOutOfWindow) {
		t.Fatalf("a member out of the window ended with %v, want errOutOfWindow", err)
	}
}

// A taken-over connection outlives the deadline of its response head: the
// writers' raw writes fail once a deadline has passed, so none may be left
// behind. Before, every taken-over subscriber was cut off writeTimeout
// after it joined, at its next event, and had to resume. (The deadline of
// a write that waited for room is the burst tests' case: their reader gets
// "after" well past it.)
func TestTakenOverConnectionOutlivesItsWriteDeadlines(t *testing.T) {
	e := startNATS(t)
	const path = "/core/deadline"
	cfg := coreCfg(path, "deadline")
	srv, err := New([]Config{cfg}, Deps{NATS: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	srv.writeWait = 20 * time.Millisecond
	url := startHTTPTest(t, srv) + path
	c := subscribe(t, url, nil)
	e.publish(t, "deadline", "", "first")
	if got := string(c.next(t).Data); got != "first" {
		t.Fatalf("got %q", got)
	}
	// Only a lower bound: every deadline armed so far has passed.
	time.Sleep(3 * srv.writeWait)
	e.publish(t, "deadline", "", "later")
	if got := string(c.next(t).Data); got != "later" {
		t.Fatalf("then got %q", got)
	}
	srv.mu.Lock()
	n := len(srv.conns)
	srv.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d taken-over connections, want 1: the test proves nothing", n)
	}
}

// The Kafka watch compares the positions read before it looked the log
// ends up: a tail reader that reads a record produced after the look-up
// is past the end it was told, yet nothing was truncated. Comparing its
// position then ended every subscriber of a busy topic now and then.
func TestKafkaWatchComparesPositionsReadBeforeTheEnds(t *testing.T) {
	c := newOffsetCursor(topicTag("t"), position{0: 10})
	before := c.snapshot()
	c.advance(&message{partition: 0, offset: 10}) // read meanwhile: at 11
	ends := position{0: 10}                       // the end looked up
	if err := c.check([]int{0}, ends, before); err != nil {
		t.Fatalf("a reader that went on during the look-up ended: %v", err)
	}
	if err := c.check([]int{0}, position{0: 9}, before); !errors.Is(err, errLogBelow) {
		t.Fatalf("a log ending before the position read first: %v, want errLogBelow", err)
	}
}
