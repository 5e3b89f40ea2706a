package bridge_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/syncbuf"
)

// TestReloadWarnsAboutShutdownTimeout: a running worker took its share of
// the drain budget when it started, so a reload cannot change
// shutdown_timeout for everything at once. It must say so, as for the
// other settings that need a restart, instead of logging a clean reload
// and silently shutting down with the old budget.
func TestReloadWarnsAboutShutdownTimeout(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir(), ShutdownTimeout: config.Duration(10 * time.Second)}
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
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
	if !strings.Contains(logs.String(), `need a restart to change, keeping the running ones" settings=[shutdown_timeout]`) {
		t.Errorf("reload did not warn that shutdown_timeout needs a restart:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `msg="bridge shutting down" timeout=10s`) {
		t.Errorf("shutdown did not keep the running shutdown_timeout:\n%s", logs.String())
	}
}
