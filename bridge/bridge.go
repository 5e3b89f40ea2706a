// Package bridge is the ssebridge runtime: it turns a config.Config into
// running pipelines (SSE source → sink), reverse streams and the operational
// HTTP endpoints, reloads them, and shuts them down without losing events.
//
// One Bridge owns everything it starts: the embedded NATS server or the
// connection to an external one, a sink and a source worker per pipeline, a
// reverse stream per path, and one HTTP server on http.addr serving the
// streams, /metrics, /healthz, /readyz, /api/status and the status page.
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/cluster"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/natsserver"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
	"github.com/ssebridge/ssebridge/streams"
)

// DefaultShutdownTimeout bounds graceful shutdown when the config sets none
// (a Config built in code without SetDefaults).
const DefaultShutdownTimeout = config.DefaultShutdownTimeout

// Sentinel errors callers may branch on.
var (
	// ErrShutdownTimeout is returned by Run when draining did not finish
	// within shutdown_timeout; some checkpoints may be older than the last
	// acknowledged event (events are then repeated on restart, not lost).
	ErrShutdownTimeout = errors.New("bridge: graceful shutdown timed out")
	// ErrAlreadyRun is returned by a second call to Run: a Bridge is single use.
	ErrAlreadyRun = errors.New("bridge: Run called twice")
	// ErrDataDirInUse is returned by Run when another bridge (in this
	// process or another) runs on the same data_dir: the two would share one
	// JetStream store and overwrite each other's checkpoints.
	ErrDataDirInUse = errors.New("data_dir is in use by another ssebridge")
)

// Options are the runtime's dependencies that do not belong in the YAML.
type Options struct {
	// Logger receives one line per state change (nil: slog.Default()).
	Logger *slog.Logger
	// Leaser decides who runs each pipeline (nil: LocalLeaser).
	Leaser Leaser
	// Handlers are extra routes on the HTTP server, keyed by
	// http.ServeMux pattern ("GET /demo/feed"); the demo mounts its feed
	// here. Stream paths take precedence.
	Handlers map[string]http.Handler
	// Listener, when set, is used instead of listening on http.addr
	// (tests pass a listener on a free port). Run closes it.
	Listener net.Listener
}

// Bridge runs one configuration. Create it with New, run it with Run.
type Bridge struct {
	opts   Options
	log    *slog.Logger
	leaser Leaser

	// reloadMu serialises Reload against itself and against shutdown.
	reloadMu sync.Mutex

	mu        sync.RWMutex
	cfg       *config.Config
	running   bool
	stopped   bool
	pipelines map[string]*pipeline
	// draining holds pipelines a reload stopped that did not finish their
	// drain in time: a replacement of the same name waits for them, since
	// two runs of one pipeline would read the feed twice and the old one's
	// last checkpoint save could move the checkpoint back.
	draining map[string]*pipeline
	streams  map[string]*stream
	// subLimit is http.max_subscribers, shared by every path's streams.Server.
	subLimit streams.SubscriberLimit

	// Set up by Run.
	runCtx context.Context
	ns     *natsserver.Server
	nc     *nats.Conn
	// pubNC carries core NATS publishes only: no subscription is ever made
	// on it, so its asynchronous errors are the publish refusals alone
	// (see sinks.Deps.NATSPublish).
	pubNC *nats.Conn
	store checkpoint.Store
	addr  net.Addr
	kafka kafkaProbe
	// cluster is the replica's lease and checkpoint bucket with
	// cluster.enabled (it is then leaser and store); clusterDone is closed
	// when its loop returned.
	cluster     *cluster.Cluster
	clusterDone chan struct{}

	started chan struct{}
	runOnce sync.Once
}

