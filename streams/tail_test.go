package streams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// jsConsumers is how many consumers JetStream stream name has now.
func (e *natsEnv) jsConsumers(t *testing.T, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := e.js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo().State.Consumers
}

// waitConsumers waits until stream name has n consumers (a catch-up
// deletes its own once it has joined the tail).
func (e *natsEnv) waitConsumers(t *testing.T, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for got := e.jsConsumers(t, name); got != n; got = e.jsConsumers(t, name) {
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has %d consumers, want %d", name, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seqDatas(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, "e"+strconv.Itoa(i))
	}
	return out
}

// Many subscribers of a JetStream stream share one consumer.
func TestJetStreamSubscribersShareOneConsumer(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "ONE", "one.>")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/one", "ONE", "one.>")}, Deps{NATS: e.nc})
	var subs []*sseClient
	for range 20 {
		subs = append(subs, subscribe(t, hs.URL+"/js/one", nil))
	}
	if n := e.jsConsumers(t, "ONE"); n != 1 {
		t.Fatalf("20 subscribers hold %d consumers, want 1", n)
	}
	for i := 1; i <= 5; i++ {
		e.jsPublish(t, "one.a", "", "e"+strconv.Itoa(i))
	}
	var ids []string
	for _, c := range subs {
		evs := c.take(t, 5)
		if got := datas(evs); !slices.Equal(got, seqDatas(1, 5)) {
			t.Fatalf("subscriber got %v", got)
		}
		ids = append(ids, evs[4].ID)
	}
	if want := e.jsIDOf(t, "ONE", 5); ids[0] != want || ids[19] != want {
		t.Errorf("ids %q, %q, want %q for every subscriber", ids[0], ids[19], want)
	}
	for _, c := range subs {
		c.close()
	}
	// The tail outlives its last subscriber a while: one that comes back
	// (a reconnect storm) makes no new consumer.
	again := subscribe(t, hs.URL+"/js/one", map[string]string{"Last-Event-ID": ids[0]})
	e.jsPublish(t, "one.a", "", "e6")
	if got := string(again.next(t).Data); got != "e6" {
		t.Fatalf("resume got %q, want e6", got)
	}
	if n := e.jsConsumers(t, "ONE"); n != 1 {
		t.Fatalf("%d consumers after everyone left and one came back, want 1", n)
	}
}

// A resume inside the window is served from memory: no consumer is made.
func TestJetStreamResumeInsideTheWindow(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "WIN", "win.>")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/win", "WIN", "win.>")}, Deps{NATS: e.nc})
	a := subscribe(t, hs.URL+"/js/win", nil)
	for i := 1; i <= 10; i++ {
		e.jsPublish(t, "win.a", "", "e"+strconv.Itoa(i))
	}
	evs := a.take(t, 10)

	b := subscribe(t, hs.URL+"/js/win", map[string]string{"Last-Event-ID": evs[4].ID})
	if n := e.jsConsumers(t, "WIN"); n != 1 {
		t.Errorf("a resume inside the window made a consumer: %d, want 1", n)
	}
	if got := datas(b.take(t, 5)); !slices.Equal(got, seqDatas(6, 10)) {
		t.Fatalf("resume after e5 got %v", got)
	}
	// Then the live events, once.
	e.jsPublish(t, "win.a", "", "e11")
	if got := string(b.next(t).Data); got != "e11" {
		t.Fatalf("then got %q, want e11", got)
	}
	// A resume at the newest event waits for the next.
	c := subscribe(t, hs.URL+"/js/win", map[string]string{"Last-Event-ID": e.jsIDOf(t, "WIN", 11)})
	e.jsPublish(t, "win.a", "", "e12")
	if got := string(c.next(t).Data); got != "e12" {
		t.Fatalf("resume at the head got %q, want e12", got)
	}
}

// windowCfg is a JetStream stream whose window holds 5 events.
func windowCfg(path, stream, subject string) Config {
	c := jsStreamCfg(path, stream, subject)
	c.MaxPending = 4
	c.WindowEvents = 5
	return c
}

