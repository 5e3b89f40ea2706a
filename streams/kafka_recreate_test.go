package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// kafkaRecreateWithin bounds how long a connected client may be left on a
// topic that was deleted and recreated. The watcher polls every
// kafkaWatchEvery; the margin is for a loaded machine under -race. It tells
// "ended promptly" from "left hanging on heartbeats", it does not time the
// watcher.
const kafkaRecreateWithin = 15 * time.Second

// kafkaAdmin sends one admin request to the broker at addr through
// franz-go, as an operator's tool would.
func kafkaAdmin(t *testing.T, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatalf("franz-go client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return resp
}

// deleteTopic deletes topic, as kafka-topics --delete does.
func deleteTopic(t *testing.T, addr, topic string) {
	t.Helper()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = int32(waitLong / time.Millisecond)
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.TopicNames = append(req.TopicNames, topic)
	resp := kafkaAdmin(t, addr, req).(*kmsg.DeleteTopicsResponse)
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("delete topic %s: %v", topic, err)
		}
	}
}

// createTopic creates topic with parts partitions, as kafka-topics
// --create does.
func createTopic(t *testing.T, addr, topic string, parts int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(waitLong / time.Millisecond)
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = parts
	rt.ReplicationFactor = 1
	req.Topics = append(req.Topics, rt)
	resp := kafkaAdmin(t, addr, req).(*kmsg.CreateTopicsResponse)
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
}

// publishRound produces n messages to every partition, named
// p<partition>-<prefix><i>, through a fresh writer (one that never saw an
// earlier incarnation of the topic), and returns them per partition.
func publishRound(t *testing.T, addr, topic string, parts, n int, prefix string) map[string][]string {
	t.Helper()
	w := kafkaWriter(t, addr, topic)
	want := map[string][]string{}
	var msgs []kafka.Message
	for i := range n {
		for p := range parts {
			d := fmt.Sprintf("p%d-%s%02d", p, prefix, i)
			want[fmt.Sprintf("p%d", p)] = append(want[fmt.Sprintf("p%d", p)], d)
			msgs = append(msgs, kafkaMsg(p, "edit", d, time.Time{}))
		}
	}
	produce(t, w, msgs...)
	return want
}

// A client connected while its topic is deleted and recreated must not be
// left waiting for its old offsets in the new log, nor be given the new
// log's messages from there on: its response ends, and its reconnect with
// the last id it holds gets every message of the new topic, once and in
// order per partition.
func TestKafkaRecreatedTopicEndsConnectedClient(t *testing.T) {
	// Parallel: it mostly waits on the broker and the watch; its
	// topic, path and log are its own.
	t.Parallel()
	const (
		topic = "recreated"
		path  = "/kafka/recreated"
		parts = 2
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: parts})
	publishRound(t, k.Addr(), topic, parts, 6, "old")
	_, hs := startServer(t, []Config{kafkaCfg(path, topic, "earliest")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})

	c := subscribe(t, hs.URL+path, nil)
	old := c.take(t, parts*6)
	last := old[len(old)-1].ID

	deleteTopic(t, k.Addr(), topic)
	createTopic(t, k.Addr(), topic, parts)
	recreated := time.Now()
	// Fewer messages than the old log had: the client's position lies
	// beyond the new end, where today's reader waits.
	want := publishRound(t, k.Addr(), topic, parts, 3, "new")

	extra, took := c.endedWithin(t, kafkaRecreateWithin)
	t.Logf("response ended %v after the recreation (%v after the new messages)", time.Since(recreated), took)
	if len(extra) > 0 {
		t.Fatalf("the old response delivered %v from the new topic under old-topic ids", extra)
	}

	c2 := subscribe(t, hs.URL+path, map[string]string{"Last-Event-ID": last})
	got := c2.take(t, parts*3)
	if g := byPartition(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("reconnect with %q got %v, want every message of the new topic %v", last, g, want)
	}
	end, err := decodeToken(got[len(got)-1].ID, topicTag(topic))
	if err != nil || fmt.Sprint(end) != fmt.Sprint(position{0: 3, 1: 3}) {
		t.Fatalf("last id decodes to %v (%v), want every partition at 3", end, err)
	}
	// Nothing repeated: the next event is the next message.
	produce(t, kafkaWriter(t, k.Addr(), topic), kafkaMsg(1, "edit", "marker", time.Time{}))
	if d := string(c2.next(t).Data); d != "marker" {
		t.Fatalf("after the new topic's messages got %q, want marker", d)
	}
}