// New checks what can be checked without side effects and returns a Bridge
// ready to Run. cfg should come from config.Load (defaults applied).
func New(cfg *config.Config, opts Options) (*Bridge, error) {
	if cfg == nil {
		return nil, errors.New("bridge: nil config")
	}
	if cfg.DataDir == "" && (cfg.NATS.Embedded || len(cfg.Pipelines) > 0) {
		return nil, errors.New("bridge: data_dir is required (checkpoints, embedded JetStream store)")
	}
	if cfg.NATS.Embedded && cfg.NATS.URL != "" {
		return nil, errors.New("bridge: nats.url and nats.embedded are mutually exclusive")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	leaser := opts.Leaser
	if leaser == nil {
		leaser = LocalLeaser{}
	}
	return &Bridge{
		opts:      opts,
		log:       log,
		leaser:    leaser,
		cfg:       cfg,
		pipelines: map[string]*pipeline{},
		draining:  map[string]*pipeline{},
		streams:   map[string]*stream{},
		started:   make(chan struct{}),
	}, nil
}

// Started is closed once Run has connected the brokers, bound the HTTP
// server and started every pipeline and stream.
func (b *Bridge) Started() <-chan struct{} { return b.started }

// Addr is the HTTP server's address, valid after Started is closed.
func (b *Bridge) Addr() net.Addr {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.addr
}

// NATS is the bridge's NATS connection (nil without NATS), valid after
// Started is closed.
func (b *Bridge) NATS() *nats.Conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.nc
}

// Run starts everything, serves until ctx is done, then shuts down
// gracefully: the HTTP server stops accepting, every worker drains and
// writes its checkpoint, streams disconnect their subscribers, sinks close,
// the NATS connection drains and the embedded server stops, all within
// shutdown_timeout. It returns nil on a clean stop.
func (b *Bridge) Run(ctx context.Context) (err error) {
	first := false
	b.runOnce.Do(func() { first = true })
	if !first {
		return ErrAlreadyRun
	}
	b.reloadMu.Lock()
	cfg := b.cfg
	if cfg.DataDir != "" {
		// Before anything writes there: a second bridge on the same
		// directory would share its JetStream store and checkpoints.
		release, err := lockDataDir(cfg.DataDir)
		if err != nil {
			b.reloadMu.Unlock()
			if b.opts.Listener != nil {
				b.opts.Listener.Close()
			}
			return err
		}
		defer release()
	}
	// The certificate before the brokers: a server that cannot serve
	// HTTPS should fail at once, naming the file.
	var tlsCfg *tls.Config
	if t := cfg.HTTP.TLS; t != nil {
		sc, err := tlsconf.LoadServerCert(t.CertFile, t.KeyFile, func(err error) {
			b.log.Error("http.tls: the changed certificate files could not be loaded; still serving the previous certificate", "err", err)
		})
		if err != nil {
			b.reloadMu.Unlock()
			if b.opts.Listener != nil {
				b.opts.Listener.Close()
			}
			return fmt.Errorf("bridge: http.tls: %w", err)
		}
		tlsCfg = tlsconf.ServerConfig(sc)
	}
	if err := b.connect(cfg); err != nil {
		b.reloadMu.Unlock()
		b.closeBrokers(context.Background())
		if b.opts.Listener != nil {
			b.opts.Listener.Close()
		}
		return err
	}
	ln := b.opts.Listener
	if ln == nil {
		addr := cfg.HTTP.Addr
		if addr == "" {
			addr = config.DefaultHTTPAddr
		}
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			b.reloadMu.Unlock()
			b.closeBrokers(context.Background())
			return fmt.Errorf("bridge: http.addr: %w", err)
		}
	}
	// Requests run under baseCtx, cancelled at the end of shutdown: a
	// long-lived response that is not a stream (the demo feed, say) must
	// not hold the HTTP server open until shutdown_timeout.
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           b.handler(),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsCfg, // HTTP/2 comes with it
		// No WriteTimeout: SSE responses last as long as the subscriber.
	}
	// Pipelines and streams outlive the caller's ctx until they are drained,
	// so they run under a context only shutdown cancels.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	b.mu.Lock()
	b.runCtx = runCtx
	b.running = true
	b.addr = ln.Addr()
	b.mu.Unlock()
	if b.cluster != nil {
		b.cluster.SetPipelines(pipelineNames(cfg))
		// Stopped only after shutdown released every lease.
		clusterCtx, stopCluster := context.WithCancel(context.Background())
		go func() { defer close(b.clusterDone); _ = b.cluster.Run(clusterCtx) }()
		defer func() { stopCluster(); <-b.clusterDone }()
	}

	serveErr := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- srv.Serve(ln)
	}()

	for _, s := range cfg.Streams {
		b.startStream(s)
	}
	for _, p := range cfg.Pipelines {
		b.startPipeline(p)
	}
	b.reloadMu.Unlock()
	b.log.Info("bridge started", "http", ln.Addr().String(), "pipelines", len(cfg.Pipelines), "streams", len(cfg.Streams), "nats", natsMode(cfg.NATS))
	close(b.started)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("bridge: http server: %w", err)
			b.log.Error("http server failed, shutting down", "err", err)
		}
		serveErr <- nil
	}
	if err := b.shutdown(srv, serveErr, cancelBase); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// shutdownTimeoutLocked is shutdown_timeout, or its default for a Config
