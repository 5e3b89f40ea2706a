package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/bridge/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// selfSigned writes a self-signed certificate and its key as PEM files.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestMutualTLS: ca_file trusts the server, cert_file/key_file
// authenticate the client to a server that requires it.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvCertFile, _, srvCert := selfSigned(t, dir, "server")
	cliCertFile, cliKeyFile, _ := selfSigned(t, dir, "client")
	clientCAs := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(cliCertFile)
	clientCAs.AppendCertsFromPEM(pemBytes)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.StartTLS()
	defer srv.Close()

	get := func(c *config.TLS) (string, error) {
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
	if who, err := get(&config.TLS{CAFile: srvCertFile, CertFile: cliCertFile, KeyFile: cliKeyFile}); err != nil || who != "client" {
		t.Errorf("mutual TLS: %q, %v", who, err)
	}
	if _, err := get(&config.TLS{CAFile: srvCertFile}); err == nil {
		t.Error("no client certificate: want a handshake failure")
	}
	if _, err := get(&config.TLS{CertFile: cliCertFile, KeyFile: cliKeyFile}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server not trusted without ca_file: %v", err)
	}
	if _, err := get(&config.TLS{InsecureSkipVerify: true, CertFile: cliCertFile, KeyFile: cliKeyFile}); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir, "x")
	junk := filepath.Join(dir, "junk.pem")
	_ = os.WriteFile(junk, []byte("not pem"), 0o600)
	if tc, err := Build(nil); tc != nil || err != nil {
		t.Errorf("Build(nil) = %v, %v", tc, err)
	}
	for _, tc := range []struct {
		c    config.TLS
		want string
		is   error
	}{
		{config.TLS{CAFile: junk}, "ca_file", ErrNoCertificates},
		{config.TLS{CAFile: filepath.Join(dir, "missing")}, "ca_file", nil},
		{config.TLS{CertFile: certFile}, "together", ErrKeyPair},
		{config.TLS{KeyFile: keyFile}, "together", ErrKeyPair},
		{config.TLS{CertFile: certFile, KeyFile: certFile}, "cert_file/key_file", nil},
	} {
		_, err := Build(&tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
	c, err := Build(&config.TLS{ServerName: "feed.example", CertFile: certFile, KeyFile: keyFile})
	if err != nil || c.ServerName != "feed.example" || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("Build = %+v, %v", c, err)
	}
}
