package sources

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/bridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/logging"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
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

// checkpointSaveTimeout bounds one checkpoint write, also the final one
// after the sink context was cancelled.
const checkpointSaveTimeout = 10 * time.Second

var errShortWrite = errors.New("sink acknowledged fewer messages than given without an error")

// Worker runs one source. Create it with New, run it once with Run; Status
// may be called at any time from any goroutine.
type Worker struct {
	cfg      Config
	sink     sinks.Sink
	store    checkpoint.Store
	log      *slog.Logger
	client   *http.Client
	ownTrans *http.Transport // closed when Run returns; nil with Config.Client
	filter   map[string]bool

	queue    chan item
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
	msgBuf []sinks.Message
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

// item is one entry of the queue between the reader and the writer. Comments
// and errors travel through it too so the hooks see them in stream order.
type item struct {
	kind    itemKind
	forward bool // kindEvent: false when filtered out
	msg     sinks.Message
	text    string
	err     error
}

// New checks cfg and prepares a worker that reads cfg.URL and writes to
// sink. store may be nil (no checkpointing, as in ssebridge tail); with a
// store, cfg.Name is required since it is the checkpoint key.
func New(cfg Config, sink sinks.Sink, store checkpoint.Store) (*Worker, error) {
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
		queue:    make(chan item, cfg.QueueSize),
		progress: make(chan struct{}, 1),
	}
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
	w.bo = backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(max(base, minRetry)),
		backoff.WithRandomizationFactor(0.25),
		backoff.WithMultiplier(2),
		backoff.WithMaxInterval(cfg.RetryMax),
		backoff.WithMaxElapsedTime(0),
	)
	w.sinkBo = backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(100*time.Millisecond, cfg.RetryMax)),
		backoff.WithRandomizationFactor(0.25),
		backoff.WithMultiplier(2),
		backoff.WithMaxInterval(cfg.RetryMax),
		backoff.WithMaxElapsedTime(0),
	)
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

// ---- reader ----

func (w *Worker) readLoop(ctx context.Context) error {
	// Closing the queue is what tells the writer to flush and finish.
	defer close(w.queue)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Reconnect only once everything received was handled, so
			// Last-Event-ID (the last acknowledged event) is also the
			// last received one: nothing is fetched twice.
			if err := w.waitDrained(ctx); err != nil {
				return nil
			}
		}
		w.setConn(StateConnecting, time.Time{})
		n, err := w.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrServerStopped) {
			w.log.Info("source stopped by the server (204)")
			w.recordError(err)
			w.report(ctx, err)
			return err
		}
		if err == nil {
			if w.cfg.Once {
				return nil
			}
			err = ErrStreamEnded
		}
		w.recordError(err)
		reason, permanent, retryAfter := classify(err)
		if permanent {
			w.log.Error("source configuration error", "url", w.cfg.URL, "error", err)
		} else {
			w.log.Warn("source connection lost", "url", w.cfg.URL, "reason", reason, "events", n, "error", err)
		}
		w.report(ctx, err)
		if w.cfg.Once {
			return err
		}
		if n > 0 {
			w.bo.Reset()
		}
		delay := w.retryDelay(permanent, retryAfter)
		metrics.Reconnects.WithLabelValues(w.cfg.Name, reason).Inc()
		w.mu.Lock()
		w.st.Reconnects++
		w.mu.Unlock()
		w.setConn(StateBackoff, time.Now().Add(delay))
		if err := w.cfg.Sleep(ctx, delay); err != nil {
			return nil
		}
	}
}

func (w *Worker) retryDelay(permanent bool, retryAfter time.Duration) time.Duration {
	if permanent {
		return w.cfg.RetryMax
	}
	d := w.bo.NextBackOff()
	if d == backoff.Stop || d > w.cfg.RetryMax {
		d = w.cfg.RetryMax
	}
	if w.haveRetry {
		// The server's retry is the reconnection time (WHATWG): jitter
		// may add to it, never take from it. A draw below it is mirrored
		// above it, which keeps the spread.
		if floor := w.bo.InitialInterval; d < floor {
			d = min(2*floor-d, max(w.cfg.RetryMax, floor))
		}
	}
	// The server's Retry-After is a floor, even above RetryMax: it asked.
	return max(d, retryAfter)
}

