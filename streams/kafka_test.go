package streams

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

// keyPartition sends a message to the partition its key names, so a test
// decides where each message lands.
type keyPartition struct{}

func (keyPartition) Balance(msg kafka.Message, partitions ...int) int {
	p, _ := strconv.Atoi(string(msg.Key))
	return partitions[p%len(partitions)]
}

// kafkaWriter produces the way the Kafka sink does (SSE headers, acks from
// all replicas) through kafka-go, to a real kfake broker.
func kafkaWriter(t *testing.T, addr, topic string) *kafka.Writer {
	t.Helper()
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     keyPartition{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		Transport:    tr,
	}
	t.Cleanup(func() {
		w.Close()
		tr.CloseIdleConnections()
	})
	return w
}

func kafkaMsg(partition int, typ, data string, at time.Time) kafka.Message {
	return kafka.Message{
		Key:   []byte(strconv.Itoa(partition)),
		Value: []byte(data),
		Time:  at,
		Headers: []kafka.Header{
			{Key: sinks.HeaderEvent, Value: []byte(typ)},
			{Key: sinks.HeaderSource, Value: []byte("test")},
			{Key: sinks.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		},
	}
}

func produce(t *testing.T, w *kafka.Writer, msgs ...kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func kafkaCfg(path, topic, start string) Config {
	return Config{Path: path, Kafka: &KafkaConfig{Topic: topic, Start: start}}
}

// byPartition groups received data by the partition encoded in it ("pN-i").
func byPartition(evs []sse.Event) map[string][]string {
	out := map[string][]string{}
	for _, e := range evs {
		d := string(e.Data)
		p, _, _ := strings.Cut(d, "-")
		out[p] = append(out[p], d)
	}
	return out
}

func TestKafkaMultiPartitionResumeExactlyTheMissingEvents(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"edits": 3})
	w := kafkaWriter(t, k.Addr(), "edits")
	produce(t, w, kafkaMsg(0, "edit", "old-before-subscribe", time.Time{}))
	_, hs := startServer(t, []Config{kafkaCfg("/kafka/edits", "edits", "")}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})

	c := subscribe(t, hs.URL+"/kafka/edits", nil)
	var sent []string
	pub := func(from, to int) {
		var msgs []kafka.Message
		for i := from; i < to; i++ {
			d := fmt.Sprintf("p%d-%02d", i%3, i)
			sent = append(sent, d)
			msgs = append(msgs, kafkaMsg(i%3, "edit", d, time.Time{}))
		}
		produce(t, w, msgs...)
	}
	pub(0, 9)
	first := c.take(t, 5)
	for _, ev := range first {
		if ev.Type != "edit" || ev.ID == "" {
			t.Fatalf("event %+v: want type edit and a resume token", ev)
		}
	}
	c.close()
	pub(9, 12)

	c2 := subscribe(t, hs.URL+"/kafka/edits", map[string]string{"Last-Event-ID": first[4].ID})
	rest := c2.take(t, 7)
	all := append(slices.Clone(first), rest...)
	got := datas(all)
	slices.Sort(got)
	want := slices.Clone(sent)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("received %v, want each of %v exactly once", datas(all), sent)
	}
	// Within a partition, order is kept across the resume.
	for p, ds := range byPartition(all) {
		if !slices.IsSorted(ds) {
			t.Errorf("partition %s out of order: %v", p, ds)
		}
	}
	// Nothing is repeated after the missing events.
	produce(t, w, kafkaMsg(1, "edit", "marker", time.Time{}))
	if d := string(c2.next(t).Data); d != "marker" {
		t.Fatalf("after the resumed events got %q, want marker", d)
	}
}

