package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTP/2 ("-h2"): the server under test serves HTTPS with a throw-away
// certificate, and the subscribers share HTTP/2 connections,
// streamsPerConn each, as browsers' EventSources to one host do. One
// socket carries many subscribers, so counts past the open-file limit
// (100,000 here, where it is 20,000) can be measured; each subscriber
// still costs the server a goroutine and net/http's per-stream state.

// streamsPerConn is net/http's default limit of concurrent streams on one
// HTTP/2 connection.
const streamsPerConn = 250

// serveHTTPS serves h on ln over TLS, HTTP/2 included.
func serveHTTPS(ln net.Listener, h http.Handler) error {
	cert, err := throwAwayCert()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	return srv.ServeTLS(ln, "", "")
}

// throwAwayCert is a self-signed certificate for 127.0.0.1.
func throwAwayCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fanout"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// insecureTransport trusts any certificate: the bench's own.
func insecureTransport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the bench's throw-away certificate
		ForceAttemptHTTP2: true,
	}
}

// subscribeH2 opens n streams of url over HTTP/2 connections of
// streamsPerConn streams each and hands each response to got, which must
// not block. It returns once every stream has its response or failed.
func subscribeH2(ctx context.Context, url string, n int, got func(i int, resp *http.Response), failed func()) {
	for first := 0; first < n; first += streamsPerConn {
		tr := insecureTransport() // one connection each
		open := func(i int) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				if err == nil {
					resp.Body.Close()
				}
				failed()
				return
			}
			got(i, resp)
		}
		// The first stream opens the connection; the others share it
		// (started together, each would dial its own).
		open(first)
		var wg sync.WaitGroup
		for i := first + 1; i < min(first+streamsPerConn, n); i++ {
			wg.Add(1)
			go func() { defer wg.Done(); open(i) }()
		}
		wg.Wait()
	}
}