// While the topic is missing (deleted, not recreated yet) the client keeps
// its response and heartbeats, rather than being ended into a 503, which
// would end an EventSource for good; once the topic is back its response
// ends and the reconnect gets the new topic from its first message.
func TestKafkaMissingTopicKeepsClientUntilRecreated(t *testing.T) {
	t.Parallel()
	const (
		topic = "missing"
		path  = "/kafka/missing"
		parts = 2
	)
	// testbroker's kfake creates a topic on a metadata request, as
	// brokers with auto.create.topics.enable do: there, the readers'
	// look-up brings the deleted topic back at once (with the default
	// partition count), which ends the response as a recreation. Here
	// the topic stays missing until it is created.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, topic))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	addr := cluster.ListenAddrs()[0]
	publishRound(t, addr, topic, parts, 4, "old")
	rec := &recordedLog{}
	cfg := kafkaCfg(path, topic, "earliest")
	cfg.Heartbeat = time.Duration(50 * time.Millisecond)
	_, hs := startServer(t, []Config{cfg},
		Deps{Kafka: KafkaCluster{Brokers: []string{addr}}, Logger: slog.New(rec)})

	c := subscribe(t, hs.URL+path, nil)
	last := c.take(t, parts*4)[parts*4-1].ID
	deleteTopic(t, addr, topic)

	// Wait until the watch has found the topic missing, and kafka-go's
	// readers have been through more than their MaxAttempts (about 0.7 s
	// of backoff) looking for it.
	deleted := time.Now()
	deadline := deleted.Add(waitLong)
	for !logged(rec, "DEBUG Kafka topic missing") || time.Since(deleted) < 1500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not find the topic missing within %s: %q", waitLong, rec.lines())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Heartbeats still come after that, on the same response.
	for len(c.comments) > 0 {
		<-c.comments
	}
	for range 2 {
		select {
		case <-c.comments:
		case <-c.done:
			t.Fatalf("response ended while the topic was missing: %v", c.readErr())
		case <-time.After(waitLong):
			t.Fatal("no heartbeat while the topic was missing")
		}
	}

	createTopic(t, addr, topic, parts)
	want := publishRound(t, addr, topic, parts, 2, "new")
	extra, took := c.endedWithin(t, kafkaRecreateWithin)
	t.Logf("response ended %v after the new messages", took)
	if len(extra) > 0 {
		t.Fatalf("the old response delivered %v from the new topic", extra)
	}
	c2 := subscribe(t, hs.URL+path, map[string]string{"Last-Event-ID": last})
	if g := byPartition(c2.take(t, parts*2)); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("reconnect with %q got %v, want %v", last, g, want)
	}
}

// logged reports whether some record of rec starts with prefix.
func logged(rec *recordedLog, prefix string) bool {
	for _, l := range rec.lines() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// A client reconnecting with a valid token whose offset lies beyond a
// partition's end (the topic was recreated or truncated since) is not at
// fault: every partition starts at its earliest offset (in a recreated
// topic the other positions name old messages too), the resume is counted
// and logged, and the answer is 200, not a 400 that would end an
// EventSource for good.
func TestKafkaResumeBeyondEndStartsAtEarliest(t *testing.T) {
	t.Parallel()
	const (
		topic = "shorter"
		path  = "/kafka/shorter"
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: 2})
	want := publishRound(t, k.Addr(), topic, 2, 3, "e")
	rec := &recordedLog{}
	_, hs := startServer(t, []Config{kafkaCfg(path, topic, "")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}, Logger: slog.New(rec)})

	before := metricValue(t, metrics.ResumeTooOld.WithLabelValues(path))
	// Partition 0 beyond its end (3), partition 1 within it.
	tok := encodeToken(topicTag(topic), position{0: 40, 1: 1})
	c := subscribe(t, hs.URL+path, map[string]string{"Last-Event-ID": tok})
	got := byPartition(c.take(t, 3+3))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resume from %v got %v, want both partitions from their start: %v", position{0: 40, 1: 1}, got, want)
	}
	if d := metricValue(t, metrics.ResumeTooOld.WithLabelValues(path)) - before; d != 1 {
		t.Errorf("stream_resume_expired_total grew by %v, want 1", d)
	}
	if !logged(rec, "WARN resume position beyond the end") || !strings.Contains(strings.Join(rec.lines(), "\n"), "recreated or truncated?") {
		t.Errorf("no warning about the resume beyond the end: %q", rec.lines())
	}
	// Ids go on from the new start, so the next resume is exact.
	produce(t, kafkaWriter(t, k.Addr(), topic), kafkaMsg(0, "edit", "p0-live", time.Time{}))
	if d := string(c.next(t).Data); d != "p0-live" {
		t.Fatalf("got %q, want p0-live", d)
	}
}