// A resume from before the window is caught up by a consumer of its own,
// then continues from the tail with no gap and no repeat at the seam, and
// the catch-up's consumer is deleted.
func TestJetStreamResumeBeforeTheWindow(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "OLD", "old.>")
	_, hs := startServer(t, []Config{windowCfg("/js/old", "OLD", "old.>")}, Deps{NATS: e.nc})
	a := subscribe(t, hs.URL+"/js/old", nil)
	for i := 1; i <= 20; i++ {
		e.jsPublish(t, "old.a", "", "e"+strconv.Itoa(i))
		a.next(t) // keep the live subscriber within max_pending
	}
	b := subscribe(t, hs.URL+"/js/old", map[string]string{"Last-Event-ID": e.jsIDOf(t, "OLD", 2)})
	got := datas(b.take(t, 18))
	if !slices.Equal(got, seqDatas(3, 20)) {
		t.Fatalf("resume after e2 got %v, want e3..e20", got)
	}
	e.waitConsumers(t, "OLD", 1) // the catch-up joined the tail
	for i := 21; i <= 25; i++ {
		e.jsPublish(t, "old.a", "", "e"+strconv.Itoa(i))
	}
	if got := datas(b.take(t, 5)); !slices.Equal(got, seqDatas(21, 25)) {
		t.Fatalf("after the seam got %v, want e21..e25", got)
	}
	// A plain sequence behaves the same.
	c := subscribe(t, hs.URL+"/js/old", map[string]string{"Last-Event-ID": "10"})
	if got := datas(c.take(t, 15)); !slices.Equal(got, seqDatas(11, 25)) {
		t.Fatalf("resume after plain 10 got %v", got)
	}
}

// The seam while the stream is busy: subscribers resuming from before the
// window while a publisher runs each get every event once, in order (a
// subscriber cut off for falling behind resumes with its id, as a browser
// does).
func TestJetStreamSeamUnderPublishing(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "SEAM", "seam.>")
	cfg := jsStreamCfg("/js/seam", "SEAM", "seam.>")
	cfg.MaxPending = 49
	cfg.WindowEvents = 50
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})
	live := subscribe(t, hs.URL+"/js/seam", nil)
	for i := 1; i <= 100; i++ {
		e.jsPublish(t, "seam.a", "", strconv.Itoa(i))
		live.next(t)
	}

	const total = 600
	ctx, cancel := context.WithCancel(context.Background())
	var readers []*seqReader
	opened := make(chan struct{}, 10)
	for _, after := range []int{1, 3, 5, 7, 9, 40, 49, 50, 51, 60} {
		r := &seqReader{url: hs.URL + "/js/seam", resume: true, want: total, last: after,
			lastID: e.jsIDOf(t, "SEAM", uint64(after)), finished: make(chan struct{})}
		readers = append(readers, r)
		go r.run(ctx, http.DefaultClient, opened)
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range readers {
			<-r.finished
		}
	})
	for i := 101; i <= total; i++ {
		if _, err := e.js.Publish(context.Background(), "seam.a", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for _, r := range readers {
		select {
		case <-r.finished:
		case <-time.After(3 * waitLong):
			t.Fatalf("a subscriber stopped at %d of %d", r.last, total)
		}
		r.mu.Lock()
		if r.problem != nil {
			t.Errorf("subscriber: %v", r.problem)
		}
		r.mu.Unlock()
	}
}

// A slow subscriber of the shared tail is cut off; the fast ones get
// every event and never wait for it.
func TestJetStreamSlowSubscriberAmongFastOnes(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "SLOW", "slow.>")
	const path = "/js/slow"
	cfg := jsStreamCfg(path, "SLOW", "slow.>")
	cfg.MaxPending = 8
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{NATS: e.nc})
	slowAmongFast(t, hs.URL, path, cfg.MaxPending, func(ds ...string) {
		for _, d := range ds {
			e.jsPublish(t, "slow.a", "", d)
		}
	})
}

// slowAmongFast checks a stream at path of the server at url, whose
// max_pending is maxPending: one subscriber that stops reading and four
// that read. publish sends events; rounds of maxPending 8 KiB events go
// out until the slow one is cut off, and each fast one must get every
// round in order, then one more event after the cut.
func slowAmongFast(t *testing.T, url, path string, maxPending int, publish func(datas ...string)) {
	t.Helper()
	slow := slowGet(t, url+path)
	var fast []*sseClient
	for range 4 {
		fast = append(fast, subscribe(t, url+path, nil))
	}
	drops := metrics.SlowSubscriberDrops.WithLabelValues(path)
	before := metricValue(t, drops)
	payload := fmt.Sprintf("%08192d", 0)
	var want []string
	for batch := 0; metricValue(t, drops) == before; batch++ {
		if batch == 2000 {
			t.Fatalf("slow subscriber still connected after %d events", len(want))
		}
		round := make([]string, 0, maxPending)
		for i := range maxPending {
			round = append(round, fmt.Sprintf("%d-%d %s", batch, i, payload))
		}
		want = append(want, round...)
		publish(round...)
		for _, c := range fast {
			if got := datas(c.take(t, maxPending)); !slices.Equal(got, round) {
				t.Fatalf("a fast subscriber got %d events out of order", len(got))
			}
		}
	}
	if d := metricValue(t, drops) - before; d != 1 {
		t.Errorf("%v subscribers cut off, want only the slow one", d)
	}
	_ = slow
	publish("after")
	for _, c := range fast {
		if got := string(c.next(t).Data); got != "after" {
			t.Fatalf("a fast subscriber then got %q", got)
		}
	}
}

