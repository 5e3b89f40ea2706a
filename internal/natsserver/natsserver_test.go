package natsserver

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestInProcessJetStreamPersists checks the zero-setup default: no port is
// opened, JetStream works through the in-process connection, and what was
// stored survives a restart on the same data_dir.
func TestInProcessJetStreamPersists(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	s, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if u := s.ClientURL(); u != "" {
		t.Fatalf("ClientURL = %q, want empty: the default must not listen", u)
	}
	nc, err := s.Connect()
	if err != nil {
		s.Shutdown()
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "t.x", []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	s.Shutdown()

	s2, err := Start(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	nc2, err := s2.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	st, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("messages after restart = %d, want 3", info.State.Msgs)
	}
}

// TestListenExposesClientPort checks that nats.listen lets other tools
// connect over TCP, on loopback when the host is omitted.
func TestListenExposesClientPort(t *testing.T) {
	s, err := Start(Options{DataDir: t.TempDir(), Listen: ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	u := s.ClientURL()
	if u == "" {
		t.Fatal("ClientURL empty with Listen set")
	}
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatalf("connect over TCP to %s: %v", u, err)
	}
	defer nc.Close()
	if host := nc.ConnectedAddr(); host[:10] != "127.0.0.1:" {
		t.Fatalf("connected to %s, want loopback", host)
	}
	sub, err := nc.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server knows the interest
		t.Fatal(err)
	}
	in, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("TCP subscriber did not get the in-process publish: %v %v", m, err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Fatal("Start without DataDir succeeded")
	}
	if _, err := Start(Options{DataDir: t.TempDir(), Listen: "nonsense"}); err == nil {
		t.Fatal("Start with a bad listen address succeeded")
	}
}

// TestListenPortTaken: a listen address already in use fails the start at
// once with nats-server's own reason, instead of a bare "not ready" after
// the whole 30 s ready timeout.
func TestListenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	s, err := Start(Options{DataDir: t.TempDir(), Listen: ln.Addr().String()})
	if err == nil {
		s.Shutdown()
		t.Fatal("started on a port already in use")
	}
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("error %q, want ErrNotReady naming %s", err, ln.Addr())
	}
	if waited := time.Since(start); waited > readyTimeout/2 {
		t.Fatalf("took %v to report a taken port: the ready timeout ran out", waited)
	}
}
