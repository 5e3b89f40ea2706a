// Package nats is the NATS sink driver, registered as "nats": core NATS
// publish, or JetStream publish with acknowledgements when the sink block
// says jetstream: true.
//
// Delivery: Write returns the number of leading messages the server
// acknowledged. In core mode the acknowledgement is a PING/PONG round trip
// after the batch (the server has then received every message before it);
// in JetStream mode it is each message's PubAck, collected in order from a
// window of at most max_in_flight asynchronous publishes.
//
// Deduplication: JetStream messages carry a Nats-Msg-Id made of the
// pipeline, the event ID and a hash of the event's type and data (see
// MsgID), so a batch replayed after a crash (the checkpoint lagging the
// acks) is dropped by the stream's duplicate window instead of stored twice,
// while a different event that reuses an ID (per-symbol IDs such as BTC, a
// counter restarted upstream, a correction sent under the ID of the update)
// gets its own Nats-Msg-Id and is stored. The residual case: an event equal
// to one stored within the duplicate window in ID, type and data is taken
// for its replay and stored once. A PubAck flagged Duplicate is counted in
// ssebridge_sink_duplicates_total and logged at a bounded rate.
// The SSE standard lets events without an id field inherit the previous ID;
// such followers (a run of "data: ping" keep-alives, say) would share one
// Nats-Msg-Id and be discarded as duplicates, so a message the source marks
// as InheritedID (see message.InheritsID: the rule is decided there, once,
// and the source knows it even for the first event after a restart) gets no
// Nats-Msg-Id (it may then be duplicated by a replay, never lost).
//
// Permissions: a core publish the server refuses (the NATS user may not
// publish to the subject) gets no acknowledgement to miss, only an
// asynchronous -ERR that leaves the connection up. The server answers each
// PUB's -ERR before the PONG of a later PING, so after the flush the sink
// asks the connection's natsconn.Violations (installed by New on any
// *nats.Conn) whether one of the batch's subjects was refused since the
// batch began. If so, Write counts only the messages before the first
// refused one and fails with ErrPermissionDenied, so the source retries the
// rest instead of checkpointing past it. In JetStream mode a refused publish
// never gets its PubAck; Write fails with ErrPermissionDenied as soon as the
// refusal is reported instead of waiting for the ack timeout. Two pipelines
// sharing the connection fail only for their own subjects. The check is
// exact on a connection without subscriptions (another asynchronous error,
// such as a slow consumer, could otherwise mask a refusal; see
// natsconn.Violations.Sync), which is why the driver publishes core NATS
// through sinks.Deps.NATSPublish when the bridge provides it.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/internal/logging"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// Kind is the driver name and the sink label of the metrics.
const Kind = "nats"

// AckTimeout bounds the wait for one acknowledgement (the flush PONG or a
// PubAck) when the caller's context has no earlier deadline; a server that
// went away mid-batch must turn into an error the caller backs off from.
const AckTimeout = 10 * time.Second

// ErrNoConnection is returned by Open when the bridge has no NATS
// connection configured.
var ErrNoConnection = errors.New("nats sink: no NATS connection configured (set nats.url or nats.embedded)")

// ErrPermissionDenied is returned (wrapped, with the subject) by Write when
// the server refused a publish because the NATS user may not publish to the
// subject. The refused message and those after it are not counted, so the
// caller retries them; they go through once the permission is granted.
//
// Wrapped errors carry retry.MarkPermanent: the worker retries them at its
// longest backoff only, since a grant is what they wait for.
var ErrPermissionDenied = errors.New("nats sink: publish permission denied")

// Open opens a sink for pipeline on the bridge's connections: core NATS
// publishes through deps.NATSPublish when there is one.
func Open(ctx context.Context, deps sinks.Deps, pipeline string, opts Options) (*Sink, error) {
	nc := deps.NATS
	if !opts.JetStream && deps.NATSPublish != nil {
		nc = deps.NATSPublish
	}
	return New(ctx, nc, pipeline, opts, deps.Logger)
}

