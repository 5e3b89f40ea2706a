package bridge_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/bridge/config"
)

// TestReloadAppliesShutdownTimeout: shutdown_timeout is not one of the
// settings a reload keeps (data_dir, http, nats, kafka, log.format), so a
// SIGHUP that raises it must make the next shutdown use the new budget,
// not silently keep the old one.
func TestReloadAppliesShutdownTimeout(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir(), ShutdownTimeout: config.Duration(10 * time.Second)}
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	b, err := bridge.New(cfg, bridge.Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	<-b.Started()

	next := *cfg
	next.ShutdownTimeout = config.Duration(42 * time.Second)
	if err := b.Reload(&next); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(logs.String(), "need a restart") {
		t.Errorf("reload warned that a setting needs a restart:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `msg="bridge shutting down" timeout=42s`) {
		t.Errorf("shutdown did not use the reloaded shutdown_timeout:\n%s", logs.String())
	}
}
