// Package sources runs the upstream side of a pipeline: a Worker holds a
// long-lived Server-Sent Events connection to a third-party feed, decodes it
// with package sse, and hands the events, in upstream order, to a Sink.
//
// A Worker never silently loses its place. It reconnects after every drop
// with Last-Event-ID set to the last event the sink acknowledged, honours the
// server's retry field with exponential backoff and jitter on top, recycles a
// connection that stays silent for IdleTimeout, and checkpoints the last
// acknowledged event ID in a checkpoint.Store so a restart resumes where it
// stopped. Between the socket and the sink sits a bounded queue: when the
// sink is slower than the feed, the worker stops reading the socket (TCP
// back-pressure) instead of buffering or dropping.
//
// The runner (package bridge) maps a pipeline of the YAML file to a Config,
// opens the sink and the store, and calls Run; ssebridge tail uses the same Worker with a
// sink that prints.
package sources

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Defaults applied where a Config field is left zero (see each field for the
// fields where zero means something else). The YAML defaults live in
// config; these equal them (a test of the runner keeps them so) so
// that a Config built in code behaves like one loaded from a file.
const (
	// DefaultRetryInitial is the first reconnection delay before the
	// server sends a retry field (ConfigFromPipeline only: in Config, 0
	// means "reconnect at once the first time").
	DefaultRetryInitial = time.Second
	// DefaultRetryMax caps the reconnection delay; configuration errors
	// (4xx, wrong Content-Type) are retried at this interval.
	DefaultRetryMax = 60 * time.Second
	// DefaultIdleTimeout is the idle timeout ConfigFromPipeline applies:
	// a dead connection is noticed within minutes, not days.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultQueueSize bounds the events buffered between socket and sink.
	DefaultQueueSize = 1024
	// DefaultBatchSize bounds the events handed to one Sink.Write.
	DefaultBatchSize = 256
	// DefaultCheckpointInterval is the longest a checkpoint lags the
	// acknowledged events while the feed runs.
	DefaultCheckpointInterval = 100 * time.Millisecond
	// DefaultCheckpointEvery saves the checkpoint after this many
	// acknowledged events even before CheckpointInterval has passed.
	DefaultCheckpointEvery = 1000
	// DefaultMaxUnsaved is how many acknowledged events the checkpoint
	// may lag while the store fails before forwarding pauses.
	DefaultMaxUnsaved = 10000
	// DefaultShutdownTimeout bounds the flush on graceful shutdown.
	DefaultShutdownTimeout = 10 * time.Second
)

// Config describes one source. It is plain Go; ConfigFromPipeline maps the
// YAML form to it.
type Config struct {
	// Name is the pipeline name: the metrics label, the checkpoint key and
	// message.Message.Pipeline. Required when a checkpoint store is used.
	Name string
	// URL of the SSE feed (http or https).
	URL string
	// Method defaults to GET.
	Method string
	// Header is sent with every request. Accept (text/event-stream) and
	// Cache-Control (no-cache) are added unless set here; Last-Event-ID is
	// managed by the worker.
	Header http.Header
	// Body is sent with every connection and reconnection (e.g. a POST
	// that subscribes); redirects that keep the method resend it.
	Body string
	// Events, when not empty, forwards only events of these types; the
	// others are counted as filtered and skipped (their IDs still advance
	// the checkpoint).
	Events []string

	// RetryInitial is the base reconnection delay until the server sends a
	// retry field, which then replaces it. 0 reconnects (almost) at once
	// the first time; the delay still doubles on repeated failures.
	RetryInitial time.Duration
	// RetryMax caps every reconnection delay except a server's
	// Retry-After; 0 means DefaultRetryMax.
	RetryMax time.Duration
	// IdleTimeout recycles a connection that delivered no byte (comments
	// included) for this long; 0 disables it.
	IdleTimeout time.Duration
	// MaxEventSize bounds one event in bytes; larger events are counted,
	// logged and skipped. 0 means the decoder's default.
	MaxEventSize int
	// QueueSize bounds the events buffered between the socket and the
	// sink; 0 means DefaultQueueSize.
	QueueSize int
	// BatchSize bounds the messages handed to one Sink.Write; 0 means
	// DefaultBatchSize.
	BatchSize int

	// TLS configures https connections when Client is nil (see
	// TLSConfig). nil uses the system roots.
	TLS *tls.Config
	// Client, when set, is used as is (its Transport, redirects and proxy
	// settings). Leave its Timeout zero: an SSE response never ends.
	// When nil the worker builds a client that honours HTTPS_PROXY and
	// friends, follows up to 10 redirects and closes its connections
	// when Run returns.
	Client *http.Client

	// CheckpointInterval is the longest the saved checkpoint lags behind
	// the acknowledged events while running; 0 means
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// CheckpointEvery saves after that many acknowledged events even
	// sooner; 0 means DefaultCheckpointEvery.
	CheckpointEvery int
	// MaxUnsaved bounds the acknowledged events the checkpoint may lag
	// while the store fails: past it the worker stops forwarding (the
	// queue fills and the feed is pushed back, nothing is dropped) and
	// retries the save until it succeeds, so that a crash replays at most
	// MaxUnsaved events. 0 means DefaultMaxUnsaved.
	MaxUnsaved int
	// ShutdownTimeout bounds the flush to the sink after Run's context is
	// cancelled; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// LastEventID is the ID to resume from when the checkpoint store has
	// none (or there is no store); ignored when empty.
	LastEventID string

	// Logger receives connection and sink problems; nil discards.
	Logger *slog.Logger
	// Once disables reconnection: Run returns nil at the end of the
	// stream and the connection error otherwise.
	Once bool

	// OnComment, when set, receives every comment line (the text after the
	// colon), in order with the deliveries to the sink.
	OnComment func(string)
	// OnError, when set, receives every connection error (drops, bad
	// status, idle timeouts...), in order with the deliveries to the sink:
	// it is called once every event received before the error has been
	// acknowledged by the sink.
	OnError func(error)
	// OnState, when set, is called on every state change, one call at a
	// time. It must not block.
	OnState func(State)

	// Fence, when set, is asked before every write to the sink; an error
	// (the replica lost the pipeline's lease) stops delivery at once,
	// without the shutdown flush: another replica owns the feed now, and
	// what is left here is neither delivered nor checkpointed.
	Fence func() error

	// Sleep waits for d or until ctx is done, returning ctx.Err() then. It
	// is every backoff wait of the worker (reconnection and sink retry);
	// nil waits on a real timer. Tests substitute one to observe and skip
	// the delays.
	Sleep func(ctx context.Context, d time.Duration) error
}

// chunkLimit is the most events the reader queues at once: one
// sse.Decoder.ReadBatch (see chunk). At most half of QueueSize, so that the
// chunk the reader holds and the writer's overflow past a batch fit in it.
func (c Config) chunkLimit() int { return max(1, min(c.BatchSize, c.QueueSize/2)) }

// withDefaults returns c with zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.MaxUnsaved == 0 {
		c.MaxUnsaved = DefaultMaxUnsaved
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	return c
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