// A stream recreated while subscribers share its tail ends every one of
// them; each resumes with the id it holds and gets the new stream from its
// first message.
func TestJetStreamRecreatedUnderSharedTail(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "RT", "rt.>")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/rt", "RT", "rt.>")}, Deps{NATS: e.nc})
	var subs []*sseClient
	for range 5 {
		subs = append(subs, subscribe(t, hs.URL+"/js/rt", nil))
	}
	for i := 1; i <= 3; i++ {
		e.jsPublish(t, "rt.a", "", "old"+strconv.Itoa(i))
	}
	var last []string
	for _, c := range subs {
		last = append(last, c.take(t, 3)[2].ID)
	}
	e.recreateStream(t, "RT", "rt.>")
	for _, c := range subs {
		if extra, _ := c.endedWithin(t, recreateWithin); len(extra) > 0 {
			t.Fatalf("a response delivered %v from the new stream", extra)
		}
	}
	for i := 1; i <= 3; i++ {
		e.jsPublish(t, "rt.a", "", "new"+strconv.Itoa(i))
	}
	for _, id := range last {
		c := subscribe(t, hs.URL+"/js/rt", map[string]string{"Last-Event-ID": id})
		if got := datas(c.take(t, 3)); !slices.Equal(got, []string{"new1", "new2", "new3"}) {
			t.Fatalf("resume with %q got %v", id, got)
		}
	}
}

// The window is bounded in events and in bytes; what it covers follows
// what it evicts, and a member whose next frame is evicted is cut off as
// slow, within max_pending or not.
func TestTailWindowBounds(t *testing.T) {
	fr := func(seq uint64) *frame { return newFrame(seq, "s", "", make([]byte, 100), jsID(seq, jsTag{})) }
	size := fr(1).size()
	tl := newTail(8, 4*size, 6, 0) // the byte bound holds 4 frames
	for seq := uint64(1); seq <= 4; seq++ {
		tl.publish(fr(seq))
	}
	if !tl.covers(0) || !tl.covers(4) || tl.covers(5) {
		t.Fatalf("after 4 frames: covers(0)=%v covers(4)=%v covers(5)=%v", tl.covers(0), tl.covers(4), tl.covers(5))
	}
	lag := newSubscriber(0, nil)
	if err := tl.joinAfter(lag, 0); err != nil {
		t.Fatal(err)
	}
	mid := newSubscriber(0, nil)
	if err := tl.joinAfter(mid, 2); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := tl.read(mid, nil, 10); len(got) != 2 || got[0].seq != 3 {
		t.Fatalf("joined after 2, read %d frames from seq %d", len(got), got[0].seq)
	}
	tl.publish(fr(5)) // evicts seq 1 by bytes: lag's next frame is gone
	if tl.covers(0) || !tl.covers(1) {
		t.Errorf("after evicting seq 1: covers(0)=%v covers(1)=%v", tl.covers(0), tl.covers(1))
	}
	if err := lag.reason(); !errors.Is(err, errSlow) || !errors.Is(err, errOutOfWindow) {
		t.Errorf("member out of the window ended with %v, want errOutOfWindow (a slow subscriber)", err)
	}
	if err := mid.reason(); err != nil {
		t.Errorf("member within the window ended: %v", err)
	}
	if err := tl.joinAfter(newSubscriber(0, nil), 0); !errors.Is(err, errNotCovered) {
		t.Errorf("join before the window: %v, want errNotCovered", err)
	}
	// The event bound: max_pending+1 frames at least, here 8.
	tl2 := newTail(3, 1<<30, 6, 0)
	for seq := uint64(1); seq <= 10; seq++ {
		tl2.publish(fr(seq))
	}
	if tl2.head-tl2.first != 7 {
		t.Errorf("window of 3 events with max_pending 6 holds %d frames, want 7", tl2.head-tl2.first)
	}
	// A member more than max_pending behind whose write has waited for
	// room for stallAfter is cut off (TestTailCutsOnlyAStalledMemberBehind
	// has the rest of the rule).
	now := time.Unix(1000, 0)
	tl2.now = func() time.Time { return now }
	slow := newSubscriber(0, nil)
	if _, err := tl2.joinHead(slow); err != nil {
		t.Fatal(err)
	}
	slow.stalled.Store(now.Add(-stallAfter).UnixNano())
	for seq := uint64(11); seq <= 17; seq++ {
		tl2.publish(fr(seq))
	}
	if err := slow.reason(); !errors.Is(err, errSlow) {
		t.Errorf("member 7 frames behind with max_pending 6, stalled, ended with %v, want errSlow", err)
	}
}
