// Package natsserver runs a real NATS server with JetStream inside the
// ssebridge process, so the bridge works with no broker installed
// (`nats: {embedded: true}`) and the demo needs nothing but Go.
//
// The server does not listen on any port unless asked: the bridge reaches it
// through an in-process connection (nats.InProcessServer), which needs no
// free port and cannot collide with a second bridge on the same machine.
package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrNotReady is returned when the server did not become ready in time, or
// reported a fatal error while starting.
var ErrNotReady = errors.New("embedded NATS server not ready")

// readyTimeout bounds how long Start waits for JetStream to recover its store.
const readyTimeout = 30 * time.Second

// Options configures the embedded server.
type Options struct {
	// DataDir is the bridge's data_dir; JetStream stores in DataDir/jetstream.
	DataDir string
	// Listen, "HOST:PORT", exposes the client port to other tools. Empty
	// keeps the server in-process only. A bare ":PORT" binds loopback, since
	// exposing a broker beyond the machine must be a deliberate choice.
	Listen string
	// Name is the server name (default "ssebridge").
	Name string
	// Logger receives the server's own log lines; nil discards them.
	Logger *slog.Logger
}

// Server is a running embedded NATS server.
type Server struct {
	srv *server.Server
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded NATS: data_dir is required for the JetStream store")
	}
	storeDir := filepath.Join(opts.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS: create store dir: %w", err)
	}
	name := opts.Name
	if name == "" {
		name = "ssebridge"
	}
	so := &server.Options{
		ServerName: name,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true, // the bridge owns signal handling
		NoLog:      opts.Logger == nil,
		DontListen: opts.Listen == "",
	}
	if opts.Listen != "" {
		host, port, err := splitListen(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: listen %q: %w", opts.Listen, err)
		}
		so.Host, so.Port = host, port
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	// Always installed, even without a Logger: a fatal start-up error
	// (the listen port taken, say) is only ever logged by nats-server,
	// and the wait below reports it instead of timing out.
	log := slog.New(slog.DiscardHandler)
	if opts.Logger != nil {
		log = opts.Logger.With("component", "nats-server")
	}
	adapter := &slogAdapter{log: log}
	srv.SetLoggerV2(adapter, false, false, false)
	srv.Start()
	deadline := time.Now().Add(readyTimeout)
	for !srv.ReadyForConnections(readyPoll) {
		fatal := adapter.fatal()
		if fatal == "" && time.Now().Before(deadline) {
			continue
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if fatal != "" {
			return nil, fmt.Errorf("embedded NATS: %w: %s", ErrNotReady, fatal)
		}
		return nil, fmt.Errorf("embedded NATS: %w within %s", ErrNotReady, readyTimeout)
	}
	return &Server{srv: srv}, nil
}

// readyPoll is how often the start-up wait looks for a fatal error.
const readyPoll = 100 * time.Millisecond

// splitListen parses HOST:PORT, defaulting the host to loopback.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		// nats-server treats 0 as "the default 4222"; -1 is its "pick a free one".
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Connect opens an in-process client connection to the server; it works
// whether or not the server listens on a port.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.srv), nats.Name("ssebridge")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: connect in process: %w", err)
	}
	return nc, nil
}

// ClientURL is the nats:// URL other tools can use, or "" when the server
// does not listen.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Shutdown stops the server and waits until it has flushed and released its
// store, so a new server can reopen the same data_dir right away.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// slogAdapter routes nats-server's printf-style log into slog, and keeps
// the first fatal message for the start-up wait.
type slogAdapter struct {
	log *slog.Logger

	mu        sync.Mutex
	firstFail string
}

// fatal returns the first fatal message logged, "" when there was none.
func (a *slogAdapter) fatal() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.firstFail
}

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.mu.Lock()
	if a.firstFail == "" {
		a.firstFail = msg
	}
	a.mu.Unlock()
	a.log.Error(msg)
}
func (a *slogAdapter) Errorf(format string, v ...any) { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
