package natsconn

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/internal/testtls"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// noRetry makes a refused first connection an error, so authentication
// failures are visible synchronously.
var noRetry = nats.RetryOnFailedConnect(false)

func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.SubscribeSync("rt")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish("rt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("round trip: %v", err)
	}
}

func TestAuthMethods(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		b := testbroker.StartNATS(t, func(o *server.Options) { o.Authorization = "s3cret" })
		nc, err := Connect(Config{URL: b.URL(), Token: "s3cret"}, "test", nil, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		roundTrip(t, nc)
		if _, err := Connect(Config{URL: b.URL(), Token: "wrong"}, "test", nil, noRetry); err == nil {
			t.Fatal("wrong token accepted")
		}
	})
	t.Run("user/password", func(t *testing.T) {
		b := testbroker.StartNATS(t, func(o *server.Options) { o.Username, o.Password = "bridge", "pw" })
		nc, err := Connect(Config{URL: b.URL(), User: "bridge", Password: "pw"}, "test", nil, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		roundTrip(t, nc)
		_, err = Connect(Config{URL: b.URL(), User: "bridge", Password: "no"}, "test", nil, noRetry)
		if err == nil || !strings.Contains(err.Error(), "nats connect") {
			t.Fatalf("wrong password: err = %v", err)
		}
	})
	t.Run("nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		seedFile := filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		b := testbroker.StartNATS(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
		nc, err := Connect(Config{URL: b.URL(), NKeyFile: seedFile}, "test", nil, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		roundTrip(t, nc)
		if _, err := Connect(Config{URL: b.URL()}, "test", nil, noRetry); err == nil {
			t.Fatal("connection without nkey accepted")
		}
		if _, err := Connect(Config{URL: b.URL(), NKeyFile: filepath.Join(t.TempDir(), "absent")}, "test", nil); err == nil || !strings.Contains(err.Error(), "nkey_file") {
			t.Fatalf("missing seed file: err = %v", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	if _, err := Connect(Config{}, "t", nil); !errors.Is(err, ErrNoURL) {
		t.Fatalf("no url: %v", err)
	}
	if _, err := Options(Config{Token: "a", User: "u"}, "t", nil); !errors.Is(err, ErrAuthConflict) {
		t.Fatalf("two auth methods: %v", err)
	}
	if _, err := Options(Config{TLS: &tlsconf.Config{CAFile: "/nonexistent/ca.pem"}}, "t", nil); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("bad TLS: %v", err)
	}
	opts, err := Options(Config{TLS: &tlsconf.Config{InsecureSkipVerify: true}}, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	var o nats.Options
	for _, fn := range opts {
		if err := fn(&o); err != nil {
			t.Fatal(err)
		}
	}
	if !o.Secure || o.TLSConfig == nil || !o.TLSConfig.InsecureSkipVerify || o.MaxReconnect != -1 || !o.RetryOnFailedConnect {
		t.Fatalf("options not applied: secure=%v tls=%v maxReconnect=%d retry=%v", o.Secure, o.TLSConfig, o.MaxReconnect, o.RetryOnFailedConnect)
	}
}

// TestReconnectsAndLogs restarts the server twice and expects the same
// connection to come back each time, with the drop and the return logged.
func TestReconnectsAndLogs(t *testing.T) {
	b := testbroker.StartNATS(t)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, err := Connect(Config{URL: b.URL()}, "test", log, nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := 1; i <= 2; i++ {
		b.Restart(t)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(logs.String(), "nats reconnected") < i {
			if time.Now().After(deadline) {
				t.Fatalf("restart %d: reconnection not logged; logs:\n%s", i, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		roundTrip(t, nc)
	}
	if !strings.Contains(logs.String(), "nats disconnected") {
		t.Fatalf("disconnect not logged:\n%s", logs.String())
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:p@h:4222":             "nats://REDACTED@h:4222",
		"nats://tok@h:4222,nats://h2:1": "nats://REDACTED@h:4222,nats://h2:1",
		"nats://h:4222":                 "nats://h:4222",
		"tls://u:p@h/x":                 "tls://REDACTED@h/x",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTLS runs a TLS-only server with a private CA: the client trusts it
// through tls.ca_file, and refuses it without.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testtls.SelfSigned(t, dir, "nats-test")
	caFile := ca.CertFile
	b := testbroker.StartNATS(t, func(o *server.Options) {
		o.TLS = true
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.TLS}, MinVersion: tls.VersionTLS12}
	})
	nc, err := Connect(Config{URL: b.URL(), TLS: &tlsconf.Config{CAFile: caFile}}, "test", nil, noRetry)
	if err != nil {
		t.Fatalf("trusted CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("connection is not TLS")
	}
	roundTrip(t, nc)
	if _, err := Connect(Config{URL: b.URL(), TLS: &tlsconf.Config{}}, "test", nil, noRetry); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}
