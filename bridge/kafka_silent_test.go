package bridge

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/bridge/config"
)

// TestReadinessAnswersWithSilentKafka: a broker address that accepts TCP
// connections but never answers (a hung broker, a wrong port on a silent
// service) must make /readyz answer 503 within the probe's timeout. The
// probe used to wait for the ApiVersions reply without a deadline, holding
// the probe's lock, so /readyz and /api/status hung for good.
func TestReadinessAnswersWithSilentKafka(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stopSilent := make(chan struct{})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { // read everything, answer nothing
				defer conns.Done()
				go func() { <-stopSilent; c.Close() }()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	defer func() {
		silent.Close()
		close(stopSilent)
		conns.Wait()
	}()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{DataDir: t.TempDir(), Kafka: config.Kafka{Brokers: []string{silent.Addr().String()}}}
	cfg.SetDefaults()
	b, err := New(cfg, Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	<-b.Started()

	// Generous: the probe gives up after kafkaProbeTimeout (2 s).
	client := &http.Client{Timeout: 15 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatalf("/readyz with a silent Kafka broker: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", resp.StatusCode)
	}
}
