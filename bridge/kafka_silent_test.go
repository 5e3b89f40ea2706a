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

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// silentBroker listens on loopback, accepts connections, reads whatever
// arrives and never answers: a hung broker, or a silent service on the
// port a broker list names.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	// The accept loop counts too, so no Add races the cleanup's Wait.
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(2)
			go func() { defer conns.Done(); <-stop; c.Close() }()
			go func() { defer conns.Done(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(stop)
		conns.Wait()
	})
	return ln.Addr().String()
}

// readyzWithBrokers runs a bridge whose kafka.brokers is brokers and
// returns the status code of one GET /readyz.
func readyzWithBrokers(t *testing.T, brokers ...string) int {
	t.Helper()
	return readyzWithKafka(t, config.Kafka{Brokers: brokers})
}

// readyzWithKafka runs a bridge with the kafka block k and returns the
// status code of one GET /readyz.
func readyzWithKafka(t *testing.T, k config.Kafka) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{DataDir: t.TempDir(), Kafka: k}
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
		t.Fatalf("/readyz with brokers %v: %v", k.Brokers, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadinessAnswersWithSilentKafka: a broker that accepts TCP
// connections but never answers must make /readyz answer 503 within the
// probe's timeout. The probe used to wait for the ApiVersions reply
// without a deadline, holding the probe's lock, so /readyz and
// /api/status hung for good.
func TestReadinessAnswersWithSilentKafka(t *testing.T) {
	if code := readyzWithBrokers(t, silentBroker(t)); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", code)
	}
}

// TestReadinessWithOneSilentKafkaBroker: one hung broker among several must
// not make the bridge unready while another broker answers. Probed one
// after the other, the silent first broker used up the whole probe budget
// and the healthy second one was never asked.
func TestReadinessWithOneSilentKafkaBroker(t *testing.T) {
	k := testbroker.StartKafka(t, map[string]int32{"t": 1})
	if code := readyzWithBrokers(t, silentBroker(t), k.Addr()); code != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200: the second broker answers", code)
	}
}

// TestReadinessAnswersWithSilentSASLKafka: with SASL, kafka-go runs the
// SASL handshake inside the dial, where no deadline bounds the wait for
// the broker's answer; a silent broker must still get a 503 in time.
func TestReadinessAnswersWithSilentSASLKafka(t *testing.T) {
	k := config.Kafka{
		Brokers: []string{silentBroker(t)},
		SASL:    &config.SASL{Mechanism: config.SASLPlain, Username: "u", Password: "p"},
	}
	if code := readyzWithKafka(t, k); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", code)
	}
}
