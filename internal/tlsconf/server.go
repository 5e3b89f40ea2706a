package tlsconf

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// ServerCert is a server certificate read from PEM files and read again
// when they change, so that a renewed certificate (cert-manager, an ACME
// client) is served without a restart. A renewal that cannot be loaded
// (a key not yet written, a typo) keeps the previous pair in service and
// is reported through the error hook.
type ServerCert struct {
	certFile, keyFile string
	// onError is told of each failed reload (nil: not told), and of
	// nothing more until the files change again.
	onError func(error)

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // of the files cert was read from, or last tried
	lastErr error
}

// fileStamp tells a file's versions apart without reading it.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// LoadServerCert reads the pair: a missing file or a key that does not
// match the certificate is an error here, at start, and never later.
// onError (may be nil) is told of reloads that fail.
func LoadServerCert(certFile, keyFile string, onError func(error)) (*ServerCert, error) {
	s := &ServerCert{certFile: certFile, keyFile: keyFile, onError: onError}
	stamp, err := s.stamps()
	if err == nil {
		err = s.load(stamp)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ServerCert) stamps() ([2]fileStamp, error) {
	var st [2]fileStamp
	var err error
	if st[0], err = stampOf(s.certFile); err != nil {
		return st, fmt.Errorf("cert_file: %w", err)
	}
	if st[1], err = stampOf(s.keyFile); err != nil {
		return st, fmt.Errorf("key_file: %w", err)
	}
	return st, nil
}

// load reads the pair; the caller holds mu or owns s.
func (s *ServerCert) load(stamp [2]fileStamp) error {
	s.stamp = stamp
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("cert_file %s, key_file %s: %w", s.certFile, s.keyFile, err)
	}
	s.cert = &c
	return nil
}

// GetCertificate serves as tls.Config.GetCertificate: the current pair,
// read again first if either file changed since it was read. The files
// are looked at on each handshake, which for long-lived event streams is
// rare, so a renewal is picked up by the next connection.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp, err := s.stamps()
	if err == nil && stamp != s.stamp {
		err = s.load(stamp)
		if err == nil {
			s.lastErr = nil
		}
	}
	if err != nil && (s.lastErr == nil || err.Error() != s.lastErr.Error()) {
		s.lastErr = err
		if s.onError != nil {
			s.onError(err)
		}
	}
	return s.cert, nil
}

// ServerConfig is the TLS configuration of a server presenting c: TLS 1.2
// at least, as Build asks of the servers it connects to.
func ServerConfig(c *ServerCert) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}