func TestKafkaStartPositions(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"ticks": 2})
	w := kafkaWriter(t, k.Addr(), "ticks")
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	produce(t, w,
		kafkaMsg(0, "tick", "old0", old), kafkaMsg(1, "tick", "old1", old),
		kafkaMsg(0, "tick", "new0", time.Now()), kafkaMsg(1, "tick", "new1", time.Now()),
	)
	_, hs := startServer(t, []Config{
		kafkaCfg("/kafka/latest", "ticks", ""),
		kafkaCfg("/kafka/earliest", "ticks", "earliest"),
	}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})

	earliest := subscribe(t, hs.URL+"/kafka/earliest", nil)
	got := datas(earliest.take(t, 4))
	slices.Sort(got)
	if !slices.Equal(got, []string{"new0", "new1", "old0", "old1"}) {
		t.Fatalf("start: earliest got %v", got)
	}

	since := subscribe(t, hs.URL+"/kafka/latest?since=2024-06-01T00:00:00Z", nil)
	got = datas(since.take(t, 2))
	slices.Sort(got)
	if !slices.Equal(got, []string{"new0", "new1"}) {
		t.Fatalf("since= got %v", got)
	}

	latest := subscribe(t, hs.URL+"/kafka/latest", nil)
	produce(t, w, kafkaMsg(1, "tick", "live", time.Now()))
	if d := string(latest.next(t).Data); d != "live" {
		t.Fatalf("latest start got %q first, want live", d)
	}
}

func TestKafkaBadLastEventID(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"mine": 2, "theirs": 1})
	w := kafkaWriter(t, k.Addr(), "mine")
	produce(t, w, kafkaMsg(0, "", "a", time.Time{}), kafkaMsg(1, "", "b", time.Time{}))
	_, hs := startServer(t, []Config{kafkaCfg("/kafka/mine", "mine", "")}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})

	valid := encodeToken(topicTag("mine"), position{0: 1, 1: 1})
	damaged := []byte(valid)
	damaged[3] ^= 1
	for _, tc := range []struct{ id, wantMsg string }{
		{"42", "not a Kafka position token"},
		{"!!!", "bad encoding"},
		{string(damaged), "damaged"},
		{encodeToken(topicTag("theirs"), position{0: 0}), "another Kafka topic"},
	} {
		resp := get(t, hs.URL+"/kafka/mine", map[string]string{"Last-Event-ID": tc.id})
		body := readBody(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.wantMsg) {
			t.Errorf("Last-Event-ID %q: %s %q, want 400 mentioning %q", tc.id, resp.Status, body, tc.wantMsg)
		}
	}
	if resp := get(t, hs.URL+"/kafka/mine?subject=x", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("subject= on a Kafka stream: %s", resp.Status)
	}
	// The end position itself is valid: it waits for the next message.
	c := subscribe(t, hs.URL+"/kafka/mine", map[string]string{"Last-Event-ID": valid})
	produce(t, w, kafkaMsg(0, "", "c", time.Time{}))
	if d := string(c.next(t).Data); d != "c" {
		t.Fatalf("got %q, want c", d)
	}
}

func TestResumeFrom(t *testing.T) {
	parts := []int{0, 1, 2}
	first := position{0: 10, 1: 0, 2: 5}
	last := position{0: 20, 1: 7, 2: 5}
	for _, tc := range []struct {
		name        string
		resume      position
		want        position
		wantExpired bool
		wantBeyond  bool
	}{
		{"within", position{0: 15, 1: 7, 2: 5}, position{0: 15, 1: 7, 2: 5}, false, false},
		{"older than retained", position{0: 3, 1: 2, 2: 5}, position{0: 10, 1: 2, 2: 5}, true, false},
		{"partition added since", position{0: 12, 1: 1}, position{0: 12, 1: 1, 2: 5}, false, false},
		// Recreated or truncated: every partition starts at its
		// earliest offset, since the others' positions may belong to
		// the old topic too.
		{"beyond the end", position{0: 21, 1: 3, 2: 5}, position{0: 10, 1: 0, 2: 5}, false, true},
		{"beyond on one partition only", position{0: 15, 1: 3, 2: 6}, position{0: 10, 1: 0, 2: 5}, false, true},
		{"beyond and expired", position{0: 2, 1: 8, 2: 6}, position{0: 10, 1: 0, 2: 5}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, expired, beyond := resumeFrom(tc.resume, parts, first, last)
			if expired != tc.wantExpired || beyond != tc.wantBeyond {
				t.Errorf("expired, beyond = %v, %v, want %v, %v", expired, beyond, tc.wantExpired, tc.wantBeyond)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("start = %v, want %v", got, tc.want)
			}
		})
	}
}
