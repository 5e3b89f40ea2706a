package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// reader reads whole topics (every partition) from the beginning, keeping
// its position per topic across calls.
type reader struct {
	addr    string
	readers map[string][]*kafka.Reader
}

func newReader(t *testing.T, addr string) *reader {
	r := &reader{addr: addr, readers: map[string][]*kafka.Reader{}}
	t.Cleanup(func() {
		for _, rs := range r.readers {
			for _, rd := range rs {
				rd.Close()
			}
		}
	})
	return r
}

func header(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, kv := range m.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// partitions reads n messages from one partition.
func (r *reader) partition(t *testing.T, topic string, p, n int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	for len(r.readers[topic]) <= p {
		r.readers[topic] = append(r.readers[topic], nil)
	}
	rd := r.readers[topic][p]
	if rd == nil {
		rd = kafka.NewReader(kafka.ReaderConfig{Brokers: []string{r.addr}, Topic: topic, Partition: p,
			MaxWait: 20 * time.Millisecond, MaxBytes: 8 << 20})
		r.readers[topic][p] = rd
	}
	var out []kafka.Message
	for len(out) < n {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s/%d: %d of %d messages: %v", topic, p, len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// Read implements sinktest.Target.Read for single-partition topics.
func (r *reader) Read(t *testing.T, dest string, n int) []sinktest.Received {
	var out []sinktest.Received
	for _, m := range r.partition(t, dest, 0, n) {
		out = append(out, sinktest.Received{Dest: m.Topic, Data: m.Value, Headers: header(m)})
	}
	return out
}

func open(t testing.TB, addr, pipeline string, cfg kafkasink.Options) *kafkasink.Sink {
	t.Helper()
	s, err := kafkasink.New(context.Background(), kafkaconn.Config{Brokers: []string{addr}}, pipeline, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		k := testbroker.StartKafka(t, nil)
		r := newReader(t, k.Addr())
		return sinktest.Target{
			Kind: kafkasink.Kind,
			Open: func(t *testing.T, pipeline, dest, fallback string) sinks.Sink {
				s, err := sinks.Open(context.Background(), sinks.Deps{Kafka: kafkaconn.Config{Brokers: []string{k.Addr()}}}, pipeline, kafkasink.Kind,
					sinktest.Block(t, kafkasink.Options{Topic: dest, FallbackTopic: fallback, CreateTopic: &kafkasink.TopicOptions{Partitions: 1}}))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Read: r.Read,
			Stop: func(t *testing.T) { k.Close() },
		}
	})
}

func writeAll(t *testing.T, s sinks.Sink, msgs []sinks.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	if n, err := s.Write(ctx, msgs); n != len(msgs) || err != nil {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(msgs))
	}
}

func partitionCounts(t *testing.T, addr, topic string) []int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{}}
	defer c.Transport.(*kafka.Transport).CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata %s: %v %+v", topic, err, md)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range md.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int64, len(md.Topics[0].Partitions))
	for _, po := range res.Topics[topic] {
		counts[po.Partition] = po.LastOffset
	}
	return counts
}

// TestKeylessKeepsOrderInOnePartition: without a key template a pipeline's
// events share one partition of a multi-partition topic, in order.
func TestKeylessKeepsOrderInOnePartition(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"feed": 4})
	for _, pipeline := range []string{"alpha", "beta", "gamma"} {
		s := open(t, k.Addr(), pipeline, kafkasink.Options{Topic: "feed"})
		var batch []sinks.Message
		for i := 0; i < 40; i++ {
			batch = append(batch, sinktest.Msg(pipeline, fmt.Sprint(i), "message", []byte(fmt.Sprintf("%s-%02d", pipeline, i))))
			if len(batch) == 7 || i == 39 { // several writes of odd sizes
				writeAll(t, s, batch)
				batch = nil
			}
		}
	}
	counts := partitionCounts(t, k.Addr(), "feed")
	r := newReader(t, k.Addr())
	seen := map[string][]string{}
	for p, c := range counts {
		for _, m := range r.partition(t, "feed", p, int(c)) {
			src := header(m)[sinks.HeaderSource]
			seen[src] = append(seen[src], fmt.Sprintf("%d:%s", p, m.Value))
			if m.Key != nil {
				t.Fatalf("keyless pipeline wrote key %q", m.Key)
			}
		}
	}
	for _, pipeline := range []string{"alpha", "beta", "gamma"} {
		got := seen[pipeline]
		if len(got) != 40 {
			t.Fatalf("%s: %d messages", pipeline, len(got))
		}
		part := got[0][:1]
		for i, v := range got {
			if want := fmt.Sprintf("%s:%s-%02d", part, pipeline, i); v != want {
				t.Fatalf("%s message %d = %s, want %s (one partition, in order)", pipeline, i, v, want)
			}
		}
	}
}

