// Package testtls generates throw-away TLS certificates for tests, so that
// the packages testing TLS against real servers share one generator instead
// of each repeating the x509 boilerplate.
package testtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a self-signed certificate written as PEM files, plus the same
// pair loaded for a tls.Config.
type Cert struct {
	// CertFile is the PEM certificate; as the certificate is its own CA,
	// it is also the file to give as a ca_file.
	CertFile string
	// KeyFile is the PEM (EC) private key of CertFile.
	KeyFile string
	// TLS is the loaded key pair, ready for tls.Config.Certificates.
	TLS tls.Certificate
}

// SelfSigned writes a self-signed ECDSA P-256 certificate for commonName,
// valid for 127.0.0.1 and the DNS name commonName for an hour either side of now, usable both as a CA
// and for server and client authentication, to dir/commonName.pem and
// dir/commonName.key. Any failure fails the test.
func SelfSigned(t testing.TB, dir, commonName string) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{commonName},
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
	c := Cert{CertFile: filepath.Join(dir, commonName+".pem"), KeyFile: filepath.Join(dir, commonName+".key")}
	if err := os.WriteFile(c.CertFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.TLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// Pool returns a certificate pool trusting c, for a client's RootCAs.
func (c Cert) Pool(t testing.TB) *x509.CertPool {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}
