// Package demo is `ssebridge demo`: the whole product on one machine with
// nothing installed but Go. It runs the embedded NATS server with
// JetStream, a local SSE feed that ticks every second, a pipeline that
// ingests the feed into JetStream and a reverse stream that serves it back,
// all on one HTTP address.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

// Names the demo configuration uses.
const (
	// FeedPath serves the demo feed on the bridge's own HTTP server, so two
	// demos side by side only need two different -addr values.
	FeedPath = "/demo/feed"
	// StreamPath is the reverse stream of the ingested ticks.
	StreamPath = "/sse/demo"
	// Pipeline is the demo pipeline's name.
	Pipeline = "demo"
	// JetStreamName is the JetStream stream the pipeline creates.
	JetStreamName = "DEMO"
	// Subject prefix of the ingested events ("demo.tick").
	Subject = "demo"
)

// Options configure a demo.
type Options struct {
	// Addr is HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks one).
	Addr string
	// DataDir holds checkpoints and the JetStream store (required).
	DataDir string
	// Interval between ticks (default one second) and Burst events per tick.
	Interval time.Duration
	Burst    int
	// CORS lists the origins whose pages may read the reverse stream
	// ("*": any, which suits the demo's public ticks; empty: none).
	CORS   []string
	Logger *slog.Logger
}

// Demo is a configured, not yet running demo.
type Demo struct {
	b    *bridge.Bridge
	ln   net.Listener
	base string
}

// Config is the demo's bridge configuration for a server at addr, the
// listening HOST:PORT. cors, when not empty, lists the origins allowed to
// read the reverse stream from their pages.
func Config(addr, dataDir string, cors ...string) *config.Config {
	cfg := &config.Config{
		DataDir: dataDir,
		HTTP:    config.HTTP{Addr: addr},
		NATS:    config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{{
			Name: Pipeline,
			Source: config.Source{
				URL:    "http://" + addr + FeedPath,
				Events: []string{"tick"},
				Retry:  config.Retry{Initial: config.Duration(500 * time.Millisecond), Max: config.Duration(5 * time.Second)},
			},
			Sink: config.NewSink(natssink.Kind, natssink.Options{
				Subject:   Subject + ".{event}",
				JetStream: true,
				Stream: &natssink.StreamOptions{
					Name:     JetStreamName,
					Subjects: []string{Subject + ".>"},
					MaxAge:   time.Hour,
				},
			}),
		}},
		Streams: []config.Stream{{
			Path:      StreamPath,
			NATS:      &config.NATSStream{Subject: Subject + ".>", JetStream: &config.JetStreamSelector{Stream: JetStreamName}},
			Heartbeat: config.Duration(15 * time.Second),
		}},
	}
	if len(cors) > 0 {
		cfg.Streams[0].CORS = &config.CORS{AllowedOrigins: cors}
	}
	cfg.SetDefaults()
	return cfg
}

// New binds the address and prepares the bridge. Binding first makes a
// busy -addr fail at once and lets port 0 pick a free port for tests.
func New(opts Options) (*Demo, error) {
	if opts.DataDir == "" {
		return nil, errors.New("demo: data dir required")
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("demo: %w (another demo or program has this port: pick another with -addr, e.g. -addr 127.0.0.1:8081)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("demo: listen: %w", err)
	}
	hostPort := ln.Addr().String()
	cfg := Config(hostPort, opts.DataDir, opts.CORS...)
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	feed := &Feed{Interval: opts.Interval, Burst: opts.Burst}
	b, err := bridge.New(cfg, bridge.Options{
		Logger:   opts.Logger,
		Listener: ln,
		Handlers: map[string]http.Handler{"GET " + FeedPath: feed},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	return &Demo{b: b, ln: ln, base: "http://" + hostPort}, nil
}

// BaseURL is http://HOST:PORT of the demo.
func (d *Demo) BaseURL() string { return d.base }

// StreamURL is the reverse stream's URL.
func (d *Demo) StreamURL() string { return d.base + StreamPath }

// Bridge is the running bridge, for tests and status.
func (d *Demo) Bridge() *bridge.Bridge { return d.b }

// PrintURLs writes what to open and run. self is the command that runs
// ssebridge as the user started it ("./ssebridge", "go run ./cmd/ssebridge"),
// so the tail line printed works when pasted.
func (d *Demo) PrintURLs(w io.Writer, dataDir, self string) {
	fmt.Fprintf(w, "ssebridge demo: a feed ticking every second, ingested into embedded JetStream (data in %s), served back as SSE.\n\n", dataDir)
	fmt.Fprintf(w, "  status page:     %s/\n", d.base)
	fmt.Fprintf(w, "  reverse stream:  curl -N %s\n", d.StreamURL())
	fmt.Fprintf(w, "  or:              %s tail %s\n", self, d.StreamURL())
	fmt.Fprintf(w, "  upstream feed:   %s%s\n", d.base, FeedPath)
	fmt.Fprintf(w, "  metrics:         %s/metrics\n\n", d.base)
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
}

// WaitReady waits until the bridge started and reports ready (the pipeline
// connected, so the JetStream stream the reverse stream reads exists), or
// until ctx is done.
func (d *Demo) WaitReady(ctx context.Context) error {
	select {
	case <-d.b.Started():
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !d.b.Status().Ready {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Run runs the demo until ctx is done, then shuts it down gracefully.
func (d *Demo) Run(ctx context.Context) error { return d.b.Run(ctx) }
