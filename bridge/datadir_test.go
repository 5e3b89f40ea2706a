package bridge_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
)

// TestDataDirHasOneOwner: two bridges on one data_dir (ssebridge run
// started twice, or a demo pointed at a running bridge's directory) used
// to run side by side: two embedded NATS servers wrote one JetStream store
// and both processes overwrote each other's checkpoint files. The second
// Run now fails at once, naming the directory, and the directory is free
// again once the first bridge stopped.
func TestDataDirHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	mk := func() *config.Config {
		cfg := &config.Config{DataDir: dir, NATS: config.NATS{Embedded: true},
			Streams: []config.Stream{{Path: "/sse/x", NATS: &config.NATSStream{Subject: "x"}}}}
		cfg.SetDefaults()
		return cfg
	}
	first := start(t, mk())

	second := func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b, err := bridge.New(mk(), bridge.Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- b.Run(ctx) }()
		select {
		case <-b.Started():
			cancel()
			<-errc
			return nil
		case err := <-errc:
			cancel()
			return err
		}
	}
	if err := second(); !errors.Is(err, bridge.ErrDataDirInUse) {
		t.Fatalf("second bridge on the same data_dir: Run = %v, want ErrDataDirInUse", err)
	}
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := second(); err != nil {
		t.Fatalf("data_dir still locked after the first bridge stopped: %v", err)
	}
}
