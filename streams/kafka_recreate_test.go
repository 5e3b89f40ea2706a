package streams

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/bridge/config"
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
	const (
		topic = "recreated"
		path  = "/kafka/recreated"
		parts = 2
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: parts})
	publishRound(t, k.Addr(), topic, parts, 6, "old")
	_, hs := startServer(t, []config.Stream{kafkaCfg(path, topic, "earliest")},
		Deps{Kafka: config.Kafka{Brokers: []string{k.Addr()}}})

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
