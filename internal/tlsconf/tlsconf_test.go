package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/testtls"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMutualTLS: ca_file trusts the server, cert_file/key_file
// authenticate the client to a server that requires it.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvPair := testtls.SelfSigned(t, dir, "server")
	cliPair := testtls.SelfSigned(t, dir, "client")
	srvCertFile, srvCert := srvPair.CertFile, srvPair.TLS
	cliCertFile, cliKeyFile := cliPair.CertFile, cliPair.KeyFile
	clientCAs := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(cliCertFile)
	clientCAs.AppendCertsFromPEM(pemBytes)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.StartTLS()
	defer srv.Close()

	get := func(c *Config) (string, error) {
		tc, err := Build(c)
		if err != nil {
			return "", err
		}
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		sb.Write(buf[:n])
		return sb.String(), nil
	}
	if who, err := get(&Config{CAFile: srvCertFile, CertFile: cliCertFile, KeyFile: cliKeyFile}); err != nil || who != "client" {
		t.Errorf("mutual TLS: %q, %v", who, err)
	}
	if _, err := get(&Config{CAFile: srvCertFile}); err == nil {
		t.Error("no client certificate: want a handshake failure")
	}
	if _, err := get(&Config{CertFile: cliCertFile, KeyFile: cliKeyFile}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server not trusted without ca_file: %v", err)
	}
	if _, err := get(&Config{InsecureSkipVerify: true, CertFile: cliCertFile, KeyFile: cliKeyFile}); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	x := testtls.SelfSigned(t, dir, "x")
	certFile, keyFile := x.CertFile, x.KeyFile
	junk := filepath.Join(dir, "junk.pem")
	_ = os.WriteFile(junk, []byte("not pem"), 0o600)
	if tc, err := Build(nil); tc != nil || err != nil {
		t.Errorf("Build(nil) = %v, %v", tc, err)
	}
	for _, tc := range []struct {
		c    Config
		want string
		is   error
	}{
		{Config{CAFile: junk}, "ca_file", ErrNoCertificates},
		{Config{CAFile: filepath.Join(dir, "missing")}, "ca_file", nil},
		{Config{CertFile: certFile}, "together", ErrKeyPair},
		{Config{KeyFile: keyFile}, "together", ErrKeyPair},
		{Config{CertFile: certFile, KeyFile: certFile}, "cert_file/key_file", nil},
	} {
		_, err := Build(&tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
	c, err := Build(&Config{ServerName: "feed.example", CertFile: certFile, KeyFile: keyFile})
	if err != nil || c.ServerName != "feed.example" || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("Build = %+v, %v", c, err)
	}
}