// built in code without SetDefaults: the one place that default is applied.
// b.mu is held.
func (b *Bridge) shutdownTimeoutLocked() time.Duration {
	if d := b.cfg.ShutdownTimeout.D(); d > 0 {
		return d
	}
	return DefaultShutdownTimeout
}

func pipelineNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Pipelines))
	for i, p := range cfg.Pipelines {
		names[i] = p.Name
	}
	return names
}

func natsMode(n config.NATS) string {
	switch {
	case n.Embedded:
		return "embedded"
	case n.URL != "":
		return "external"
	}
	return "none"
}

// connect starts the embedded server or dials the external one, and opens
// the checkpoint store.
func (b *Bridge) connect(cfg *config.Config) error {
	if cfg.NATS.Embedded {
		ns, err := natsserver.Start(natsserver.Options{DataDir: cfg.DataDir, Listen: cfg.NATS.Listen, Logger: b.log})
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		// natsconn's connect handler would log the placeholder URL of an
		// in-process connection; the bridge's own start line says it all.
		nc, err := ns.Connect(append(natsconn.Handlers(b.log), nats.ConnectHandler(nil))...)
		if err != nil {
			ns.Shutdown()
			return fmt.Errorf("bridge: %w", err)
		}
		pub, err := ns.Connect(append(natsconn.Handlers(b.log.With("conn", "publish")), nats.ConnectHandler(nil), nats.Name("ssebridge-publish"))...)
		if err != nil {
			nc.Close()
			ns.Shutdown()
			return fmt.Errorf("bridge: %w", err)
		}
		b.mu.Lock()
		b.ns, b.nc, b.pubNC = ns, nc, pub
		b.mu.Unlock()
		if u := ns.ClientURL(); u != "" {
			b.log.Info("embedded NATS server listening", "url", u)
		}
	} else if cfg.NATS.URL != "" {
		nc, err := connectExternalNATS(cfg.NATS, "ssebridge", b.log)
		if err != nil {
			return fmt.Errorf("bridge: nats: %w", err)
		}
		pub, err := connectExternalNATS(cfg.NATS, "ssebridge-publish", b.log.With("conn", "publish"))
		if err != nil {
			nc.Close()
			return fmt.Errorf("bridge: nats: %w", err)
		}
		b.mu.Lock()
		b.nc, b.pubNC = nc, pub
		b.mu.Unlock()
	}
	if cfg.Cluster.Enabled && b.nc != nil {
		// Replicas share leases and checkpoints in the bucket; data_dir
		// keeps the embedded server's store only.
		c := cluster.New(b.nc, cluster.Options{Bucket: cfg.Cluster.Bucket, LeaseTTL: cfg.Cluster.LeaseTTL.D(),
			ReplicaID: cfg.Cluster.ReplicaID, Logger: b.log})
		b.mu.Lock()
		b.cluster, b.clusterDone, b.leaser, b.store = c, make(chan struct{}), c, c
		b.mu.Unlock()
		b.log.Info("cluster replica", "replica", c.ID(), "bucket", cfg.Cluster.Bucket, "lease_ttl", cfg.Cluster.LeaseTTL.D().String())
		return nil
	}
	if len(cfg.Pipelines) > 0 || cfg.DataDir != "" {
		store, err := openCheckpointStore(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("bridge: checkpoints: %w", err)
		}
		b.mu.Lock()
		b.store = store
		b.mu.Unlock()
	}
	return nil
}

