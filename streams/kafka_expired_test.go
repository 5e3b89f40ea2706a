package streams

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// recordedLog keeps every log record a server writes, so a test can check
// that a condition the operator must hear about was logged.
type recordedLog struct {
	mu      sync.Mutex
	records []string
}

func (l *recordedLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *recordedLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, b.String())
	return nil
}

func (l *recordedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordedLog) WithGroup(string) slog.Handler      { return l }

func (l *recordedLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// deleteRecordsBelow asks the broker, as an operator's retention or an
// explicit kafka-delete-records would, to drop every record of topic below
// cut[p] in each partition p, and checks that the broker now starts each
// partition exactly there.
func deleteRecordsBelow(t *testing.T, addr, topic string, cut position) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatalf("franz-go client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = int32(waitLong / time.Millisecond)
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	for p, off := range cut {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Partition = int32(p)
		rp.Offset = off
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	done := position{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("DeleteRecords %s/%d: %v", rt.Topic, rp.Partition, err)
			}
			done[int(rp.Partition)] = rp.LowWatermark
		}
	}
	if fmt.Sprint(done) != fmt.Sprint(cut) {
		t.Fatalf("DeleteRecords left the partitions starting at %v, want %v", done, cut)
	}
}

// TestKafkaResumeOlderThanRetainedStartsAtEarliest is issue 7's rule end
// to end: a client resuming with a Last-Event-ID whose offsets the broker
// no longer retains gets, at once and without error, every partition from
// its first retained message, nothing older, and the expired resume is
// counted and logged.
func TestKafkaResumeOlderThanRetainedStartsAtEarliest(t *testing.T) {
	const (
		topic   = "expiring"
		path    = "/kafka/expiring"
		parts   = 3
		perPart = 8
	)
	k := testbroker.StartKafka(t, map[string]int32{topic: parts})
	w := kafkaWriter(t, k.Addr(), topic)
	// One write for everything: each partition's messages land in one
	// batch, so the deletions below cut through the middle of a batch and
	// the broker still serves its older records, which the stream must
	// drop rather than deliver.
	var msgs []kafka.Message
	for i := range perPart {
		for p := range parts {
			msgs = append(msgs, kafkaMsg(p, "edit", fmt.Sprintf("p%d-%02d", p, i), time.Time{}))
		}
	}
	produce(t, w, msgs...)

	rec := &recordedLog{}
	_, hs := startServer(t, []Config{kafkaCfg(path, topic, "earliest")},
		Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}, Logger: slog.New(rec)})

	c := subscribe(t, hs.URL+path, nil)
	seen := c.take(t, 3)
	c.close()
	lastID := seen[len(seen)-1].ID
	resume, err := decodeToken(lastID, topicTag(topic))
	if err != nil {
		t.Fatalf("Last-Event-ID %q: %v", lastID, err)
	}

	// Three events moved the token to at most offset 3 in any partition;
	// every cut lies beyond that, and differs per partition so that a
	// stream starting all partitions at one offset cannot pass.
	cut := position{0: 4, 1: 5, 2: 6}
	for p := range parts {
		if resume[p] >= cut[p] {
			t.Fatalf("token %v already at or past the cut %v", resume, cut)
		}
	}
	deleteRecordsBelow(t, k.Addr(), topic, cut)

	expiredBefore := metricValue(t, metrics.ResumeTooOld.WithLabelValues(path))
	// The client's Timeout bounds the response headers as well as the
	// body: a server waiting for a position that will never come fails
	// the test instead of hanging it.
	hc := &http.Client{Timeout: waitLong}
	c2 := subscribeWith(t, hc, hs.URL+path, map[string]string{"Last-Event-ID": lastID})

	want := map[string][]string{}
	n := 0
	for p := range parts {
		for i := cut[p]; i < perPart; i++ {
			want[fmt.Sprintf("p%d", p)] = append(want[fmt.Sprintf("p%d", p)], fmt.Sprintf("p%d-%02d", p, i))
			n++
		}
	}
	got := c2.take(t, n)
	if g := byPartition(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("resumed with an expired token, received %v\nwant each partition from its first retained offset %v: %v", g, cut, want)
	}
	// The ids keep counting from the retained offsets, so a later resume
	// from them is exact.
	end, err := decodeToken(got[len(got)-1].ID, topicTag(topic))
	if err != nil || fmt.Sprint(end) != fmt.Sprint(position{0: perPart, 1: perPart, 2: perPart}) {
		t.Fatalf("last resumed id decodes to %v (%v), want every partition at %d", end, err, perPart)
	}

	// Nothing older trails behind: the next event of every partition is
	// one published now.
	produce(t, w, kafkaMsg(0, "edit", "p0-live", time.Time{}), kafkaMsg(1, "edit", "p1-live", time.Time{}), kafkaMsg(2, "edit", "p2-live", time.Time{}))
	live := datas(c2.take(t, parts))
	slices.Sort(live)
	if !slices.Equal(live, []string{"p0-live", "p1-live", "p2-live"}) {
		t.Fatalf("after the retained events got %v, want one live event per partition", live)
	}

	if d := metricValue(t, metrics.ResumeTooOld.WithLabelValues(path)) - expiredBefore; d != 1 {
		t.Errorf("%s grew by %v for one expired resume, want 1", "stream_resume_expired_total", d)
	}
	var logged bool
	for _, l := range rec.lines() {
		if strings.HasPrefix(l, "WARN ") && strings.Contains(l, "no longer retained") && strings.Contains(l, "stream="+path) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no warning about the expired resume of %s in the log: %q", path, rec.lines())
	}
}
