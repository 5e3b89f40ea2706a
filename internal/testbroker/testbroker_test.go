package testbroker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNATSRestartKeepsJetStream proves the two things tests rely on: the
// server comes back on the same URL, and JetStream data survives.
func TestNATSRestartKeepsJetStream(t *testing.T) {
	n := StartNATS(t)
	url := n.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("before")); err != nil {
		t.Fatal(err)
	}

	n.Restart(t)
	if n.URL() != url {
		t.Fatalf("URL changed across restart: %s → %s", url, n.URL())
	}
	// The same client reconnects by itself and finds the stream's message.
	var msg *jetstream.RawStreamMsg
	for {
		s, err := js.Stream(ctx, "S")
		if err == nil {
			msg, err = s.GetMsg(ctx, 1)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not readable after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(msg.Data) != "before" {
		t.Fatalf("message after restart = %q, want %q", msg.Data, "before")
	}

	n.Shutdown()
	if n.Server() != nil {
		t.Fatal("Server() not nil after Shutdown")
	}
	n.Shutdown() // idempotent
}

func TestKafkaProduceConsumeAcrossRestart(t *testing.T) {
	k := StartKafka(t, map[string]int32{"t": 2})
	addr := k.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	produce := func(v string) {
		t.Helper()
		// A private transport, closed here: kafka.DefaultTransport keeps
		// pooled connections (and their goroutines) for the process's life.
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(k.Addr()), Topic: "t", Transport: tr,
			Balancer:     kafka.BalancerFunc(func(kafka.Message, ...int) int { return 1 }),
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
		defer w.Close()
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(v)}); err != nil {
			t.Fatalf("produce %q: %v", v, err)
		}
	}
	produce("before")
	k.Restart(t)
	if k.Addr() != addr {
		t.Fatalf("address changed across restart: %s → %s", addr, k.Addr())
	}
	produce("after")

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{k.Addr()}, Topic: "t", Partition: 1, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var got []string
	for len(got) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read after %v: %v", got, err)
		}
		got = append(got, string(m.Value))
	}
	if got[0] != "before" || got[1] != "after" {
		t.Fatalf("partition 1 = %q, want [before after]", got)
	}
}
