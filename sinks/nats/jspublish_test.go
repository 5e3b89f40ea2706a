package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestStreamRefusalEndsPrefix: a stream that is full and discards new
// messages answers with an API error instead of a PubAck. The write counts
// exactly the stored prefix and reports the stream's error; the answers
// still coming for the publishes behind the refused one (refused too)
// belong to an abandoned window and must not settle a later write's
// messages. After the failure the next write publishes its first message
// alone: refused again, nothing else of it went out, and once the stream
// has room the retried events are stored in order.
func TestStreamRefusalEndsPrefix(t *testing.T) {
	e := newJSEnv(t)
	ctx := context.Background()
	st, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full"}, MaxMsgs: 3, Discard: jetstream.DiscardNew})
	if err != nil {
		t.Fatal(err)
	}
	s := e.open(t, "p", natssink.Options{Subject: "full", JetStream: true, MaxInFlight: 64})
	var batch []sinks.Message
	for i := 1; i <= 40; i++ {
		batch = append(batch, sinktest.Msg("p", fmt.Sprint(i), "message", []byte(fmt.Sprint("data-", i))))
	}
	wctx, cancel := context.WithTimeout(ctx, sinktest.Timeout)
	defer cancel()
	n, err := s.Write(wctx, batch)
	var apiErr *jetstream.APIError
	if n != 3 || !errors.As(err, &apiErr) {
		t.Fatalf("Write into a stream with room for 3 = %d, %v; want 3 and the stream's API error", n, err)
	}
	// The retry: its first message goes alone and is refused. The stream
	// answers a connection's publishes in order, so the first write's
	// publishes have all been refused by now.
	n, err = s.Write(wctx, batch[3:])
	if n != 0 || !errors.As(err, &apiErr) {
		t.Fatalf("Write into the full stream = %d, %v; want 0 and the stream's API error", n, err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, batch[3:6])
	var ids []string
	for _, m := range e.streamMsgs(t, "FULL") {
		ids = append(ids, m.Header.Get(sinks.HeaderID))
	}
	if strings.Join(ids, ",") != "4,5,6" {
		t.Fatalf("stream holds ids %v, want 4,5,6", ids)
	}
}

// TestWindowsAcrossWrites: many writes of various sizes through a small
// window, some larger than it: every message is counted once it is
// stored, and the stream holds them all in order.
func TestWindowsAcrossWrites(t *testing.T) {
	e := newJSEnv(t)
	s := e.open(t, "p", natssink.Options{Subject: "w", JetStream: true, MaxInFlight: 7, Stream: &natssink.StreamOptions{Name: "W"}})
	id := 0
	for _, size := range []int{1, 6, 7, 8, 20, 3, 64, 1} {
		var batch []sinks.Message
		for range size {
			id++
			batch = append(batch, sinktest.Msg("p", fmt.Sprint(id), "message", []byte(fmt.Sprint("data-", id))))
		}
		mustWrite(t, s, batch)
	}
	got := e.streamMsgs(t, "W")
	if len(got) != id {
		t.Fatalf("stream holds %d messages, want %d", len(got), id)
	}
	for i, m := range got {
		if want := fmt.Sprint(i + 1); m.Header.Get(sinks.HeaderID) != want {
			t.Fatalf("message %d has id %s, want %s", i, m.Header.Get(sinks.HeaderID), want)
		}
	}
}

// TestServerGoneMidWrite: the server goes away while a window of
// publishes awaits its PubAcks. The write fails as not connected as soon
// as the connection says so, not after the ack timeout, and counts only
// messages the stream stored: after a restart the stream holds the n
// counted ones first, in order.
func TestServerGoneMidWrite(t *testing.T) {
	e := newJSEnv(t)
	s := e.open(t, "p", natssink.Options{Subject: "gone", JetStream: true, Stream: &natssink.StreamOptions{Name: "GONE"}})
	var seen atomic.Int64
	sub, err := e.js.Conn().Subscribe("gone", func(*gonats.Msg) {
		if seen.Add(1) == 1000 {
			go e.b.Shutdown()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	var batch []sinks.Message
	for i := 1; i <= 50000; i++ {
		batch = append(batch, sinktest.Msg("p", fmt.Sprint(i), "message", []byte(fmt.Sprint("data-", i))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	n, err := s.Write(ctx, batch)
	if err == nil {
		t.Fatalf("Write = %d, nil; the server went away during it", n)
	}
	if !errors.Is(err, sinks.ErrNotConnected) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write = %d, %v; want a not-connected error, not a timeout", n, err)
	}
	e.b.Restart(t)
	got := e.streamMsgs(t, "GONE")
	if len(got) < n {
		t.Fatalf("Write counted %d messages, the stream holds %d", n, len(got))
	}
	for i, m := range got[:n] {
		if want := fmt.Sprint(i + 1); m.Header.Get(sinks.HeaderID) != want {
			t.Fatalf("message %d has id %s, want %s", i, m.Header.Get(sinks.HeaderID), want)
		}
	}
	t.Logf("counted %d of %d, stream holds %d", n, len(batch), len(got))
}

// TestJetStreamHeadersReused: the reused header map carries each message's
// own headers: SSE-Received-At formatted again when the time (or only its
// location) changes, SSE-Id and Nats-Msg-Id present exactly when they
// apply (no ID: neither; an inherited ID: no Nats-Msg-Id).
func TestJetStreamHeadersReused(t *testing.T) {
	e := newJSEnv(t)
	s := e.open(t, "p", natssink.Options{Subject: "hdr", JetStream: true, Stream: &natssink.StreamOptions{Name: "HDR"}})
	t1 := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)
	t2 := t1.Add(time.Millisecond)
	batch := []sinks.Message{
		sinktest.Msg("p", "1", "e", []byte("a")),
		sinktest.Msg("p", "2", "e", []byte("b")),
		sinktest.Msg("p", "", "e", []byte("c")),
		sinktest.Msg("p", "4", "e", []byte("d")),
		sinktest.Msg("p", "4", "e", []byte("e")),
		sinktest.Msg("p", "6", "f", []byte("f")),
	}
	batch[4].InheritedID = true
	for i, at := range []time.Time{t1, t1, t2, t2, t2, t2.In(time.FixedZone("X", 3600))} {
		batch[i].ReceivedAt = at
	}
	mustWrite(t, s, batch[:3])
	mustWrite(t, s, batch[3:])
	got := e.streamMsgs(t, "HDR")
	if len(got) != len(batch) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(batch))
	}
	for i, m := range got {
		want := natssink.Headers(&batch[i])
		if batch[i].Event.ID != "" && !batch[i].InheritedID {
			want.Set(jetstream.MsgIDHeader, natssink.MsgID(&batch[i]))
		}
		if len(m.Header) != len(want) {
			t.Errorf("message %d: headers %v, want %v", i, m.Header, want)
			continue
		}
		for k := range want {
			if m.Header.Get(k) != want.Get(k) {
				t.Errorf("message %d: %s = %q, want %q", i, k, m.Header.Get(k), want.Get(k))
			}
		}
	}
}
