package bridge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testtls"
)

// TestServesStreamsOverHTTPS: with http.tls the bridge serves HTTPS, and
// over HTTP/2 a browser-like client holds more event streams than the six
// HTTP/1.1 connections a browser opens to one host, all on one
// connection, each receiving events in order. HTTP/1.1 over TLS works too.
func TestServesStreamsOverHTTPS(t *testing.T) {
	r := startHTTPS(t, nil)
	base := r.base
	roots := x509.NewCertPool()
	roots.AddCert(mustParse(t, r.cert.TLS.Certificate[0]))

	var dials atomic.Int32
	h2 := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer h2.CloseIdleConnections()
	h1 := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}
	defer h1.CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const streams = 8 // more than a browser's six HTTP/1.1 connections
	type result struct {
		proto int
		err   error
	}
	results := make(chan result, streams+1)
	subscribe := func(rt http.RoundTripper, connected chan<- struct{}) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse/ticks", nil)
		resp, err := rt.RoundTrip(req)
		if connected != nil {
			close(connected)
		}
		if err != nil {
			results <- result{err: err}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			results <- result{err: &statusError{resp.Status}}
			return
		}
		results <- result{proto: resp.ProtoMajor, err: readIncreasingIDs(bufio.NewReader(resp.Body), 5)}
	}
	// The first stream opens the connection, as a page's first
	// EventSource would; the others then share it.
	connected := make(chan struct{})
	go subscribe(h2, connected)
	<-connected
	for range streams - 1 {
		go subscribe(h2, nil)
	}
	go subscribe(h1, nil)
	var h2s, h1s int
	for range streams + 1 {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		switch res.proto {
		case 2:
			h2s++
		case 1:
			h1s++
		}
	}
	if h2s != streams || h1s != 1 {
		t.Fatalf("%d streams over HTTP/2 and %d over HTTP/1.1, want %d and 1", h2s, h1s, streams)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for %d HTTP/2 streams, want 1", n, streams)
	}
}

// httpsBridge is a bridge serving HTTPS with a self-signed certificate:
// a pipeline of ticks into NATS and their stream at /sse/ticks.
type httpsBridge struct {
	*running
	cert testtls.Cert
}

// startHTTPS runs an httpsBridge; its base is the https URL. cors, if
// not nil, is the stream's.
func startHTTPS(t *testing.T, cors *config.CORS) httpsBridge {
	t.Helper()
	f := newFeed(t)
	cert := testtls.SelfSigned(t, t.TempDir(), "localhost")
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		HTTP:      config.HTTP{TLS: &config.ServerTLS{CertFile: cert.CertFile, KeyFile: cert.KeyFile}},
		NATS:      config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{pipelineCfg("ticks", f.url("/ticks"))},
		Streams:   []config.Stream{{Path: "/sse/ticks", NATS: &config.NATSStream{Subject: "t.ticks"}, CORS: cors}},
	}
	r := start(t, cfg)
	r.base = "https://" + strings.TrimPrefix(r.base, "http://")
	return httpsBridge{running: r, cert: cert}
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "status " + e.status }

// readIncreasingIDs reads n events and checks that their ids (the
// stream's sequence numbers) increase by one.
func readIncreasingIDs(br *bufio.Reader, n int) error {
	var ids []string
	for len(ids) < n {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if id, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "id:"); ok {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	return consecutive(ids)
}

// consecutive checks that ids are increasing sequence numbers without a
// gap.
func consecutive(ids []string) error {
	for i, id := range ids {
		seq, err := strconv.Atoi(id)
		if err != nil {
			return err
		}
		if prev, _ := strconv.Atoi(ids[max(i-1, 0)]); i > 0 && seq != prev+1 {
			return fmt.Errorf("id %s after %d", id, prev)
		}
	}
	return nil
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHTTPSWithoutItsKeyFailsAtStart: a certificate that cannot be loaded
// stops Run at once, naming the setting and the file.
func TestHTTPSWithoutItsKeyFailsAtStart(t *testing.T) {
	cert := testtls.SelfSigned(t, t.TempDir(), "localhost")
	missing := filepath.Join(t.TempDir(), "key.pem")
	cfg := &config.Config{
		DataDir: t.TempDir(),
		HTTP:    config.HTTP{TLS: &config.ServerTLS{CertFile: cert.CertFile, KeyFile: missing}},
		NATS:    config.NATS{Embedded: true},
	}
	b, _ := newBridge(t, cfg)
	err := b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http.tls: key_file: stat "+missing) {
		t.Fatalf("Run = %v, want an error naming http.tls and the key file", err)
	}
}
