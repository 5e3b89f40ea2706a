package tlsconf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/testtls"
)

// TestServerCertRenewal: a renewed pair is served from the next
// handshake on; a renewal that cannot be loaded keeps the previous pair
// in service and is reported once, until the files change again.
func TestServerCertRenewal(t *testing.T) {
	dir := t.TempDir()
	first := testtls.SelfSigned(t, dir, "a")
	var reported []error
	sc, err := LoadServerCert(first.CertFile, first.KeyFile, func(err error) { reported = append(reported, err) })
	if err != nil {
		t.Fatal(err)
	}
	serving := func() []byte {
		t.Helper()
		c, err := sc.GetCertificate(nil)
		if err != nil || c == nil {
			t.Fatalf("GetCertificate = %v, %v", c, err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(serving(), first.TLS.Certificate[0]) {
		t.Fatal("not serving the loaded certificate")
	}

	// Renewed in place (what cert-manager and ACME clients do). The
	// stamps compare modification times: make the change visible even on
	// a file system with coarse times.
	renewed := testtls.SelfSigned(t, t.TempDir(), "a")
	replace(t, renewed.CertFile, first.CertFile)
	replace(t, renewed.KeyFile, first.KeyFile)
	if !bytes.Equal(serving(), renewed.TLS.Certificate[0]) {
		t.Fatal("renewed certificate not served")
	}

	// A half-written renewal: the key no longer matches.
	other := testtls.SelfSigned(t, t.TempDir(), "a")
	replace(t, other.KeyFile, first.KeyFile)
	for range 3 {
		if !bytes.Equal(serving(), renewed.TLS.Certificate[0]) {
			t.Fatal("a failed renewal replaced the certificate in service")
		}
	}
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "private key does not match") {
		t.Fatalf("reported %v, want one key mismatch", reported)
	}
	// The rest of it arrives.
	replace(t, other.CertFile, first.CertFile)
	if !bytes.Equal(serving(), other.TLS.Certificate[0]) {
		t.Fatal("completed renewal not served")
	}
	if len(reported) != 1 {
		t.Fatalf("reported %v after the renewal completed", reported)
	}
}

// replace overwrites dst with src's content, with a modification time
// later than dst's.
func replace(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(dst, later, later); err != nil {
		t.Fatal(err)
	}
}

// TestLoadServerCertErrors: what cannot serve is refused at start, naming
// the file.
func TestLoadServerCertErrors(t *testing.T) {
	dir := t.TempDir()
	c := testtls.SelfSigned(t, dir, "a")
	other := testtls.SelfSigned(t, t.TempDir(), "b")
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", missing, c.KeyFile, "cert_file: stat " + missing},
		{"missing key", c.CertFile, missing, "key_file: stat " + missing},
		{"mismatched key", c.CertFile, other.KeyFile, "private key does not match public key"},
		{"key as certificate", c.KeyFile, c.KeyFile, "cert_file " + c.KeyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadServerCert(tc.cert, tc.key, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if tc.name != "mismatched key" && tc.name != "key as certificate" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("err = %v, want os.ErrNotExist", err)
			}
		})
	}
}