// onRetry applies a retry field: it becomes the base delay (bounded by
// RetryMax) and restarts the backoff sequence from it.
func (w *Worker) onRetry(d time.Duration) {
	if w.haveRetry && d == w.serverRetry {
		return
	}
	w.serverRetry, w.haveRetry = d, true
	w.bo.InitialInterval = max(min(d, w.cfg.RetryMax), minRetry)
	w.bo.Reset()
}

// classify maps a connection error to its metrics reason, whether it is a
// configuration problem, and the server's Retry-After.
func classify(err error) (reason string, permanent bool, retryAfter time.Duration) {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		switch {
		case se.Code >= 500:
			return ReasonHTTP5xx, false, se.RetryAfter
		case se.Code == http.StatusTooManyRequests:
			return ReasonHTTP429, false, se.RetryAfter
		case se.Code == http.StatusRequestTimeout:
			return ReasonHTTP4xx, false, se.RetryAfter
		case se.Permanent():
			return ReasonHTTP4xx, true, 0
		}
		return ReasonHTTPOther, false, se.RetryAfter
	case errors.Is(err, ErrBadRedirect):
		return ReasonRedirect, true, 0
	case errors.Is(err, ErrContentType), errors.Is(err, ErrContentEncoding):
		return ReasonContentType, true, 0
	case errors.Is(err, ErrIdleTimeout):
		return ReasonIdle, false, 0
	case errors.Is(err, ErrStreamEnded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ReasonEOF, false, 0
	}
	return ReasonNetwork, false, 0
}

// connect makes one request and reads the stream until it ends. It returns
// the number of events received, and nil at a clean end of stream.
func (w *Worker) connect(ctx context.Context) (int, error) {
	connCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	w.mu.Lock()
	lastID, haveID := w.st.LastEventID, w.st.HasLastEventID
	w.mu.Unlock()

	req, err := w.newRequest(connCtx, lastID)
	if err != nil {
		return 0, err
	}
	var idle *time.Timer
	if w.cfg.IdleTimeout > 0 {
		idle = time.AfterFunc(w.cfg.IdleTimeout, func() { cancel(ErrIdleTimeout) })
		defer idle.Stop()
	}
	resp, err := w.client.Do(req)
	if idle != nil {
		idle.Stop()
	}
	if err != nil {
		// The error repeats the URL (or a redirect's), whose query often
		// holds an API key; it goes to logs and Status.LastError, which
		// /api/status and /readyz serve.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = logging.RedactURL(ue.URL)
		}
		if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
			return 0, fmt.Errorf("waiting for response headers: %w", ErrIdleTimeout)
		}
		if errors.Is(err, ErrBadRedirect) {
			return 0, err
		}
		if strings.Contains(err.Error(), "Location header") {
			return 0, fmt.Errorf("%w: %v", ErrBadRedirect, err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return 0, err
	}

	w.setConnected()
	w.log.Info("source connected", "url", w.cfg.URL, "last_event_id", lastID)

	var body io.Reader = &idleReader{r: resp.Body, timer: idle, idle: w.cfg.IdleTimeout, bytes: w.m.bytes}
	if isGzip(resp) {
		body = &gzipBody{r: body}
	}
	d := sse.NewDecoder(body)
	if w.cfg.MaxEventSize > 0 {
		d.SetMaxEventSize(w.cfg.MaxEventSize)
	}
	if haveID {
		// The last event ID persists across reconnections (as in a
		// browser), so events without an id field carry it.
		d.SetLastEventID(lastID)
	}
	d.OnRetry(w.onRetry)
	if w.cfg.OnComment != nil {
		d.OnComment(func(c string) { w.push(connCtx, item{kind: kindComment, text: c}) })
	}
	n := 0
	prevID := lastID // the stream's last event ID before the next event
	for {
		ev, err := d.Next()
		if errors.Is(err, sse.ErrEventTooLarge) {
			w.m.tooLarge.Inc()
			w.mu.Lock()
			w.st.Failed++
			w.mu.Unlock()
			w.log.Warn("event too large, skipped", "max_event_size", w.cfg.MaxEventSize, "error", err)
			continue
		}
		if err != nil {
			if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
				return n, ErrIdleTimeout
			}
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("reading stream: %w", err)
		}
		n++
		w.m.received.Inc()
		fwd := w.filter == nil || w.filter[ev.Type]
		w.mu.Lock()
		w.st.Received++
		if !fwd {
			w.st.Filtered++
		}
		w.mu.Unlock()
		if !fwd {
			w.m.filtered.Inc()
		}
		inherited := ev.ID != "" && ev.ID == prevID
		prevID = ev.ID
		it := item{kind: kindEvent, forward: fwd, msg: sinks.Message{Pipeline: w.cfg.Name, Event: ev, ReceivedAt: time.Now(), InheritedID: inherited}}
		if !w.push(connCtx, it) {
			if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
				return n, ErrIdleTimeout
			}
			return n, ctx.Err()
		}
	}
}

