// Package tlsconf turns client TLS options (certificate files, server name)
// into a *tls.Config, so that sources, sinks and streams read certificates
// the same way and report the same errors, and serves the bridge's own
// HTTPS certificate (ServerCert), read again when renewed. The runner maps
// the YAML's tls blocks to Config.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Config holds client TLS options: the files to read and how to check the
// server. The zero value means Go's defaults (system roots, no client
// certificate).
type Config struct {
	// CAFile is a PEM file of the CAs to trust instead of the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (mutual
	// TLS); both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name the server's certificate must carry.
	ServerName string
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool
}

// ErrNoCertificates is returned (wrapped) when ca_file holds no PEM
// certificate: trusting an empty pool would fail every handshake with an
// error far from its cause.
var ErrNoCertificates = errors.New("no PEM certificate found")

// ErrKeyPair is returned (wrapped) when only one of cert_file and key_file is
// set.
var ErrKeyPair = errors.New("cert_file and key_file must be set together")

// Build returns the client TLS configuration c describes, or nil, nil when c
// is nil (use Go's defaults).
//
// ca_file replaces the system roots rather than adding to them: a user who
// names a CA means "trust this one", typically a private PKI. cert_file and
// key_file enable client certificates (mutual TLS).
func Build(c *Config) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit user choice, logged by callers
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: %w", c.CAFile, ErrNoCertificates)
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls: %w", ErrKeyPair)
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
