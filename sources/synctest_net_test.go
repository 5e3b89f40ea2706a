package sources

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// pipeNet is an in-memory network for tests inside a synctest bubble: an
// http.Server serves connections made of net.Pipe ends, so every wait in
// the worker (idle timer, backoff, response headers) runs on the bubble's
// fake clock and a loaded machine cannot change the outcome.
type pipeNet struct {
	ln   *pipeListener
	srv  *http.Server
	done chan struct{}
	tr   *http.Transport
}

// newPipeNet serves h; Close stops the server and the client transport.
func newPipeNet(h http.Handler) *pipeNet {
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	p := &pipeNet{ln: ln, done: make(chan struct{}), srv: &http.Server{Handler: h}}
	p.tr = &http.Transport{DialContext: ln.dial, MaxIdleConnsPerHost: 1}
	go func() { defer close(p.done); _ = p.srv.Serve(ln) }()
	return p
}

// Client is an http.Client dialling the pipe network.
func (p *pipeNet) Client() *http.Client {
	return &http.Client{Transport: p.tr, CheckRedirect: checkRedirect}
}

// Close ends every connection and waits for the server to stop.
func (p *pipeNet) Close() {
	p.tr.CloseIdleConnections()
	_ = p.srv.Close()
	<-p.done
}

// pipeListener hands the server the far ends of dialled pipes.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