func (w *Worker) newRequest(ctx context.Context, lastID string) (*http.Request, error) {
	var body io.Reader
	if w.cfg.Body != "" {
		body = strings.NewReader(w.cfg.Body) // also sets GetBody, for redirects
	}
	req, err := http.NewRequestWithContext(ctx, w.cfg.Method, w.cfg.URL, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	req.Header = w.cfg.Header.Clone()
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	// net/http ignores a Host in Header and sends the URL's host: a
	// configured Host (a virtual host reached by address) goes in req.Host.
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.Header.Del("Host")
	req.Header.Del("Last-Event-ID")
	switch {
	case lastID == "":
	case hasCTL(lastID):
		// The feed sent an id with a control character: valid SSE, which
		// a browser would send back, but net/http refuses the header and
		// would fail every attempt. Resuming without it may replay or skip
		// what the feed sent meanwhile; never resuming would stop the
		// pipeline for good.
		w.log.Warn("last event id holds a control character that HTTP cannot carry; reconnecting without Last-Event-ID",
			"last_event_id", strconv.Quote(lastID))
	default:
		req.Header.Set("Last-Event-ID", lastID)
	}
	return req, nil
}

// checkResponse accepts a 2xx (but 204) text/event-stream answer.
func checkResponse(resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return ErrServerStopped
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// net/http hands back a redirect it could not follow, which is
		// one without a Location header.
		return fmt.Errorf("%w: status %s without a Location header", ErrBadRedirect, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &StatusError{Code: resp.StatusCode, Status: resp.Status,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	ct := resp.Header.Get("Content-Type")
	// Only the media type matters (the stream is UTF-8 whatever the
	// charset says); ParseMediaType still returns it when a parameter is
	// malformed, which browsers ignore too.
	mt, _, err := mime.ParseMediaType(ct)
	if (err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter)) || mt != "text/event-stream" {
		return fmt.Errorf("%w: got %q", ErrContentType, ct)
	}
	// net/http decodes gzip itself (and removes the header) unless the
	// request set Accept-Encoding; then the encoding is ours to undo.
	if ce := strings.TrimSpace(resp.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") && !isGzip(resp) {
		return fmt.Errorf("%w: %q (only gzip is decoded; remove Accept-Encoding from the headers)", ErrContentEncoding, ce)
	}
	return nil
}

// isGzip reports whether resp's body is still gzip-compressed.
func isGzip(resp *http.Response) bool {
	ce := strings.TrimSpace(resp.Header.Get("Content-Encoding"))
	return !resp.Uncompressed && (strings.EqualFold(ce, "gzip") || strings.EqualFold(ce, "x-gzip"))
}

// gzipBody decompresses a gzip response body. The gzip reader is created
// on the first Read because creating it reads the gzip header, which the
// server may send only with its first event (under the idle timer).
type gzipBody struct {
	r io.Reader
	z *gzip.Reader
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.z == nil {
		z, err := gzip.NewReader(g.r)
		if err != nil {
			if err == io.EOF {
				return 0, io.EOF // an empty body: the stream ended
			}
			return 0, fmt.Errorf("gzip: %w", err)
		}
		g.z = z
	}
	return g.z.Read(p)
}

// idleReader counts bytes and runs the idle timer only while waiting for
// the server inside Read: time spent blocked on a full queue is our
// back-pressure, not the server's silence.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
	bytes prometheus.Counter
}

func (b *idleReader) Read(p []byte) (int, error) {
	if b.timer != nil {
		b.timer.Reset(b.idle)
	}
	n, err := b.r.Read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	if n > 0 {
		b.bytes.Add(float64(n))
	}
	return n, err
}

// push hands it to the writer, waiting while the sink is failing or the
// queue is full; false when ctx ended first.
func (w *Worker) push(ctx context.Context, it item) bool {
	for {
		w.mu.Lock()
		ch := w.resume
		w.mu.Unlock()
		if ch == nil {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	w.mu.Lock()
	w.enqueued++
	w.mu.Unlock()
	select {
	case w.queue <- it:
		return true
	case <-ctx.Done():
		w.mu.Lock()
		w.enqueued--
		w.mu.Unlock()
		return false
	}
}

// report passes a connection error to OnError through the queue, so it is
// seen after every event received before it.
func (w *Worker) report(ctx context.Context, err error) {
	if w.cfg.OnError != nil {
		w.push(ctx, item{kind: kindError, err: err})
	}
}

func (w *Worker) waitDrained(ctx context.Context) error {
	for {
		w.mu.Lock()
		drained := w.done == w.enqueued
		w.mu.Unlock()
		if drained {
			return nil
		}
		select {
		case <-w.progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *Worker) recordError(err error) {
	w.mu.Lock()
	w.st.LastError = err.Error()
	w.st.LastErrorAt = time.Now()
	w.mu.Unlock()
}

// ---- state ----

func (w *Worker) setConnected() {
	w.mu.Lock()
	w.conn = StateConnected
	w.st.ConnectedSince = time.Now()
	w.st.NextRetryAt = time.Time{}
	w.mu.Unlock()
	w.publishState()
}

func (w *Worker) setConn(s State, nextRetry time.Time) {
	w.mu.Lock()
	w.conn = s
	w.st.ConnectedSince = time.Time{}
	w.st.NextRetryAt = nextRetry
	w.mu.Unlock()
	w.publishState()
}

func (w *Worker) setPaused(paused bool, cause error) {
	w.mu.Lock()
	changed := (w.resume != nil) != paused
	if paused && w.resume == nil {
		w.resume = make(chan struct{})
	}
	if !paused && w.resume != nil {
		close(w.resume)
		w.resume = nil
	}
	if cause != nil {
		w.st.LastError = "sink: " + cause.Error()
		w.st.LastErrorAt = time.Now()
	}
	w.mu.Unlock()
	if changed {
		w.publishState()
	}
}

// publishState recomputes the visible state and tells the gauge and
// OnState when it changed.
func (w *Worker) publishState() {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	w.mu.Lock()
	s := w.conn
	if w.resume != nil && s != StateStopped {
		s = StatePaused
	}
	w.st.State = s
	w.mu.Unlock()
	if s == w.published {
		return
	}
	w.published = s
	for _, o := range States() {
		v := 0.0
		if o == s {
			v = 1
		}
		metrics.ConnectionState.WithLabelValues(w.cfg.Name, o.String()).Set(v)
	}
	if w.cfg.OnState != nil {
		w.cfg.OnState(s)
	}
}

// ---- writer ----

// writeLoop delivers the queue to the sink under ctx, which outlives
// runCtx (Run's) by the shutdown flush. Checkpoints are the
// checkpointer's: the loop only reports what was acknowledged.
func (w *Worker) writeLoop(ctx, runCtx context.Context) error {
	batch := make([]item, 0, w.cfg.BatchSize)
	for {
		it, ok := <-w.queue
		if !ok {
			return nil
		}
		batch = append(batch[:0], it)
		closed := false
		// While the store fails, never past MaxUnsaved unsaved events
		// (hold waits at it), even within a batch.
		limit := max(1, min(w.cfg.BatchSize, w.ck.room()))
	fill:
		for len(batch) < limit {
			select {
			case it, ok := <-w.queue:
				if !ok {
					closed = true
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		err := w.process(ctx, batch)
		clear(batch) // drop references to delivered data
		if err != nil || closed {
			return err
		}
		if err := w.ck.hold(runCtx, func(p bool) { w.setPaused(p, nil) }); err != nil {
			return err
		}
	}
}

// process delivers a batch in order: runs of events go to the sink, the
// comment and error entries to their hooks in between.
func (w *Worker) process(ctx context.Context, batch []item) error {
	start := 0
	for i, it := range batch {
		if it.kind == kindEvent {
			continue
		}
		if err := w.deliver(ctx, batch[start:i]); err != nil {
			return err
		}
		start = i + 1
		switch it.kind {
		case kindComment:
			w.cfg.OnComment(it.text)
		case kindError:
			w.cfg.OnError(it.err)
		}
		w.markDone(1)
	}
	return w.deliver(ctx, batch[start:])
}

// deliver writes the forwarded events of seg until the sink acknowledged
// them all, retrying the rest with backoff, and advances the acknowledged
// ID as it goes. Filtered events advance it once everything before them is
// acknowledged.
func (w *Worker) deliver(ctx context.Context, seg []item) error {
	if len(seg) == 0 {
		return nil
	}
	msgs, idx := w.msgBuf[:0], w.idxBuf[:0]
	for i, it := range seg {
		if it.forward {
			msgs = append(msgs, it.msg)
			idx = append(idx, i)
		}
	}
	w.msgBuf, w.idxBuf = msgs, idx
	defer clear(w.msgBuf)

	pos := 0 // seg[:pos] are handled
	ack := func(upto int, forwarded int) {
		for upto < len(seg) && !seg[upto].forward {
			upto++
		}
		if upto <= pos {
			return
		}
		id := seg[upto-1].msg.Event.ID
		w.mu.Lock()
		w.st.LastEventID, w.st.HasLastEventID = id, true
		w.st.Forwarded += uint64(forwarded)
		w.mu.Unlock()
		w.ck.acked(id, upto-pos)
		pos = upto
	}
	ack(0, 0)
	off := 0
	failing := false
	for off < len(msgs) {
		n, err := w.sink.Write(ctx, msgs[off:])
		n = min(max(n, 0), len(msgs)-off)
		if n > 0 {
			now := time.Now()
			for _, m := range msgs[off : off+n] {
				w.m.lag.Observe(now.Sub(m.ReceivedAt).Seconds())
			}
			w.m.forwarded.Add(float64(n))
			off += n
			ack(idx[off-1]+1, n)
		}
		if err == nil && off < len(msgs) {
			err = errShortWrite
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sink: %d events not delivered: %w", len(msgs)-off, err)
		}
		if !failing {
			failing = true
			w.sinkBo.Reset()
		}
		// What the broker acknowledged before failing is saved now, not
		// when it comes back: a crash during the outage must not replay it.
		w.ck.wake()
		w.setPaused(true, err)
		delay := w.sinkBo.NextBackOff()
		w.log.Warn("sink write failed, retrying", "pending", len(msgs)-off, "delay", delay, "error", err)
		if serr := w.cfg.Sleep(ctx, delay); serr != nil {
			return fmt.Errorf("sink: %d events not delivered: %w", len(msgs)-off, err)
		}
	}
	if failing {
		w.log.Info("sink recovered")
		w.setPaused(false, nil)
	}
	w.markDone(len(seg))
	return nil
}

func (w *Worker) markDone(k int) {
	w.mu.Lock()
	w.done += uint64(k)
	w.mu.Unlock()
	select {
	case w.progress <- struct{}{}:
	default:
	}
}