// workersLocked snapshots the running pipelines and streams so that the
// caller can act on them (stop, wait, read status) after releasing b.mu:
// those calls can block, and must not hold the lock that reload and the
// HTTP handlers need. The caller holds b.mu, read or write as it needs
// (shutdown writes b.stopped under the same lock, Status only reads).
func (b *Bridge) workersLocked() ([]*pipeline, []*stream) {
	pipes := make([]*pipeline, 0, len(b.pipelines))
	for _, p := range b.pipelines {
		pipes = append(pipes, p)
	}
	strs := make([]*stream, 0, len(b.streams))
	for _, s := range b.streams {
		strs = append(strs, s)
	}
	return pipes, strs
}

// shutdown runs the graceful stop sequence within shutdown_timeout.
func (b *Bridge) shutdown(srv *http.Server, serveErr chan error, cancelRequests context.CancelFunc) error {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	b.mu.Lock()
	b.stopped = true
	timeout := b.shutdownTimeoutLocked()
	pipes, strs := b.workersLocked()
	b.mu.Unlock()
	b.log.Info("bridge shutting down", "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// 1. Stop accepting: Shutdown closes the listeners at once, then waits
	// for the open (SSE) connections, which step 3 ends.
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(ctx) }()

	var errs []error
	// 2. Drain every worker; each writes its checkpoint and closes its sink.
	// A replica first leaves the cluster, so that the others take its
	// pipelines over as soon as it releases them.
	if b.cluster != nil {
		b.cluster.Close(ctx)
	}
	deadline, _ := ctx.Deadline()
	for _, p := range pipes {
		p.stop(deadline)
	}
	for _, p := range pipes {
		if err := p.wait(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: %w", p.name, err))
		}
	}
	// 3. Disconnect subscribers.
	for _, s := range strs {
		if err := s.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stream %q: %w", s.cfg.Path, err))
		}
	}
	// Whatever still streams is not ours to drain.
	cancelRequests()
	if err := <-httpDone; err != nil {
		_ = srv.Close()
		errs = append(errs, fmt.Errorf("http server: %w", err))
	}
	<-serveErr
	// 4. Brokers last: sinks flushed through them until now.
	if err := b.closeBrokers(ctx); err != nil {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		errs = append(errs, ErrShutdownTimeout)
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		b.log.Error("bridge stopped with errors", "err", err)
		return err
	}
	b.log.Info("bridge stopped")
	return nil
}

// closeBrokers drains the NATS connection and stops the embedded server.
func (b *Bridge) closeBrokers(ctx context.Context) error {
	b.mu.Lock()
	nc, pub, ns := b.nc, b.pubNC, b.ns
	b.mu.Unlock()
	var err error
	if pub != nil {
		// The sinks are closed: nothing is left to flush.
		pub.Close()
	}
	if nc != nil {
		if nc.IsConnected() {
			closed := make(chan struct{})
			nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
			if derr := nc.Drain(); derr == nil {
				select {
				case <-closed:
				case <-ctx.Done():
					err = fmt.Errorf("nats drain: %w", ctx.Err())
				}
			}
		}
		nc.Close()
	}
	if ns != nil {
		ns.Shutdown()
	}
	return err
}

