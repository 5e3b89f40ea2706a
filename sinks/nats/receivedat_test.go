package nats_test

import (
	"context"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
)

// TestCoreReceivedAtReused: core publishing formats SSE-Received-At once
// for a run of messages stamped with one time, and again whenever the
// time (or only its location) changes; messages without an ID in between
// carry no SSE-Id.
func TestCoreReceivedAtReused(t *testing.T) {
	srv := testbroker.StartNATS(t)
	sub, err := gonats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch := make(chan *gonats.Msg, 16)
	if _, err := sub.ChanSubscribe("at.>", ch); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := natssink.New(context.Background(), connect(t, srv.URL()), "p", natssink.Options{Subject: "at.x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t1 := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)
	t2 := t1.Add(time.Millisecond)
	msgs := []sinks.Message{
		sinktest.Msg("p", "1", "e", []byte("a")),
		sinktest.Msg("p", "2", "e", []byte("b")),
		sinktest.Msg("p", "", "e", []byte("c")),
		sinktest.Msg("p", "4", "e", []byte("d")),
		sinktest.Msg("p", "5", "e", []byte("e")),
	}
	for i, at := range []time.Time{t1, t1, t2, t2, t2.In(time.FixedZone("X", 3600))} {
		msgs[i].ReceivedAt = at
	}
	for _, batch := range [][]sinks.Message{msgs[:3], msgs[3:]} {
		if n, err := s.Write(context.Background(), batch); n != len(batch) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	for i := range msgs {
		var got *gonats.Msg
		select {
		case got = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not received", i)
		}
		want := natssink.Headers(&msgs[i])
		if len(got.Header) != len(want) {
			t.Errorf("message %d: headers %v, want %v", i, got.Header, want)
		}
		for k := range want {
			if got.Header.Get(k) != want.Get(k) {
				t.Errorf("message %d: %s = %q, want %q", i, k, got.Header.Get(k), want.Get(k))
			}
		}
	}
}
