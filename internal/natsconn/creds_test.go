package natsconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// operatorServer runs a nats-server in decentralised JWT mode, as NGS and
// most managed NATS deployments are: it trusts one operator, knows one
// account (signed by the operator) through a memory resolver, and accepts
// only users whose JWT that account signed. It returns the server's URL
// and the account's signing key, to issue users with.
func operatorServer(t *testing.T) (url string, account nkeys.KeyPair) {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "test-operator"
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}

	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "bridge"
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}

	s, err := server.NewServer(&server.Options{
		Host:             "127.0.0.1",
		Port:             -1,
		NoLog:            true,
		NoSigs:           true,
		TrustedOperators: []*jwt.OperatorClaims{operator},
		AccountResolver:  resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server in operator mode did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL(), akp
}

// writeCreds issues a user signed by signer, allowed to publish only to
// pubAllow (everything when empty), and writes its .creds file, the format
// `nsc generate creds` writes.
func writeCreds(t *testing.T, signer nkeys.KeyPair, pubAllow ...string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Pub.Allow.Add(pubAllow...)
	ujwt, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bridge.creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCredsFile proves creds_file against a server in operator mode: the
// user the account issued gets in and its permissions from the JWT apply,
// and a user issued by an account the operator never signed is refused.
func TestCredsFile(t *testing.T) {
	url, account := operatorServer(t)

	t.Run("issued by the account", func(t *testing.T) {
		creds := writeCreds(t, account, "events.>", "_INBOX.>")
		nc, err := Connect(Config{URL: url, CredsFile: creds}, "test", nil, noRetry)
		if err != nil {
			t.Fatalf("connect with creds_file: %v", err)
		}
		defer nc.Close()
		sub, err := nc.SubscribeSync("events.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("events.a", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message published with creds_file not received: %v", err)
		}
		if string(msg.Data) != "hello" {
			t.Fatalf("received %q, want hello", msg.Data)
		}
		// The JWT's publish permissions are the server's to enforce:
		// outside them the server reports a violation on this connection.
		if err := nc.Publish("other", []byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		deadline := time.Now().Add(5 * time.Second)
		for nc.LastError() == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := nc.LastError(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("publish outside the JWT's permissions: last error %v, want a permissions violation", err)
		}
	})

	t.Run("issued by an unknown account", func(t *testing.T) {
		stranger, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		creds := writeCreds(t, stranger)
		nc, err := Connect(Config{URL: url, CredsFile: creds}, "test", nil, noRetry)
		if err == nil {
			nc.Close()
			t.Fatal("a user of an account the operator never signed was let in")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("error %v, want an authorization violation", err)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "absent.creds")
		nc, err := Connect(Config{URL: url, CredsFile: missing}, "test", nil)
		if err == nil {
			nc.Close()
			t.Fatal("connect with a missing creds_file succeeded")
		}
		if !strings.Contains(err.Error(), missing) {
			t.Fatalf("error %v does not name the file", err)
		}
	})
}
