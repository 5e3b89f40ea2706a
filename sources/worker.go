package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sse"
)

// Reconnect reasons, the values of the reason label of
// metrics.Reconnects. A bounded set, one per failure class.
const (
	ReasonEOF         = "eof"
	ReasonIdle        = "idle_timeout"
	ReasonNetwork     = "network"
	ReasonHTTP5xx     = "http_5xx"
	ReasonHTTP429     = "http_429"
	ReasonHTTP4xx     = "http_4xx"
	ReasonHTTPOther   = "http_other"
	ReasonContentType = "content_type"
	ReasonRedirect    = "redirect"
)

// minRetry is the smallest base delay: with a server retry of 0 the worker
// reconnects after about a millisecond and still backs off exponentially on
// repeated failures instead of spinning.
const minRetry = time.Millisecond

// notConnectedRetry is the longest a worker waits before trying an
// unreachable broker again.
const notConnectedRetry = time.Second

// checkpointSaveTimeout bounds one checkpoint write, also the final one
// after the sink context was cancelled.
const checkpointSaveTimeout = 10 * time.Second

var errShortWrite = errors.New("sink acknowledged fewer messages than given without an error")

// Sink is where a Worker delivers: a broker's sink (sinks.Sink satisfies
// it) or anything else that can acknowledge messages, such as ssebridge
// tail's printer.
//
// Write publishes msgs in order and returns the number of leading
// messages the broker acknowledged; with an error, the worker retries the
// rest with backoff. A Worker checkpoints an event only after Write
// counted it, so Write must never count a message the broker has not
// stored. Write is called by one goroutine at a time.
//
// The events' memory (ID, Type, Data) is valid until Write returns: the
// worker reuses it once Write acknowledged them. A Sink that keeps any of
// it past the call copies it.
type Sink interface {
	Write(ctx context.Context, msgs []message.Message) (n int, err error)
}

// Worker runs one source. Create it with New, run it once with Run; Status
// may be called at any time from any goroutine.
type Worker struct {
	cfg      Config
	sink     Sink
	store    checkpoint.Store
	log      *slog.Logger
	client   *http.Client
	ownTrans *http.Transport // closed when Run returns; nil with Config.Client
	filter   map[string]bool

	queue    chan *chunk
	free     chan *chunk   // handled chunks, for the reader to reuse
	progress chan struct{} // a batch was handled; wakes waitDrained

	mu       sync.Mutex // guards the fields below
	st       Status
	conn     State         // reader's state; st.State derives from it and paused
	resume   chan struct{} // non-nil while the sink is failing; closed on recovery
	enqueued uint64
	done     uint64

	stateMu   sync.Mutex // serialises OnState calls and the state gauge
	published State

	ran atomic.Bool

	// Reader goroutine only.
	bo          *backoff.ExponentialBackOff
	serverRetry time.Duration
	haveRetry   bool

	ck *checkpointer

	// Writer goroutine only.
	sinkBo *backoff.ExponentialBackOff
	msgBuf []message.Message
	idxBuf []int

	m workerMetrics
}

type workerMetrics struct {
	received, forwarded, filtered, tooLarge, bytes prometheus.Counter
	lag                                            prometheus.Observer
}

type itemKind uint8

const (
	kindEvent itemKind = iota
	kindComment
	kindError
)

// chunk is one entry of the queue between the reader and the writer: the
// events of one sse.Decoder.ReadBatch, with the comments read among them,
// in stream order. The events borrow the batch's memory, which the writer
// releases (recycle) once the sink acknowledged every one of them, so a
// steady stream decodes into reused memory.
type chunk struct {
	items []item
	batch sse.Batch
}

// item is one entry of a chunk. Comments and errors travel through the
// queue too so the hooks see them in stream order.
type item struct {
	kind    itemKind
	forward bool // kindEvent: false when filtered out
	msg     message.Message
	text    string
	err     error
}

