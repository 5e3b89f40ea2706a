package streams

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sse"
)

// kafkaEnv is a kfake cluster with one topic served at one path.
type kafkaEnv struct {
	addr, topic, path string
	w                 *kafka.Writer
	srv               *Server
	url               string
}

func startKafkaStream(t *testing.T, topic string, parts int32, cfg func(*Config)) *kafkaEnv {
	t.Helper()
	k := testbroker.StartKafka(t, map[string]int32{topic: parts})
	e := &kafkaEnv{addr: k.Addr(), topic: topic, path: "/kafka/" + topic}
	c := kafkaCfg(e.path, topic, "")
	if cfg != nil {
		cfg(&c)
	}
	srv, hs := startServer(t, []Config{c}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	e.srv, e.url = srv, hs.URL+e.path
	e.w = kafkaWriter(t, k.Addr(), topic)
	return e
}

func (e *kafkaEnv) backend() *kafkaBackend { return e.srv.streams[e.path].backend.(*kafkaBackend) }

// setLinger sets how long the tail outlives its last subscriber.
func (b *kafkaBackend) setLinger(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.linger = d
}

// idleTail is the tail lingering without subscribers, or nil.
func (b *kafkaBackend) idleTail() *kafkaTail {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil && b.cur.users == 0 {
		return b.cur
	}
	return nil
}

// produce writes data to partitions, round robin from partition 0.
func (e *kafkaEnv) produce(t *testing.T, parts int, datas ...string) {
	t.Helper()
	msgs := make([]kafka.Message, len(datas))
	for i, d := range datas {
		msgs[i] = kafkaMsg(i%parts, "", d, time.Time{})
	}
	produce(t, e.w, msgs...)
}

func ids(evs []sse.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// Every subscriber of a Kafka stream reads the one tail: one reader per
// partition however many subscribers, and the same bytes (ids included)
// for each.
func TestKafkaSubscribersShareOneTail(t *testing.T) {
	e := startKafkaStream(t, "shared", 2, nil)
	e.backend().setLinger(0) // the readers stop with the last subscriber
	var cs []*sseClient
	for range 3 {
		cs = append(cs, subscribe(t, e.url, nil))
	}
	if n := goroutinesIn("streams.(*kafkaTail).read"); n != 2 {
		t.Errorf("%d partition readers for 3 subscribers of 2 partitions, want 2", n)
	}
	e.produce(t, 2, seqDatas(1, 10)...)
	first := cs[0].take(t, 10)
	for _, c := range cs[1:] {
		got := c.take(t, 10)
		if !slices.Equal(ids(got), ids(first)) || !slices.Equal(datas(got), datas(first)) {
			t.Fatalf("subscribers got different events:\n%v %v\n%v %v", ids(first), datas(first), ids(got), datas(got))
		}
	}
	for _, c := range cs {
		c.close()
	}
	testbroker.WaitGoroutinesGone(t, "streams.(*kafkaTail).read")
}

// The tail outlives its last subscriber for a while, reading on: a
// client that reconnects meanwhile resumes from the window, with no reader
// to start and no catch-up, and gets what was published while it was away.
// Once the linger is over the readers are gone.
func TestKafkaTailLingersForReconnects(t *testing.T) {
	e := startKafkaStream(t, "linger", 1, nil) // one partition: one order
	b := e.backend()
	b.setLinger(time.Hour)
	a := subscribe(t, e.url, nil)
	e.produce(t, 1, seqDatas(1, 6)...)
	seen := a.take(t, 6)
	a.close()
	waitFor(t, "the tail lingering without subscribers", func() bool { return b.idleTail() != nil })
	e.produce(t, 1, seqDatas(7, 10)...) // while nobody is subscribed

	c := subscribe(t, e.url, map[string]string{"Last-Event-ID": seen[5].ID})
	if got := datas(c.take(t, 4)); !slices.Equal(got, seqDatas(7, 10)) {
		t.Fatalf("reconnected after e6 got %v, want e7..e10", got)
	}
	if n := b.tailsStarted.Load(); n != 1 {
		t.Errorf("%d tails started, want the first taken back", n)
	}
	if n := b.catchUps.Load(); n != 0 {
		t.Errorf("%d catch-ups, want the resume served from the window", n)
	}
	b.setLinger(time.Millisecond)
	c.close()
	testbroker.WaitGoroutinesGone(t, "streams.(*kafkaTail).read")
}

// A resume inside the window is served from memory: the same ids as the
// live subscriber got, and no reader of its own. A position the tail never
// went through (partitions interleaved otherwise) resumes exactly too, and
// once the tail has passed it in every partition the ids are the tail's.
func TestKafkaResumeInsideTheWindow(t *testing.T) {
	e := startKafkaStream(t, "inside", 2, nil)
	a := subscribe(t, e.url, nil)
	e.produce(t, 2, seqDatas(1, 10)...)
	live := a.take(t, 10)

	b := subscribe(t, e.url, map[string]string{"Last-Event-ID": live[3].ID})
	got := b.take(t, 6)
	if !slices.Equal(ids(got), ids(live[4:])) || !slices.Equal(datas(got), datas(live[4:])) {
		t.Fatalf("resume after %s got %v, want %v", datas(live[3:4]), datas(got), datas(live[4:]))
	}

	// Partition 0 holds e1 e3 e5 e7 e9 (offsets 0-4), partition 1 e2 e4
	// e6 e8 e10. After e5 in partition 0 and e8 in partition 1, not a
	// position the tail went through.
	tok := encodeToken(topicTag(e.topic), position{0: 3, 1: 4})
	c := subscribe(t, e.url, map[string]string{"Last-Event-ID": tok})
	e.produce(t, 2, "e11", "e12") // e11 in partition 0, e12 in 1
	got = c.take(t, 5)
	byPart := map[int][]string{}
	for _, ev := range got {
		n, _ := strconv.Atoi(string(ev.Data[1:]))
		byPart[(n+1)%2] = append(byPart[(n+1)%2], string(ev.Data))
	}
	if fmt.Sprint(byPart) != fmt.Sprint(map[int][]string{0: {"e7", "e9", "e11"}, 1: {"e10", "e12"}}) {
		t.Fatalf("resume at {0:3 1:4} got %v, want e7 e9 e11 from partition 0 and e10 e12 from 1", datas(got))
	}
	a.take(t, 2)
	// The tail has passed its position in both partitions: its ids are
	// the tail's from now on.
	e.produce(t, 2, "e13", "e14")
	if got, want := c.take(t, 2), a.take(t, 2); !slices.Equal(ids(got), ids(want)) {
		t.Errorf("after passing its position got ids %v, want the tail's %v", ids(got), ids(want))
	}
	if n := e.backend().catchUps.Load(); n != 0 {
		t.Errorf("%d catch-ups for resumes inside the window, want 0", n)
	}
}

// A resume from before the window is caught up by readers of its own,
// then continues from the tail with no gap and no repeat at the seam, with
// the tail's ids.
func TestKafkaResumeBeforeTheWindow(t *testing.T) {
	e := startKafkaStream(t, "before", 2, func(c *Config) {
		c.MaxPending = 4
		c.WindowEvents = 5
	})
	a := subscribe(t, e.url, nil)
	var live []sse.Event
	for i := 1; i <= 20; i++ {
		e.produce(t, 1, "e"+strconv.Itoa(i)) // all in partition 0: one order
		live = append(live, a.next(t))       // within max_pending
	}
	b := subscribe(t, e.url, map[string]string{"Last-Event-ID": live[1].ID})
	if got := datas(b.take(t, 18)); !slices.Equal(got, seqDatas(3, 20)) {
		t.Fatalf("resume after e2 got %v, want e3..e20", got)
	}
	for i := 21; i <= 25; i++ {
		e.produce(t, 1, "e"+strconv.Itoa(i))
	}
	got, more := b.take(t, 5), a.take(t, 5)
	if !slices.Equal(datas(got), seqDatas(21, 25)) {
		t.Fatalf("after the seam got %v, want e21..e25", datas(got))
	}
	if !slices.Equal(ids(got), ids(more)) {
		t.Errorf("after the seam ids %v, want the tail's %v", ids(got), ids(more))
	}
	if n := e.backend().catchUps.Load(); n != 1 {
		t.Errorf("%d catch-ups, want 1", n)
	}
	testbroker.WaitGoroutinesGone(t, "streams.(*kafkaBackend).catchUpKafka")
}

// The seam while the topic is busy: subscribers resuming from before and
// inside the window while a producer runs each get every event once, in
// order (one cut off for falling behind resumes with its id, as a browser
// does).
func TestKafkaSeamUnderPublishing(t *testing.T) {
	e := startKafkaStream(t, "seam", 1, func(c *Config) {
		c.MaxPending = 49
		c.WindowEvents = 50
	})
	live := subscribe(t, e.url, nil)
	for i := 1; i <= 100; i += 10 {
		e.produce(t, 1, seqNums(i, i+9)...)
		live.take(t, 10)
	}
	const total = 600
	ctx, cancel := context.WithCancel(context.Background())
	var readers []*seqReader
	afters := []int{1, 3, 5, 7, 9, 40, 49, 50, 51, 60, 90}
	opened := make(chan struct{}, len(afters))
	tag := topicTag(e.topic)
	for _, after := range afters {
		// Data n is at offset n-1: after it, the next offset is n.
		r := &seqReader{url: e.url, resume: true, want: total, last: after,
			lastID: encodeToken(tag, position{0: int64(after)}), finished: make(chan struct{})}
		readers = append(readers, r)
		go r.run(ctx, http.DefaultClient, opened)
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range readers {
			<-r.finished
		}
	})
	for i := 101; i <= total; i += 5 {
		e.produce(t, 1, seqNums(i, i+4)...)
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
	if n := e.backend().catchUps.Load(); n == 0 {
		t.Errorf("no catch-up: the test proves nothing about the seam")
	}
}

// seqNums are the data "from".."to".
func seqNums(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// A slow subscriber of a Kafka stream's tail is cut off; the fast ones
// get every event and never wait for it.
func TestKafkaSlowSubscriberAmongFastOnes(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"slow": 1})
	const path = "/kafka/slow"
	cfg := kafkaCfg(path, "slow", "")
	cfg.MaxPending = 8
	_, hs := startSmallBufferServer(t, []Config{cfg}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	w := kafkaWriter(t, k.Addr(), "slow")
	slowAmongFast(t, hs.URL, path, cfg.MaxPending, func(ds ...string) {
		msgs := make([]kafka.Message, 0, len(ds))
		for _, d := range ds {
			msgs = append(msgs, kafkaMsg(0, "", d, time.Time{}))
		}
		produce(t, w, msgs...)
	})
}

// A topic deleted and recreated while several subscribers share its tail
// ends every one of them (the tail's readers would go on at the old
// offsets in the new log); each resumes with the id it holds and gets the
// new topic from its first message, once, in order per partition.
func TestKafkaRecreatedUnderSharedTail(t *testing.T) {
	t.Parallel()
	const parts = 2
	e := startKafkaStream(t, "retail", parts, nil)
	a := subscribe(t, e.url, nil)
	publishRound(t, e.addr, e.topic, parts, 6, "old")
	oldA := a.take(t, parts*6)
	b := subscribe(t, e.url, map[string]string{"Last-Event-ID": oldA[3].ID}) // inside the window
	oldB := b.take(t, parts*6-4)

	deleteTopic(t, e.addr, e.topic)
	createTopic(t, e.addr, e.topic, parts)
	want := publishRound(t, e.addr, e.topic, parts, 3, "new")
	for name, c := range map[string]*sseClient{"a": a, "b": b} {
		if extra, _ := c.endedWithin(t, kafkaRecreateWithin); len(extra) > 0 {
			t.Fatalf("subscriber %s got %v from the new topic under old-topic ids", name, extra)
		}
	}
	for name, last := range map[string]string{"a": oldA[len(oldA)-1].ID, "b": oldB[len(oldB)-1].ID} {
		c := subscribe(t, e.url, map[string]string{"Last-Event-ID": last})
		if g := byPartition(c.take(t, parts*3)); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("subscriber %s resumed with %v, want every message of the new topic %v", name, g, want)
		}
		c.close()
	}
}
