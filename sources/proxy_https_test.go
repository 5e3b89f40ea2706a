package sources

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/testtls"
)

// httpsFeedHost names the HTTPS feed of TestHTTPSProxyFromEnvironment. It
// does not resolve (.invalid), so the worker can only reach it through the
// proxy, which does the dialing; and it is not a loopback name, which
// net/http would never send to a proxy.
const httpsFeedHost = "feed-tls.invalid"

// httpsProxyLn is the CONNECT proxy's listener. HTTPS_PROXY must name it
// before net/http first reads the proxy variables (once per process), so
// it is opened here, before TestMain; each run of the test serves it for
// its own duration. Between runs it only holds a socket, no goroutine.
var httpsProxyLn *net.TCPListener

func init() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("listen for the HTTPS proxy: %v", err))
	}
	httpsProxyLn = ln.(*net.TCPListener)
	// TestMain clears the lowercase variants and NO_PROXY, so this value
	// is the one net/http uses for https URLs.
	os.Setenv("HTTPS_PROXY", "http://"+ln.Addr().String())
}

// TestHTTPSProxyFromEnvironment: the worker's own client reaches an https
// feed through the CONNECT proxy named by HTTPS_PROXY, verifies the feed's
// certificate for the feed's host name through the tunnel, delivers the
// events in order, and reconnects through a new tunnel with Last-Event-ID
// after the feed drops, even in the middle of an event.
func TestHTTPSProxyFromEnvironment(t *testing.T) {
	feed := newRequestRecorder()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch feed.add(r) {
		case 1:
			sseHeaders(w)
			write(w, event(1, "\n")+event(2, "\n")+event(3, "\n")+"id: 4\ndata: cut sho")
			panic(http.ErrAbortHandler) // drop mid-event
		case 2:
			sseHeaders(w)
			write(w, event(startID(r), "\n")+event(startID(r)+1, "\n")+event(startID(r)+2, "\n"))
			panic(http.ErrAbortHandler) // drop between events
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	cert := testtls.SelfSigned(t, t.TempDir(), httpsFeedHost)
	pool := cert.Pool(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	proxy := startConnectProxy(t, httpsFeedHost+":443", srv.Listener.Addr().String())

	sink := newTestSink()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sleeps atomic.Int32
	w, err := New(Config{
		Name: tname(t), URL: "https://" + httpsFeedHost + "/stream",
		TLS: &tls.Config{RootCAs: pool},
		// Skip the backoff, and give up rather than spin if the worker
		// cannot reach the feed (e.g. it ignored HTTPS_PROXY and tried
		// to resolve the name itself).
		Sleep: func(ctx context.Context, d time.Duration) error {
			if sleeps.Add(1) > 5 {
				cancel()
			}
			return ctx.Err()
		},
	}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx); !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Run = %v, want ErrServerStopped (the feed's 204); %d tunnels, CONNECT targets %q, %d feed requests",
			err, len(proxy.dialedFrom()), proxy.targets(), len(feed.all()))
	}

	if got, want := sink.ids(), seq(1, 6); !eqStrings(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	reqs := feed.all()
	var lastIDs []string
	for _, r := range reqs {
		lastIDs = append(lastIDs, r.lastEventID)
	}
	if want := []string{"", "3", "6"}; !eqStrings(lastIDs, want) {
		t.Errorf("Last-Event-ID per request = %q, want %q", lastIDs, want)
	}
	if got := proxy.targets(); !eqStrings(got, []string{httpsFeedHost + ":443", httpsFeedHost + ":443", httpsFeedHost + ":443"}) {
		t.Errorf("CONNECT targets = %q, want one per connection for %s:443", got, httpsFeedHost)
	}
	// Every request reached the feed from a connection the proxy dialed,
	// each on its own: the reconnects went through the proxy again.
	dialed := proxy.dialedFrom()
	for i, r := range reqs {
		if !slices.Contains(dialed, r.remoteAddr) {
			t.Errorf("request %d came from %s, not from a proxy tunnel %q", i+1, r.remoteAddr, dialed)
		}
		if r.host != httpsFeedHost {
			t.Errorf("request %d: Host %q, want %q", i+1, r.host, httpsFeedHost)
		}
	}
	if len(dialed) != len(reqs) {
		t.Errorf("%d tunnels for %d requests", len(dialed), len(reqs))
	}
}

// requestRecorder records what the feed needs to tell about each request.
type requestRecorder struct {
	mu   sync.Mutex
	reqs []feedRequest
}

type feedRequest struct {
	lastEventID, remoteAddr, host string
}

func newRequestRecorder() *requestRecorder { return &requestRecorder{} }

// add records r and returns its 1-based number.
func (rr *requestRecorder) add(r *http.Request) int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.reqs = append(rr.reqs, feedRequest{lastEventID: r.Header.Get("Last-Event-ID"), remoteAddr: r.RemoteAddr, host: r.Host})
	return len(rr.reqs)
}

func (rr *requestRecorder) all() []feedRequest {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Clone(rr.reqs)
}

// connectProxy is a minimal HTTPS proxy: it answers CONNECT for one target
// by dialing the backend it stands for and piping bytes both ways. It sees
// only ciphertext after the 200, like a real proxy.
type connectProxy struct {
	target, backend string

	mu     sync.Mutex
	seen   []string   // CONNECT targets, in order
	local  []string   // local address of every backend connection dialed
	conns  []net.Conn // open tunnel ends, closed at cleanup
	closed bool
	pipes  sync.WaitGroup
}

// startConnectProxy serves httpsProxyLn until the test ends, then closes
// every tunnel and waits for its goroutines.
func startConnectProxy(t *testing.T, target, backend string) *connectProxy {
	t.Helper()
	p := &connectProxy{target: target, backend: backend}
	if err := httpsProxyLn.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ErrorLog: stdlog.New(io.Discard, "", 0)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(keepOpenListener{httpsProxyLn})
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.pipes.Wait()
	})
	return p
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "proxy: CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Host)
	p.mu.Unlock()
	if r.Host != p.target {
		http.Error(w, "proxy: unexpected target "+r.Host, http.StatusBadGateway)
		return
	}
	up, err := net.Dial("tcp", p.backend)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	down, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = up.Close()
		_ = down.Close()
		return
	}
	p.local = append(p.local, up.LocalAddr().String())
	p.conns = append(p.conns, up, down)
	p.pipes.Add(2)
	p.mu.Unlock()
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		_ = up.Close()
		_ = down.Close()
	}
	// Either side ending ends the tunnel, as the feed dropping must reach
	// the worker as a dropped connection.
	pipe := func(dst net.Conn, src io.Reader) {
		defer p.pipes.Done()
		_, _ = io.Copy(dst, src)
		_ = up.Close()
		_ = down.Close()
	}
	go pipe(up, buf.Reader) // buf.Reader holds what the client sent early
	go pipe(down, up)
}

func (p *connectProxy) targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

func (p *connectProxy) dialedFrom() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.local)
}

// keepOpenListener stops Accept on Close without closing the socket, so
// that the address in HTTPS_PROXY stays valid for the next run of the
// test (-count=N). Serve only checks that the server is shutting down.
type keepOpenListener struct{ *net.TCPListener }

func (l keepOpenListener) Close() error {
	return l.SetDeadline(time.Now())
}