// New checks cfg and prepares a worker that reads cfg.URL and writes to
// sink. store may be nil (no checkpointing, as in ssebridge tail); with a
// store, cfg.Name is required since it is the checkpoint key.
func New(cfg Config, sink Sink, store checkpoint.Store) (*Worker, error) {
	if sink == nil {
		return nil, fmt.Errorf("source %q: %w: nil sink", cfg.Name, ErrInvalidConfig)
	}
	if store != nil && cfg.Name == "" {
		return nil, fmt.Errorf("source: %w: a name is required with a checkpoint store", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
	}
	w := &Worker{
		cfg:      cfg,
		sink:     sink,
		store:    store,
		log:      cfg.Logger.With("pipeline", cfg.Name),
		progress: make(chan struct{}, 1),
	}
	// QueueSize bounds the events between the socket and the sink: the
	// chunk the reader is pushing, the queued ones and the writer's
	// overflow past a batch (less than a chunk) hold at most QueueSize
	// events, chunkLimit each, besides the batch being delivered.
	chunks := cfg.QueueSize / cfg.chunkLimit()
	w.queue = make(chan *chunk, max(chunks-2, 0))
	w.free = make(chan *chunk, chunks+2)
	if len(cfg.Events) > 0 {
		w.filter = make(map[string]bool, len(cfg.Events))
		for _, e := range cfg.Events {
			w.filter[e] = true
		}
	}
	if cfg.Client != nil {
		w.client = cfg.Client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		t.TLSClientConfig = cfg.TLS
		// An event stream is one long response; nothing is gained by
		// keeping a second idle connection per host.
		t.MaxIdleConnsPerHost = 1
		w.ownTrans = t
		w.client = &http.Client{Transport: t, CheckRedirect: checkRedirect}
	}
	base := cfg.RetryInitial
	w.bo = retry.Backoff(max(base, minRetry), cfg.RetryMax)
	w.sinkBo = retry.Backoff(100*time.Millisecond, cfg.RetryMax)
	name := cfg.Name
	w.m = workerMetrics{
		received:  metrics.EventsReceived.WithLabelValues(name),
		forwarded: metrics.EventsForwarded.WithLabelValues(name),
		filtered:  metrics.EventsFiltered.WithLabelValues(name),
		tooLarge:  metrics.EventsFailed.WithLabelValues(name, "too_large"),
		bytes:     metrics.BytesReceived.WithLabelValues(name),
		lag:       metrics.EndToEndLag.WithLabelValues(name),
	}
	w.ck = newCheckpointer(store, cfg, w.log,
		metrics.CheckpointFailures.WithLabelValues(name), metrics.CheckpointTimestamp.WithLabelValues(name))
	w.st.Name = name
	w.st.State = StateConnecting
	w.published = -1
	return w, nil
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("%w: stopped after %d redirects", ErrBadRedirect, len(via))
	}
	// net/http sets Referer to the previous URL, query (often the feed's
	// API key) included, whatever host the redirect goes to. Keep only a
	// Referer the configuration itself set.
	if via[0].Header.Get("Referer") == "" {
		req.Header.Del("Referer")
	}
	return nil
}

// Status returns a snapshot of the worker.
func (w *Worker) Status() Status {
	w.mu.Lock()
	st := w.st
	w.mu.Unlock()
	w.ck.fill(&st)
	return st
}

// Run connects and forwards events until ctx is cancelled, the server
// answers 204, or (with Once) the stream ends or fails.
//
// On cancellation it stops reading, flushes the events already received to
// the sink, saves the checkpoint and returns nil; the flush is bounded by
// ShutdownTimeout, after which it returns an error wrapping
// ErrShutdownTimeout (undelivered events were not checkpointed, so a restart
// fetches them again). A 204 returns an error wrapping ErrServerStopped after
// the same flush. With Once, the end of the stream returns nil and any
// connection error is returned. Run may be called once.
func (w *Worker) Run(ctx context.Context) (err error) {
	if !w.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("source %q: Run called twice", w.cfg.Name)
	}
	defer func() {
		if w.ownTrans != nil {
			w.ownTrans.CloseIdleConnections()
		}
		w.setConn(StateStopped, time.Time{})
	}()
	if err := w.loadCheckpoint(ctx); err != nil {
		return err
	}

	// The sink keeps working after ctx is cancelled, to flush, until the
	// shutdown timeout cancels it.
	sinkCtx, sinkCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer sinkCancel()

	readErr := make(chan error, 1)
	writeErr := make(chan error, 1)
	stopSaver, saverDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(saverDone); w.ck.run(stopSaver) }()
	go func() { readErr <- w.readLoop(ctx) }()
	go func() {
		err := w.writeLoop(sinkCtx, ctx)
		close(stopSaver)
		<-saverDone
		// The final save, after the last acknowledgement.
		if serr := w.ck.save(true); err == nil {
			err = serr
		}
		writeErr <- err
	}()

	var werr error
	timedOut := false
	select {
	case werr = <-writeErr:
	case <-ctx.Done():
		t := time.NewTimer(w.cfg.ShutdownTimeout)
		select {
		case werr = <-writeErr:
		case <-t.C:
			timedOut = true
			sinkCancel()
			werr = <-writeErr
		}
		t.Stop()
	}
	// The writer returns once the reader closed the queue, or after
	// sinkCtx was cancelled, which happens only once ctx is done: either
	// way the reader has finished or is finishing.
	rerr := <-readErr

	st := w.Status()
	switch {
	case timedOut:
		return fmt.Errorf("source %q: %w (last acknowledged id %q)", w.cfg.Name, ErrShutdownTimeout, st.LastEventID)
	case werr != nil && ctx.Err() == nil:
		return fmt.Errorf("source %q: %w", w.cfg.Name, werr)
	case rerr != nil:
		return fmt.Errorf("source %q: %w", w.cfg.Name, rerr)
	case werr != nil:
		return fmt.Errorf("source %q: %w", w.cfg.Name, werr)
	}
	return nil
}

func (w *Worker) loadCheckpoint(ctx context.Context) error {
	id, ok := w.cfg.LastEventID, w.cfg.LastEventID != ""
	if w.store != nil {
		sid, sok, err := w.store.Load(ctx, w.cfg.Name)
		if err != nil {
			return fmt.Errorf("source %q: load checkpoint: %w", w.cfg.Name, err)
		}
		if sok {
			id, ok = sid, true
			w.ck.loaded(sid)
		}
	}
	w.mu.Lock()
	w.st.LastEventID, w.st.HasLastEventID = id, ok
	w.mu.Unlock()
	return nil
}