// The watch on its own, against a real broker: one look-up ends the
// subscribers whose sent position lies beyond a partition's end or whose
// partitions differ from the topic's, and no other; a missing topic ends
// nobody. (End to end, kfake makes the readers see a deleted topic first;
// the watch is what catches a log that shrank under a reader that never
// reconnected, as after an unclean leader election.)
func TestKafkaWatchEndsSubscribersBeyondTheEnd(t *testing.T) {
	const topic = "watched"
	k := testbroker.StartKafka(t, map[string]int32{topic: 2})
	publishRound(t, k.Addr(), topic, 2, 3, "e") // both partitions end at 3
	shared, err := newKafkaShared(KafkaCluster{Brokers: []string{k.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shared.close)
	rec := &recordedLog{}
	b := newKafkaBackend(shared, kafkaCfg("/kafka/watched", topic, ""), slog.New(rec))
	b.watch.every = time.Hour // only the explicit look-ups below
	t.Cleanup(b.close)

	sub := func(pos position) *kafkaSub {
		s := &kafkaSub{sub: newSubscriber(1, nil), cur: newOffsetCursor(b.tag, pos)}
		b.watch.add(s)
		t.Cleanup(func() { b.watch.remove(s) })
		return s
	}
	atEnd := sub(position{0: 3, 1: 3})
	within := sub(position{0: 0, 1: 2})
	beyond := sub(position{0: 3, 1: 4})
	fewer := sub(position{0: 3})
	// A cursor advanced past the end by a message sent counts too.
	advanced := sub(position{0: 3, 1: 3})
	advanced.cur.advance(&message{partition: 0, offset: 3})

	b.checkSubs(context.Background())
	for name, s := range map[string]*kafkaSub{"at the end": atEnd, "within": within} {
		if err := s.sub.reason(); err != nil {
			t.Errorf("subscriber %s ended: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		s    *kafkaSub
		want error
	}{
		"beyond":           {beyond, errLogBelow},
		"advanced beyond":  {advanced, errLogBelow},
		"other partitions": {fewer, errPartitionsChanged},
	} {
		if err := tc.s.sub.reason(); !errors.Is(err, tc.want) {
			t.Errorf("subscriber %s ended with %v, want %v", name, err, tc.want)
		}
	}
	if !logged(rec, "WARN Kafka topic recreated or truncated?") {
		t.Errorf("no warning about the ended subscribers: %q", rec.lines())
	}

	deleteTopic(t, k.Addr(), topic)
	missing := sub(position{0: 3, 1: 3})
	b.checkSubs(context.Background())
	if err := missing.sub.reason(); err != nil {
		t.Errorf("a subscriber of a missing topic was ended: %v", err)
	}
}

// The watch runs only while the stream has subscribers (or its tail
// lingers after them): it starts with the first and its goroutine is gone
// once the last has left and the tail stopped.
func TestKafkaWatchRunsOnlyWithSubscribers(t *testing.T) {
	const (
		topic = "quiet"
		path  = "/kafka/quiet"
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: 1})
	srv, hs := startServer(t, []Config{kafkaCfg(path, topic, "")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	srv.streams[path].backend.(*kafkaBackend).setLinger(0)
	const watchFn = "streams.(*memberWatch[" // only Kafka streams here
	if n := goroutinesIn(watchFn); n != 0 {
		t.Fatalf("%d watch goroutines before any subscriber", n)
	}
	c1 := subscribe(t, hs.URL+path, nil)
	c2 := subscribe(t, hs.URL+path, nil)
	if n := goroutinesIn(watchFn); n != 1 {
		t.Fatalf("%d watch goroutines for two subscribers, want 1", n)
	}
	c1.close()
	c2.close()
	testbroker.WaitGoroutinesGone(t, watchFn)
}

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var n int
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// A connected client's readers cover the partitions the topic had when it
// subscribed: partitions added since would never be read. Its response
// ends, and the reconnect reads the new partition from its first message
// and the old ones exactly where they were.
func TestKafkaAddedPartitionEndsConnectedClient(t *testing.T) {
	t.Parallel()
	const (
		topic = "growing"
		path  = "/kafka/growing"
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: 1})
	_, hs := startServer(t, []Config{kafkaCfg(path, topic, "")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	c := subscribe(t, hs.URL+path, nil)
	produce(t, kafkaWriter(t, k.Addr(), topic), kafkaMsg(0, "edit", "p0-a", time.Time{}))
	last := c.next(t).ID

	req := kmsg.NewPtrCreatePartitionsRequest()
	req.TimeoutMillis = int32(waitLong / time.Millisecond)
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic = topic
	rt.Count = 2
	req.Topics = append(req.Topics, rt)
	for _, r := range kafkaAdmin(t, k.Addr(), req).(*kmsg.CreatePartitionsResponse).Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("create partitions: %v", err)
		}
	}
	// A fresh writer sees both partitions.
	produce(t, kafkaWriter(t, k.Addr(), topic), kafkaMsg(1, "edit", "p1-a", time.Time{}), kafkaMsg(0, "edit", "p0-b", time.Time{}))

	added := time.Now()
	extra := c.ended(t)
	t.Logf("response ended %v after the partition was added", time.Since(added))
	// Partition 0's reader may deliver p0-b before the end; the client
	// then resumes after it.
	want := map[string][]string{"p0": {"p0-b"}, "p1": {"p1-a"}}
	switch {
	case len(extra) == 0:
	case len(extra) == 1 && string(extra[0].Data) == "p0-b":
		last = extra[0].ID
		want = map[string][]string{"p1": {"p1-a"}}
	default:
		t.Fatalf("before its end the response delivered %v, want at most p0-b", datas(extra))
	}
	c2 := subscribe(t, hs.URL+path, map[string]string{"Last-Event-ID": last})
	n := len(want["p0"]) + len(want["p1"])
	if got := byPartition(c2.take(t, n)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reconnect got %v, want %v", got, want)
	}
	// Nothing repeated.
	produce(t, kafkaWriter(t, k.Addr(), topic), kafkaMsg(1, "edit", "p1-b", time.Time{}))
	if d := string(c2.next(t).Data); d != "p1-b" {
		t.Fatalf("after the resumed events got %q, want p1-b", d)
	}
}

// A topic the broker serves but the bridge's metadata cache does not know
// yet (just created, or recreated, which is when ended clients reconnect)
// is waited for rather than answered 503, which would end an EventSource
// for good.
func TestKafkaTopicCreatedJustNowIsServed(t *testing.T) {
	t.Parallel()
	k := testbroker.StartKafka(t, map[string]int32{"known": 1})
	_, hs := startServer(t, []Config{kafkaCfg("/kafka/known", "known", ""), kafkaCfg("/kafka/fresh", "fresh", "")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})
	// The first subscriber fills the cache, which then lacks "fresh".
	subscribe(t, hs.URL+"/kafka/known", nil)
	createTopic(t, k.Addr(), "fresh", 1)
	c := subscribe(t, hs.URL+"/kafka/fresh", nil)
	produce(t, kafkaWriter(t, k.Addr(), "fresh"), kafkaMsg(0, "edit", "first", time.Time{}))
	if d := string(c.next(t).Data); d != "first" {
		t.Fatalf("got %q, want first", d)
	}
}