// Sink publishes one pipeline's events to NATS.
type Sink struct {
	nc          *gonats.Conn
	js          jetstream.JetStream // nil in core mode
	perms       *natsconn.Violations
	pipeline    string
	router      *route.Router
	maxInFlight int
	log         *slog.Logger

	// probe is set after a failed JetStream write: the next one waits for
	// the ack of its first message before pipelining the rest (see
	// writeJetStream).
	probe bool

	published, failed, unroutable, tooLarge, duplicates prometheus.Counter
	latency                                             prometheus.Observer
	// dupLog bounds the duplicate warnings: a replay after a crash can
	// bring thousands at once.
	dupLog *logging.Every

	// jsp publishes in JetStream mode (see jspublish.go).
	jsp *jsPublisher
	// hashes[i] is the MsgID hash of the batch's message i; hashIdx is
	// msgHashes' scratch space.
	hashes  []uint64
	hashIdx []int

	// static is the subject of every message when the subject template
	// has no placeholder (validated once, by New); "" otherwise.
	static string

	// Core mode publishes synchronously into the connection's buffer, so
	// one message, header map and subject list serve every publish.

	coreMsg  gonats.Msg
	coreHdr  headerSlots
	subjects []string
}

// New opens a NATS sink for pipeline on nc. With opts.JetStream and
// opts.Stream it creates the stream when it does not exist.
func New(ctx context.Context, nc *gonats.Conn, pipeline string, opts Options, log *slog.Logger) (*Sink, error) {
	if nc == nil {
		return nil, ErrNoConnection
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.withDefaults()
	r, err := route.NewSubjectRouter(cfg.Subject, cfg.FallbackSubject)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	s := &Sink{
		nc:          nc,
		perms:       natsconn.Watch(nc),
		pipeline:    pipeline,
		router:      r,
		maxInFlight: cfg.MaxInFlight,
		log:         log.With("sink", Kind),
		published:   metrics.SinkPublished.WithLabelValues(pipeline, Kind),
		failed:      metrics.SinkFailed.WithLabelValues(pipeline, Kind),
		latency:     metrics.SinkLatency.WithLabelValues(pipeline, Kind),
		unroutable:  metrics.EventsFailed.WithLabelValues(pipeline, "unroutable"),
		tooLarge:    metrics.EventsFailed.WithLabelValues(pipeline, "too_large"),
		duplicates:  metrics.SinkDuplicates.WithLabelValues(pipeline),
		dupLog:      logging.NewEvery(5 * time.Second),
	}
	if route.MustCompile(cfg.Subject).Static() {
		s.static = cfg.Subject
	}
	if !cfg.JetStream {
		s.coreHdr = newHeaderSlots()
		if cfg.Stream != nil {
			return nil, errors.New("stream is set but jetstream is false")
		}
		return s, nil
	}
	s.js, err = jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.jsp = newJSPublisher(nc, s.maxInFlight)
	if cfg.Stream != nil {
		if err := ensureStream(ctx, s.js, cfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ensureStream creates the stream if it is absent. An existing stream is
// left alone: its configuration belongs to whoever created it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Options) error {
	spec := cfg.Stream
	if nc := js.Conn(); !nc.IsConnected() {
		// A request now would fail with whatever the client's state
		// produces ("outbound buffer limit exceeded"); say what is wrong.
		return fmt.Errorf("stream %q: %w: NATS is not connected (%s)", spec.Name, sinks.ErrNotConnected, nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, AckTimeout)
	defer cancel()
	_, err := js.Stream(ctx, spec.Name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		if !js.Conn().IsConnected() {
			return fmt.Errorf("stream %q: %w: NATS is not connected: %w", spec.Name, sinks.ErrNotConnected, err)
		}
		return fmt.Errorf("stream %q: %w", spec.Name, err)
	}
	subjects := spec.Subjects
	if len(subjects) == 0 {
		if t := route.MustCompile(cfg.Subject); t.Static() {
			subjects = []string{cfg.Subject}
		} else {
			return fmt.Errorf("stream %q: subjects must be listed when the subject is a template", spec.Name)
		}
	}
	sc := jetstream.StreamConfig{
		Name:     spec.Name,
		Subjects: subjects,
		MaxAge:   spec.MaxAge,
		MaxBytes: spec.MaxBytes,
		Replicas: spec.Replicas,
		Storage:  jetstream.FileStorage,
	}
	if sc.MaxBytes == 0 {
		sc.MaxBytes = -1
	}
	if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		if !js.Conn().IsConnected() {
			return fmt.Errorf("create stream %q: %w: NATS is not connected: %w", spec.Name, sinks.ErrNotConnected, err)
		}
		return fmt.Errorf("create stream %q: %w", spec.Name, err)
	}
	return nil
}

// Close releases the JetStream publisher's reply subscription; the
// connection belongs to the bridge and stays open.
func (s *Sink) Close() error {
	if s.jsp != nil {
		if err := s.jsp.close(); err != nil {
			return fmt.Errorf("nats sink: %w", err)
		}
	}
	return nil
}

// Write publishes msgs in order; see the package documentation for what
// counts as acknowledged.
func (s *Sink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("nats sink: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if !s.nc.IsConnected() {
		s.failed.Add(1)
		return 0, fmt.Errorf("%w: nats: %s", sinks.ErrNotConnected, s.nc.Status())
	}
	start := time.Now()
	var n, acked, refused int
	var err error
	if s.js == nil {
		n, acked, refused, err = s.writeCore(ctx, msgs)
	} else {
		n, acked, err = s.writeJetStream(ctx, msgs)
	}
	if acked > 0 {
		s.published.Add(float64(acked))
		s.latency.Observe(time.Since(start).Seconds())
	}
	s.probe = s.js != nil && err != nil
	if refused > 0 {
		// Refused messages are counted one by one: each is an event the
		// broker would not take, not just one failed attempt.
		s.failed.Add(float64(refused))
	} else if err != nil {
		s.failed.Add(1)
	}
	return n, err
}

// route is m's subject: the static one, or the template rendered for m
// (false: unroutable, counted and logged).
func (s *Sink) route(env *route.Env, m *sinks.Message) (string, bool) {
	if s.static != "" {
		return s.static, true
	}
	env.Reset(m)
	d, err := s.router.Route(env)
	if err != nil {
		s.unroutable.Add(1)
		s.log.Warn("event unroutable, dropped", "pipeline", s.pipeline, "id", m.Event.ID, "event", m.Event.Type, "err", err)
		return "", false
	}
	if d.FellBack != nil {
		s.log.Debug("event routed to fallback subject", "pipeline", s.pipeline, "id", m.Event.ID, "subject", d.Dest, "reason", d.FellBack)
	}
	return d.Dest, true
}

// fits reports whether m, with headers of hdrSize bytes, is within the
// server's max_payload; if not it is counted and logged.
func (s *Sink) fits(m *sinks.Message, hdrSize int, maxPayload int64) bool {
	if size := len(m.Event.Data) + hdrSize; int64(size) > maxPayload {
		s.tooLarge.Add(1)
		s.log.Warn("event larger than the server's max_payload, dropped", "pipeline", s.pipeline, "id", m.Event.ID,
			"bytes", size, "max_payload", maxPayload)
		return false
	}
	return true
}

// prepare routes m and builds its core NATS message, or returns nil to
// skip it (JetStream messages are prepared by prepareJS). The message is
// valid until the next prepare.
func (s *Sink) prepare(env *route.Env, m *sinks.Message, maxPayload int64) *gonats.Msg {
	subj, ok := s.route(env, m)
	if !ok || !s.fits(m, s.coreHdr.fill(m, false, 0), maxPayload) {
		return nil
	}
	s.coreMsg = gonats.Msg{Subject: subj, Data: m.Event.Data, Header: s.coreHdr.h}
	return &s.coreMsg
}

// ackContext bounds a wait by AckTimeout unless ctx ends sooner.
func ackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, AckTimeout)
}

// connErr wraps err with sinks.ErrNotConnected when the connection is down
// or the failure is the kind a broker restart causes, so the caller knows
// to back off and retry rather than treat the batch as bad.
func (s *Sink) connErr(what string, err error) error {
	if !s.nc.IsConnected() || errors.Is(err, gonats.ErrConnectionClosed) || errors.Is(err, gonats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, gonats.ErrConnectionReconnecting) || errors.Is(err, gonats.ErrDisconnected) {
		return fmt.Errorf("%w: nats %s: %w", sinks.ErrNotConnected, what, err)
	}
	return fmt.Errorf("nats %s: %w", what, err)
}

// String describes the sink for logs.
func (s *Sink) String() string {
	mode := "core"
	if s.js != nil {
		mode = "jetstream, max_in_flight " + strconv.Itoa(s.maxInFlight)
	}
	return fmt.Sprintf("nats sink for %q (%s)", s.pipeline, mode)
}