// TestKeyTemplateSpreads: a key template partitions by key; each key stays
// in order within its partition.
func TestKeyTemplateSpreads(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"keyed": 4})
	s := open(t, k.Addr(), "p", kafkasink.Options{Topic: "keyed", Key: "{data.user}"})
	var batch []sinks.Message
	for i := 0; i < 80; i++ {
		batch = append(batch, sinktest.Msg("p", fmt.Sprint(i), "message", []byte(fmt.Sprintf(`{"user":"u%d","seq":%d}`, i%8, i))))
	}
	batch = append(batch, sinktest.Msg("p", "x", "message", []byte(`{"nouser":1}`))) // key missing: still delivered
	writeAll(t, s, batch)
	counts := partitionCounts(t, k.Addr(), "keyed")
	r := newReader(t, k.Addr())
	used, total := 0, 0
	keyPart := map[string]int{}
	lastSeq := map[string]int{}
	for p, c := range counts {
		if c > 0 {
			used++
		}
		for _, m := range r.partition(t, "keyed", p, int(c)) {
			total++
			key := string(m.Key)
			if prev, ok := keyPart[key]; ok && prev != p {
				t.Fatalf("key %q in partitions %d and %d", key, prev, p)
			}
			keyPart[key] = p
			var v struct{ Seq int }
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatal(err)
			}
			if prev, ok := lastSeq[key]; ok && key != "" && v.Seq <= prev {
				t.Fatalf("key %q out of order: %d after %d", key, v.Seq, prev)
			}
			lastSeq[key] = v.Seq
		}
	}
	if total != 81 {
		t.Fatalf("%d messages, want 81", total)
	}
	if used < 2 {
		t.Fatalf("8 keys landed in %d partition(s) of 4", used)
	}
}

func TestCreateTopicAndCompression(t *testing.T) {
	k := testbroker.StartKafka(t, nil)
	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		topic := "made-" + codec
		s := open(t, k.Addr(), "p", kafkasink.Options{Topic: topic, Compression: codec, CreateTopic: &kafkasink.TopicOptions{Partitions: 3, ReplicationFactor: 1}})
		if n := len(partitionCounts(t, k.Addr(), topic)); n != 3 {
			t.Fatalf("%s: created with %d partitions, want 3", topic, n)
		}
		payload := []byte(codec + " compressed payload, compressible compressible compressible")
		writeAll(t, s, []sinks.Message{sinktest.Msg("p", "1", "message", payload)})
		r := newReader(t, k.Addr())
		var found bool
		for p, c := range partitionCounts(t, k.Addr(), topic) {
			for _, m := range r.partition(t, topic, p, int(c)) {
				found = found || string(m.Value) == string(payload)
			}
		}
		if !found {
			t.Fatalf("%s: payload not read back", codec)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	cluster := kafkaconn.Config{Brokers: []string{"127.0.0.1:1"}}
	for name, cfg := range map[string]kafkasink.Options{
		"acks":        {Topic: "t", RequiredAcks: "some"},
		"compression": {Topic: "t", Compression: "brotli"},
		"topic":       {Topic: "bad/topic"},
		"key":         {Topic: "t", Key: "{nope}"},
		"empty topic": {},
	} {
		if s, err := kafkasink.New(ctx, cluster, "p", cfg, nil); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := kafkasink.New(ctx, kafkaconn.Config{}, "p", kafkasink.Options{Topic: "t"}, nil); !errors.Is(err, kafkasink.ErrNoBrokers) {
		t.Errorf("no brokers: %v", err)
	}
	if _, err := kafkasink.New(ctx, kafkaconn.Config{Brokers: []string{"x:1"}, SASL: &kafkaconn.SASL{Mechanism: "x"}}, "p", kafkasink.Options{Topic: "t"}, nil); !errors.Is(err, kafkaconn.ErrMechanism) {
		t.Errorf("bad SASL: %v", err)
	}
}

// TestAckedPrefix: the broker refuses one topic's batch; Write reports
// exactly the messages before the first refused one.
func TestAckedPrefix(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"good": 1, "refused": 1})
	k.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster().KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if len(pr.Topics) != 1 || pr.Topics[0].Topic != "refused" {
			return nil, nil, false
		}
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = "refused"
		for _, p := range pr.Topics[0].Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = 29 // TOPIC_AUTHORIZATION_FAILED: permanent
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	s := open(t, k.Addr(), "p", kafkasink.Options{Topic: "{data.t}"})
	batch := []sinks.Message{
		sinktest.Msg("p", "1", "message", []byte(`{"t":"good"}`)),
		sinktest.Msg("p", "2", "message", []byte(`not json: skipped, counted`)),
		sinktest.Msg("p", "3", "message", []byte(`{"t":"good"}`)),
		sinktest.Msg("p", "4", "message", []byte(`{"t":"refused"}`)),
		sinktest.Msg("p", "5", "message", []byte(`{"t":"good"}`)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	n, err := s.Write(ctx, batch)
	if n != 3 || err == nil {
		t.Fatalf("Write = %d, %v; want 3 (two acked, one skipped) and an error", n, err)
	}
	if errors.Is(err, sinks.ErrNotConnected) || !strings.Contains(err.Error(), `"refused"`) {
		t.Errorf("error %q: want a permanent error naming the topic", err)
	}
	if got := partitionCounts(t, k.Addr(), "good"); got[0] < 2 {
		t.Errorf("good holds %d messages", got[0])
	}
}

// TestOversizedEventSkipped: an event above the Kafka message limit can
// never be produced; it is counted and skipped, not retried forever.
func TestOversizedEventSkipped(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"big": 1})
	s := open(t, k.Addr(), "big", kafkasink.Options{Topic: "big"})
	tooLarge := metrics.EventsFailed.WithLabelValues("big", "too_large")
	before := sinktest.CounterValue(tooLarge)
	writeAll(t, s, []sinks.Message{
		sinktest.Msg("big", "1", "message", []byte("small")),
		sinktest.Msg("big", "2", "message", make([]byte, kafkasink.MaxMessageBytes+1)),
		sinktest.Msg("big", "3", "message", []byte("small again")),
	})
	got := newReader(t, k.Addr()).Read(t, "big", 2)
	if string(got[0].Data) != "small" || string(got[1].Data) != "small again" {
		t.Fatalf("got %q, %q", got[0].Data, got[1].Data)
	}
	if d := sinktest.CounterValue(tooLarge) - before; d != 1 {
		t.Fatalf("too_large grew by %v, want 1", d)
	}
}

