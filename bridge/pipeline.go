package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/sinks"
)

// Pipeline states the bridge itself reports, besides the source worker's own
// (connecting, connected, backoff, ...).
const (
	// StateStarting: the sink or worker is being set up.
	StateStarting = "starting"
	// StateStandby: another replica holds the lease.
	StateStandby = "standby"
	// StateFailed: setting up failed; the bridge retries with backoff.
	StateFailed = "failed"
	// StateStopped: the upstream server ended the feed (HTTP 204) or the
	// pipeline was stopped.
	StateStopped = "stopped"
)

// worker is what the bridge needs from a source worker (sources.Worker).
type worker interface {
	Run(ctx context.Context) error
	Status() PipelineStatus
}

// PipelineStatus is one pipeline's state as /api/status and /readyz report it.
type PipelineStatus struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Ready       bool   `json:"ready"`
	Sink        string `json:"sink"`
	URL         string `json:"url"`
	LastEventID string `json:"last_event_id"`
	Received    uint64 `json:"received"`
	Forwarded   uint64 `json:"forwarded"`
	Filtered    uint64 `json:"filtered"`
	Failed      uint64 `json:"failed"`
	Reconnects  uint64 `json:"reconnects"`
	// CheckpointError is why saving the checkpoint fails (empty when it
	// works); the pipeline is then not ready, and pauses once Unsaved
	// reaches checkpoint_max_unsaved.
	CheckpointError      string    `json:"checkpoint_error,omitempty"`
	CheckpointErrorSince time.Time `json:"checkpoint_error_since,omitzero"`
	// Unsaved counts acknowledged events not yet in the checkpoint.
	Unsaved     uint64    `json:"unsaved"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Since is when the current connection (or bridge state) began.
	Since time.Time `json:"since,omitzero"`
	// NextRetryAt is when a pipeline in backoff reconnects.
	NextRetryAt time.Time `json:"next_retry_at,omitzero"`
	// CheckpointAt is when the checkpoint last advanced (the pipeline's
	// start before its first checkpoint); the status page shows its age.
	CheckpointAt time.Time `json:"checkpoint_at,omitzero"`
	// Owner is the replica holding the pipeline's lease and LeaseSince
	// when it took it (cluster.enabled only).
	Owner      string    `json:"owner,omitempty"`
	LeaseSince time.Time `json:"lease_since,omitzero"`
}

// pipeline supervises one configured pipeline: it holds the lease, opens the
// sink, runs the worker, and retries set-up failures with backoff.
type pipeline struct {
	name   string
	cfg    config.Pipeline
	b      *Bridge
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	w       worker
	state   string
	lastErr string
	last    PipelineStatus // the last worker's status, kept when it stops
	since   time.Time

	// drainErr is why the final drain failed (set before done closes).
	drainErr error
	// stopBy is when whoever stopped the pipeline stops waiting for it
	// (zero while it runs); the sink's close must end before then.
	stopBy time.Time
}

// startPipeline starts p under the run context. Callers hold reloadMu.
func (b *Bridge) startPipeline(pc config.Pipeline) {
	ctx, cancel := context.WithCancel(b.runCtx)
	p := &pipeline{
		name:   pc.Name,
		cfg:    pc,
		b:      b,
		log:    b.log.With("pipeline", pc.Name),
		cancel: cancel,
		done:   make(chan struct{}),
		state:  StateStarting,
		since:  time.Now(),
	}
	b.mu.Lock()
	b.pipelines[pc.Name] = p
	prev := b.draining[pc.Name]
	b.mu.Unlock()
	metrics.InitPipeline(pc.Name, pc.Sink.Kind)
	go p.supervise(ctx, prev)
}

// stopPipeline stops and forgets a pipeline, waiting for its drain within
// shutdown_timeout. Callers hold reloadMu.
func (b *Bridge) stopPipeline(name string) {
	b.mu.Lock()
	p := b.pipelines[name]
	delete(b.pipelines, name)
	timeout := b.shutdownTimeoutLocked()
	b.mu.Unlock()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	p.stop(deadline)
	if err := p.wait(ctx); err != nil {
		p.log.Error("pipeline did not stop in time; a replacement waits until it has", "err", err)
		b.mu.Lock()
		b.draining[name] = p
		b.mu.Unlock()
		go func() {
			// p's worker is bounded by its own shutdown timeout and the
			// sink close by its deadline: done closes.
			<-p.done
			b.mu.Lock()
			if b.draining[name] == p {
				delete(b.draining, name)
			}
			b.mu.Unlock()
		}()
	}
}

// stop cancels the pipeline, whose caller waits for it until deadline.
func (p *pipeline) stop(deadline time.Time) {
	p.mu.Lock()
	p.stopBy = deadline
	p.mu.Unlock()
	p.cancel()
}

// contextCloser is a sink whose Close can be bounded (the Kafka sink's
// writer otherwise waits for batches a silent broker never acknowledges).
type contextCloser interface {
	CloseContext(ctx context.Context) error
}

// closeSink closes sink within what is left of the shutdown budget once
// the pipeline is stopped, or within shutdown_timeout when the pipeline
// only restarts, so that neither this goroutine nor the sink's outlives
// the caller's wait (Run, Reload).
func (p *pipeline) closeSink(sink sinks.Sink, shutdownTimeout time.Duration) error {
	cc, ok := sink.(contextCloser)
	if !ok {
		return sink.Close()
	}
	p.mu.Lock()
	deadline := p.stopBy
	p.mu.Unlock()
	if deadline.IsZero() {
		deadline = time.Now().Add(shutdownTimeout)
	} else {
		// Keep a little of the budget for what follows the close (the
		// supervisor ending, the brokers closing).
		deadline = deadline.Add(-shutdownTimeout / 8)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return cc.CloseContext(ctx)
}

// wait waits for the pipeline to stop and returns why its drain failed,
// if it did (e.g. events were not checkpointed in time: they will be
// fetched again on restart).
func (p *pipeline) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.drainErr
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}

func (p *pipeline) setState(state string, err error) {
	p.mu.Lock()
	changed := state != p.state
	p.state = state
	if err != nil {
		p.lastErr = err.Error()
	}
	if changed {
		p.since = time.Now()
	}
	p.mu.Unlock()
}

// supervise runs the pipeline until ctx is done or the server ends the feed.
// With prev (an earlier run of the same pipeline still draining) it starts
// only once prev has stopped.
func (p *pipeline) supervise(ctx context.Context, prev *pipeline) {
	defer close(p.done)
	if prev != nil {
		p.log.Warn("waiting for the previous run of this pipeline to stop before starting")
		select {
		case <-prev.done:
		case <-ctx.Done():
			p.setState(StateStopped, nil)
			return
		}
	}
	bo := retry.Backoff(time.Second, 30*time.Second)
	for {
		ran, err := p.runOnce(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				p.drainErr = err
				p.setState(StateStopped, err)
				p.log.Error("pipeline stopped without a clean drain", "err", err)
				return
			}
			p.setState(StateStopped, nil)
			p.log.Info("pipeline stopped")
			return
		}
		if isServerStopped(err) {
			p.setState(StateStopped, err)
			p.log.Warn("pipeline stopped by the upstream server", "err", err)
			return
		}
		if errors.Is(err, errLeaseLost) {
			// Another replica runs it now: wait for the lease again.
			bo.Reset()
			continue
		}
		if ran {
			bo.Reset()
		}
		if retry.Classify(err) == retry.NotConnected {
			// The broker is down, not the pipeline wrong: start again as
			// soon as it is back, not a backoff of up to 30 s later.
			p.setState(StateFailed, err)
			p.log.Warn("pipeline waiting for its broker", "err", err)
			if !p.waitBroker(ctx) {
				p.setState(StateStopped, nil)
				p.log.Info("pipeline stopped")
				return
			}
			continue
		}
		delay := bo.NextBackOff()
		p.setState(StateFailed, err)
		p.log.Error("pipeline failed, retrying", "err", err, "in", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			p.setState(StateStopped, nil)
			p.log.Info("pipeline stopped")
			return
		case <-t.C:
		}
	}
}

// brokerPoll is how often a pipeline whose broker is unreachable looks
// again: nats.go reconnects on its own, this only notices.
const brokerPoll = 100 * time.Millisecond

// waitBroker waits until the pipeline's broker connection is up again (the
// bridge's NATS connection, for a driver that publishes through it; other
// sinks have no standing connection to watch, so it waits one second),
// false if ctx ended first.
func (p *pipeline) waitBroker(ctx context.Context) bool {
	t := time.NewTicker(brokerPoll)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if !p.publishesThroughNATS() {
			if i >= int(time.Second/brokerPoll) {
				return true
			}
			continue
		}
		if nc := p.b.NATS(); nc != nil && nc.IsConnected() {
			return true
		}
	}
}

// publishesThroughNATS: the pipeline's sink driver uses the bridge's NATS
// connection.
func (p *pipeline) publishesThroughNATS() bool {
	r, ok := sinks.Lookup(p.cfg.Sink.Kind)
	return ok && r.Shared() == "nats"
}

// errLeaseLost ends a run whose lease was taken away.
var errLeaseLost = errors.New("lease lost")

// runOnce acquires the lease, opens the sink, runs a worker until it returns
// and closes the sink. ran reports whether the worker started.
func (p *pipeline) runOnce(ctx context.Context) (ran bool, err error) {
	p.setState(standbyOrStarting(p.b.leaser), nil)
	lost, release, err := p.b.leaser.Acquire(ctx, p.name)
	if err != nil {
		return false, fmt.Errorf("lease: %w", err)
	}
	defer release()
	p.setState(StateStarting, nil)

	p.b.mu.RLock()
	deps := sinks.Deps{NATS: p.b.nc, NATSPublish: p.b.pubNC, Kafka: kafkaConfig(p.b.cfg.Kafka), Logger: p.log}
	store := p.b.store
	// The worker gets most of the budget; the sink, NATS drain and server
	// stop need the rest.
	fullTimeout := p.b.shutdownTimeoutLocked()
	shutdownTimeout := fullTimeout * 3 / 4
	p.b.mu.RUnlock()
	sink, err := sinks.Open(ctx, deps, p.name, p.cfg.Sink.Kind, p.cfg.Sink.Block)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := p.closeSink(sink, fullTimeout); cerr != nil {
			p.log.Warn("closing sink", "err", cerr)
		}
	}()
	// The worker adds the pipeline attribute itself.
	var fence func() error
	if f, ok := p.b.leaser.(Fencer); ok {
		fence = func() error { return f.Valid(p.name) }
	}
	w, err := newWorker(p.cfg, sink, store, p.b.log, shutdownTimeout, fence)
	if err != nil {
		return false, err
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lostIt bool
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-lost: // a nil channel blocks forever: never lost
			lostIt = true
			p.log.Warn("pipeline lease lost, stopping")
			cancel()
		case <-wctx.Done():
		}
	}()
	p.mu.Lock()
	p.w = w
	p.mu.Unlock()
	p.log.Info("pipeline started", "url", redactURL(p.cfg.Source.URL), "sink", p.cfg.Sink.Kind)
	err = w.Run(wctx)
	cancel()
	<-watchDone
	p.mu.Lock()
	p.last = w.Status()
	p.w = nil
	p.mu.Unlock()
	if lostIt && ctx.Err() == nil {
		return true, errLeaseLost
	}
	if err == nil && ctx.Err() == nil {
		err = errors.New("worker returned without error before being stopped")
	}
	return true, err
}

// standbyOrStarting is the state shown while waiting for a lease: a lease
// that is always granted is not worth a "standby" flicker.
func standbyOrStarting(l Leaser) string {
	if _, ok := l.(LocalLeaser); ok {
		return StateStarting
	}
	return StateStandby
}

// status snapshots the pipeline.
func (p *pipeline) status() PipelineStatus {
	p.mu.Lock()
	w, state, lastErr, last, since := p.w, p.state, p.lastErr, p.last, p.since
	p.mu.Unlock()
	st := last
	if w != nil {
		st = w.Status()
	} else {
		// Between runs the bridge's own state is the news, and its error
		// (a sink that would not open, say) is newer than the worker's.
		st.State = state
		if lastErr != "" {
			st.LastError = lastErr
		}
		st.Since = since
	}
	st.Name = p.name
	st.Sink = p.cfg.Sink.Kind
	st.URL = redactURL(p.cfg.Source.URL)
	st.Ready = stateReady(st)
	st.CheckpointAt = metrics.CheckpointTime(p.name)
	if c := p.b.cluster; c != nil {
		o, _ := c.Owner(p.name)
		st.Owner, st.LeaseSince = o.Replica, o.Since
	}
	return st
}
