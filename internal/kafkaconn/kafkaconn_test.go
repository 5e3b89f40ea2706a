package kafkaconn

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/internal/testtls"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// produceConsume writes one record with a Transport-backed writer and reads
// it back with a Dialer-backed reader: both halves the bridge uses.
func produceConsume(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := Transport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: "t", Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, MaxAttempts: 1}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("hello")}); err != nil {
		return err
	}
	d, err := Dialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: "t", Dialer: d, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		return err
	}
	if string(m.Value) != "hello" {
		t.Fatalf("read %q, want hello", m.Value)
	}
	return nil
}

func TestSASL(t *testing.T) {
	for _, tc := range []struct{ mech, kfakeName string }{
		{MechanismPlain, "PLAIN"},
		{MechanismSCRAMSHA256, "SCRAM-SHA-256"},
		{MechanismSCRAMSHA512, "SCRAM-SHA-512"},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			k := testbroker.StartKafka(t, map[string]int32{"t": 1}, kfake.EnableSASL(), kfake.Superuser(tc.kfakeName, "bridge", "p=ss,word"))
			if err := produceConsume(t, Config{Brokers: []string{k.Addr()}, SASL: &SASL{Mechanism: tc.mech, Username: "bridge", Password: "p=ss,word"}}); err != nil {
				t.Fatalf("right password: %v", err)
			}
			if err := produceConsume(t, Config{Brokers: []string{k.Addr()}, SASL: &SASL{Mechanism: tc.mech, Username: "bridge", Password: "wrong"}}); err == nil {
				t.Fatal("wrong password accepted")
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testtls.SelfSigned(t, dir, "kfake")
	caFile := ca.CertFile
	k := testbroker.StartKafka(t, map[string]int32{"t": 1}, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{ca.TLS},
	}))
	if err := produceConsume(t, Config{Brokers: []string{k.Addr()}, TLS: &tlsconf.Config{CAFile: caFile}}); err != nil {
		t.Fatalf("trusted CA: %v", err)
	}
	// Without the CA the handshake must fail: proves TLS is really in use
	// and verified.
	if err := produceConsume(t, Config{Brokers: []string{k.Addr()}, TLS: &tlsconf.Config{}}); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}

func TestConfig(t *testing.T) {
	if _, err := Transport(Config{}); !errors.Is(err, ErrNoBrokers) {
		t.Fatalf("no brokers: %v", err)
	}
	if _, err := Dialer(Config{Brokers: []string{"x:1"}, SASL: &SASL{Mechanism: "gssapi"}}); !errors.Is(err, ErrMechanism) {
		t.Fatalf("bad mechanism: %v", err)
	}
	tr, err := Transport(Config{Brokers: []string{"x:1"}})
	if err != nil || tr.ClientID != DefaultClientID || tr.TLS != nil || tr.SASL != nil {
		t.Fatalf("defaults: %+v, %v", tr, err)
	}
	d, err := Dialer(Config{Brokers: []string{"x:1"}, ClientID: "me"})
	if err != nil || d.ClientID != "me" {
		t.Fatalf("client id: %+v, %v", d, err)
	}
}

// TestScramRejectsForgedServer checks the client side of SCRAM against a
// server that does not know the password: it must not accept the final
// message.
func TestScramRejectsForgedServer(t *testing.T) {
	m, err := Mechanism(&SASL{Mechanism: MechanismSCRAMSHA256, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := m.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sess.Next(context.Background(), []byte("r=other,s=c2FsdA==,i=4096")); err == nil {
		t.Fatal("foreign nonce accepted")
	}
	sess, first, err := m.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nonce := ""
	for _, kv := range strings.Split(string(first), ",") {
		if strings.HasPrefix(kv, "r=") {
			nonce = kv[2:]
		}
	}
	if _, _, err := sess.Next(context.Background(), []byte("r="+nonce+"srv,s=c2FsdA==,i=4096")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sess.Next(context.Background(), []byte("v=AAAA")); err == nil {
		t.Fatal("forged server signature accepted")
	}
}