// Reload applies cfg's pipelines and streams: those added, removed or
// changed are started or stopped; the others keep running untouched.
// Settings that need a restart (data_dir, shutdown_timeout, http, nats,
// kafka, log.format) are kept and a warning names them. Called before
// Run, it only replaces the config.
func (b *Bridge) Reload(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("bridge: reload: nil config")
	}
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return errors.New("bridge: reload: bridge is shutting down")
	}
	old := b.cfg
	if !b.running {
		b.cfg = cfg
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()

	if fields := restartFields(old, cfg); len(fields) > 0 {
		b.log.Warn("reload: settings need a restart to change, keeping the running ones", "settings", fields)
	}
	oldP := map[string]config.Pipeline{}
	for _, p := range old.Pipelines {
		oldP[p.Name] = p
	}
	newP := map[string]config.Pipeline{}
	for _, p := range cfg.Pipelines {
		newP[p.Name] = p
	}
	oldS := map[string]config.Stream{}
	for _, s := range old.Streams {
		oldS[s.Path] = s
	}
	newS := map[string]config.Stream{}
	for _, s := range cfg.Streams {
		newS[s.Path] = s
	}

	var added, removed, changed []string
	// Stop first, so a changed pipeline never runs twice at once.
	for name, op := range oldP {
		np, ok := newP[name]
		switch {
		case !ok:
			removed = append(removed, name)
			b.stopPipeline(name)
			metrics.Forget("pipeline", name)
		case !reflect.DeepEqual(op, np):
			changed = append(changed, name)
			b.stopPipeline(name)
		}
	}
	for path, prev := range oldS {
		ns, ok := newS[path]
		switch {
		case !ok:
			removed = append(removed, path)
			b.stopStream(path)
			metrics.Forget("stream", path)
		case !reflect.DeepEqual(prev, ns):
			changed = append(changed, path)
			b.stopStream(path)
		}
	}
	for _, s := range cfg.Streams {
		prev, ok := oldS[s.Path]
		if !ok {
			added = append(added, s.Path)
		}
		if !ok || !reflect.DeepEqual(prev, s) {
			b.startStream(s)
		}
	}
	for _, p := range cfg.Pipelines {
		op, ok := oldP[p.Name]
		if !ok {
			added = append(added, p.Name)
		}
		if !ok || !reflect.DeepEqual(op, p) {
			b.startPipeline(p)
		}
	}

	// The running config: new pipelines and streams, old everything else.
	merged := *old
	merged.Pipelines = cfg.Pipelines
	merged.Streams = cfg.Streams
	merged.File = cfg.File
	b.mu.Lock()
	b.cfg = &merged
	b.mu.Unlock()
	if b.cluster != nil {
		b.cluster.SetPipelines(pipelineNames(&merged))
	}
	b.log.Info("config reloaded", "added", added, "removed", removed, "changed", changed)
	return nil
}

// restartFields names the top-level settings that differ and cannot change
// while running.
func restartFields(a, b *config.Config) []string {
	var out []string
	if a.DataDir != b.DataDir {
		out = append(out, "data_dir")
	}
	// Each running worker took its share of the drain budget when it
	// started: a new value would apply to some pipelines and not others.
	if a.ShutdownTimeout != b.ShutdownTimeout {
		out = append(out, "shutdown_timeout")
	}
	if !reflect.DeepEqual(a.HTTP, b.HTTP) {
		out = append(out, "http")
	}
	if !reflect.DeepEqual(a.NATS, b.NATS) {
		out = append(out, "nats")
	}
	if !reflect.DeepEqual(a.Kafka, b.Kafka) {
		out = append(out, "kafka")
	}
	// log.level is applied by the caller through its slog.LevelVar.
	if a.Log.Format != b.Log.Format {
		out = append(out, "log.format")
	}
	return out
}