// TestSASLCluster: the sink authenticates with the cluster's SASL settings.
func TestSASLCluster(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"secure": 1}, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "bridge", "s3cret"))
	cluster := kafkaconn.Config{Brokers: []string{k.Addr()}, SASL: &kafkaconn.SASL{Mechanism: kafkaconn.MechanismSCRAMSHA512, Username: "bridge", Password: "s3cret"}}
	s, err := sinks.Open(context.Background(), sinks.Deps{Kafka: cluster}, "sec", kafkasink.Kind, sinktest.Block(t, kafkasink.Options{Topic: "secure"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeAll(t, s, []sinks.Message{sinktest.Msg("sec", "1", "message", []byte("authenticated"))})
	d, err := kafkaconn.Dialer(cluster)
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cluster.Brokers, Topic: "secure", Dialer: d, MaxWait: 20 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil || string(m.Value) != "authenticated" {
		t.Fatalf("read %q, %v", m.Value, err)
	}

	// Wrong credentials: Write fails and counts nothing.
	bad := cluster
	bad.SASL = &kafkaconn.SASL{Mechanism: kafkaconn.MechanismSCRAMSHA512, Username: "bridge", Password: "wrong"}
	s2, err := kafkasink.New(context.Background(), bad, "sec-bad", kafkasink.Options{Topic: "secure"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if n, err := s2.Write(ctx2, []sinks.Message{sinktest.Msg("sec-bad", "1", "message", []byte("x"))}); n != 0 || err == nil {
		t.Fatalf("Write with a wrong password = %d, %v", n, err)
	}
}

// TestHeadersOfEveryMessage: the header values of a Write share one
// buffer, reused by the next Write; every stored record must still carry
// its own event's ID, type and time, across Writes of varying sizes with
// IDs and types of varying lengths (and some events without an ID).
func TestHeadersOfEveryMessage(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"hdrs": 1})
	s := open(t, k.Addr(), "hdr", kafkasink.Options{Topic: "hdrs"})
	base := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	var want []sinks.Message
	for w, size := range []int{3, 250, 1, 40} {
		batch := make([]sinks.Message, size)
		for i := range batch {
			n := len(want) + i
			id := strings.Repeat("i", n%13) + fmt.Sprint(n)
			if n%11 == 0 {
				id = ""
			}
			batch[i] = sinktest.Msg("hdr", id, strings.Repeat("t", 1+n%7), []byte(fmt.Sprint("v", n)))
			batch[i].ReceivedAt = base.Add(time.Duration(n) * time.Millisecond).In(time.FixedZone("X", (w-1)*3600))
		}
		writeAll(t, s, batch)
		want = append(want, batch...)
	}
	got := newReader(t, k.Addr()).partition(t, "hdrs", 0, len(want))
	for i, m := range got {
		h, w := header(m), want[i]
		if string(m.Value) != string(w.Event.Data) || h[sinks.HeaderEvent] != w.Event.Type || h[sinks.HeaderSource] != "hdr" ||
			h[sinks.HeaderReceivedAt] != w.ReceivedAt.Format(time.RFC3339Nano) {
			t.Fatalf("record %d: value %q headers %q, want event %+v at %s", i, m.Value, h, w.Event, w.ReceivedAt.Format(time.RFC3339Nano))
		}
		if id, ok := h[sinks.HeaderID]; ok != (w.Event.ID != "") || id != w.Event.ID {
			t.Fatalf("record %d: id header %q (present %v), want %q", i, id, ok, w.Event.ID)
		}
	}
}
