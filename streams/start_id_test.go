package streams

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sse"
)

// startID opens url without Last-Event-ID, reads the stream only up to its
// first blank line (the opening comment and the id-only record that should
// follow it, or up to a heartbeat if there is none), disconnects, and returns the last event ID an SSE client
// holds at that point: what it would send back on reconnect.
func startID(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	// Stop at the first blank line, or at a heartbeat: without a start
	// record the stream stays silent until then, and the tests set a short
	// heartbeat so that the failure shows at once.
	var prefix []byte
	br := bufio.NewReader(resp.Body)
	for n := 0; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("stream ended before its first blank line; read %q: %v", prefix, err)
		}
		prefix = append(prefix, line...)
		if len(line) == 1 || (n > 0 && line[0] == ':') {
			break
		}
	}
	cancel() // disconnect: the client has seen nothing else

	dec := sse.NewDecoder(bytes.NewReader(prefix))
	var comments []string
	dec.OnComment(func(text string) { comments = append(comments, text) })
	if ev, err := dec.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("the start record was dispatched as an event %+v (err %v); it must only set the id", ev, err)
	}
	if !slices.Equal(comments, []string{"ok"}) {
		t.Errorf("comments before the start id = %q, want the opening comment only", comments)
	}
	id := dec.LastEventID()
	if id == "" {
		t.Fatalf("no id before the first event (stream began %q): a client dropping now could not resume", prefix)
	}
	return id
}

// A client that drops before its first event resumes from the id record
// sent right after the opening comment and gets exactly what was published
// while it was away.
func TestJetStreamStartIDResumesWithoutGap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int    // messages already in the stream
		wantID uint64 // the sequence the start id names
	}{
		{"with history", 2, 2},
		{"empty stream", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startNATS(t)
			e.createStream(t, "GAP", "gap.>")
			for i := range tc.before {
				e.jsPublish(t, "gap.a", "tick", fmt.Sprint("old", i))
			}
			cfg := jsStreamCfg("/js/gap", "GAP", "gap.>")
			cfg.Heartbeat = time.Duration(50 * time.Millisecond)
			_, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})

			id := startID(t, hs.URL+"/js/gap")
			if want := e.jsIDOf(t, "GAP", tc.wantID); id != want {
				t.Errorf("start id = %q, want %q: the stream's last sequence %d", id, want, tc.wantID)
			}
			for i := range 3 {
				e.jsPublish(t, "gap.a", "tick", fmt.Sprint("e", i))
			}
			c := subscribe(t, hs.URL+"/js/gap", map[string]string{"Last-Event-ID": id})
			if got := datas(c.take(t, 3)); !slices.Equal(got, []string{"e0", "e1", "e2"}) {
				t.Fatalf("resumed from the start id: %v, want e0 e1 e2", got)
			}
			// No repeat either: the next event is the next message.
			e.jsPublish(t, "gap.a", "tick", "e3")
			if got := string(c.next(t).Data); got != "e3" {
				t.Fatalf("after the missed events got %q, want e3", got)
			}
		})
	}
}

func TestKafkaStartIDResumesWithoutGap(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"gap": 3})
	w := kafkaWriter(t, k.Addr(), "gap")
	// History in every partition, so the start offsets are not all zero.
	produce(t, w,
		kafkaMsg(0, "edit", "old-p0", time.Time{}),
		kafkaMsg(1, "edit", "old-p1", time.Time{}),
		kafkaMsg(1, "edit", "old-p1b", time.Time{}),
		kafkaMsg(2, "edit", "old-p2", time.Time{}))
	cfg := kafkaCfg("/kafka/gap", "gap", "")
	cfg.Heartbeat = time.Duration(50 * time.Millisecond)
	_, hs := startServer(t, []Config{cfg}, Deps{Kafka: KafkaCluster{Brokers: []string{k.Addr()}}})

	id := startID(t, hs.URL+"/kafka/gap")
	pos, err := decodeToken(id, topicTag("gap"))
	if err != nil {
		t.Fatalf("start id %q: %v", id, err)
	}
	if want := (position{0: 1, 1: 2, 2: 1}); !maps.Equal(pos, want) {
		t.Errorf("start id holds %v, want the next offset of every partition %v", pos, want)
	}

	var msgs []kafka.Message
	for p := range 3 {
		msgs = append(msgs, kafkaMsg(p, "edit", fmt.Sprintf("new-p%d", p), time.Time{}))
	}
	produce(t, w, msgs...)
	c := subscribe(t, hs.URL+"/kafka/gap", map[string]string{"Last-Event-ID": id})
	got := datas(c.take(t, 3))
	slices.Sort(got)
	if want := []string{"new-p0", "new-p1", "new-p2"}; !slices.Equal(got, want) {
		t.Fatalf("resumed from the start id: %v, want %v", got, want)
	}
	produce(t, w, kafkaMsg(1, "edit", "next", time.Time{}))
	if got := string(c.next(t).Data); got != "next" {
		t.Fatalf("after the missed events got %q, want next", got)
	}
}
