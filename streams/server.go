// Package streams serves queue topics back out as Server-Sent Events: NATS
// core subjects, JetStream streams and Kafka topics become endpoints that
// browsers (EventSource) and services subscribe to.
//
// Each message becomes one event: the SSE-Event header is the event type
// (omitted on the wire for "message"), the payload is the data and the id is
// a resume token for the message's position in the queue, so a client that
// reconnects with Last-Event-ID continues with no gap and no repeat:
//
//   - JetStream: the id is the stream sequence plus a short tag naming the
//     stream and its incarnation (1234-G0_EoV1b); a resume continues at
//     sequence+1, and an id from before the stream was recreated starts at
//     its earliest message. A plain sequence is also accepted.
//   - Kafka: the id is an opaque token holding the next offset of every
//     partition of the topic; a resume seeks each partition.
//   - Core NATS keeps no history: ids count events per connection and are
//     not resumable; a Last-Event-ID sent to such a stream is ignored. Its
//     subscribers are ended when the bridge's connection drops or the NATS
//     client drops messages, since what was missed cannot be replayed.
//
// A JetStream or Kafka subscriber that came without Last-Event-ID is first
// sent an id-only record naming its start position (no event is
// dispatched, but the client keeps the id), so one that drops before its
// first event still resumes with no gap.
//
// Every stream has one broker reader while it has subscribers (a core
// subscription, a JetStream ordered consumer that lingers 30 s after the
// last leaves, or a Kafka reader per partition): it encodes each message
// once into the stream's tail, a window of recent events bounded by
// window_events and window_bytes, and every subscriber writes the same
// bytes from there (see tail.go). A JetStream or Kafka resume inside the
// window is served from memory; one from before it is caught up by a
// reader of its own (an ordered consumer, partition readers), which then
// hands over to the tail with no gap and no repeat (see kafka_tail.go for
// Kafka positions, which are vectors of offsets).
//
// A subscriber's place in the stream is fixed before the response headers
// are sent, so nothing published after the client saw 200 is missed. One
// that falls behind by more than max_pending events (or out of the
// window) is disconnected (it may resume) and never slows the others down;
// none is ever left to skip an event silently.
package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// writeTimeout bounds one write to a subscriber: a client that stops
// reading entirely must not pin a goroutine and a broker subscription
// forever, even when no new event arrives to overflow its buffer.
const writeTimeout = 30 * time.Second

// subscribeTimeout bounds setting up a subscription with the broker, so a
// broker that does not answer yields a 503 rather than a hanging request.
const subscribeTimeout = 15 * time.Second

// Errors a subscription request can fail with. They are wrapped with the
// precise reason, which is also the body of the HTTP error answer.
var (
	// ErrInvalidLastEventID means a Last-Event-ID could not be parsed or
	// names a position the stream never had (400).
	ErrInvalidLastEventID = errors.New("invalid Last-Event-ID")
	// ErrForeignLastEventID means a Last-Event-ID belongs to another
	// stream (400).
	ErrForeignLastEventID = errors.New("Last-Event-ID belongs to another stream")
	// ErrBadRequest covers other invalid query parameters (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable means the broker could not set up the subscription (503).
	ErrUnavailable = errors.New("stream unavailable")
	// ErrClosed is returned by Shutdown when called twice, and refuses
	// subscriptions during shutdown (503).
	ErrClosed = errors.New("streams server closed")
)

// Deps are the shared resources streams read from.
type Deps struct {
	// NATS is the bridge's connection; required by NATS and JetStream
	// streams, nil otherwise.
	NATS *nats.Conn
	// Kafka is the cluster; required by Kafka streams.
	Kafka  KafkaCluster
	Logger *slog.Logger
	// MaxSubscribers caps subscribers across all streams (0: no cap).
	MaxSubscribers int
	// Shared, when set, is a cap shared with other Servers (the bridge
	// runs one per path); a subscriber takes a slot of it too.
	Shared *SubscriberLimit
	// KnownToken, when set, reports whether token is accepted by some
	// other stream of this deployment that this Server does not serve
	// (the bridge runs one Server per path); such a token gets 403 instead
	// of 401. It is consulted only for a token that fails the stream's own
	// checks, may be called concurrently, and should compare in constant
	// time. Bearer tokens of the streams passed to New are known without it.
	KnownToken func(token string) bool
}

// StreamStats is a snapshot of one stream for the status page.
type StreamStats struct {
	Path string
	// Backend is "nats", "jetstream" or "kafka".
	Backend     string
	Subscribers int
	// EventsSent counts events written to subscribers since start.
	EventsSent uint64
}

// Server serves every configured stream at its path. It is an http.Handler
// meant to be mounted on the bridge's mux; requests for other paths get 404.
//
// Call Shutdown before (or while) shutting the http.Server down: SSE
// responses never end by themselves, so http.Server.Shutdown alone would
// wait for them until its context expires.
type Server struct {
	log      *slog.Logger
	streams  map[string]*stream
	order    []*stream
	maxSubs  int
	shared   *SubscriberLimit
	subs     atomic.Int64 // across all streams
	stopping chan struct{}
	mu       sync.Mutex // guards closed, active and wg.Add against Shutdown
	closed   bool
	// active lets Shutdown cut off subscribers that cannot be flushed in
	// time (a client that stopped reading).
	active map[*subscriber]struct{}
	wg     sync.WaitGroup
	// closers release shared broker resources once every handler has
	// returned.
	closers []func()
	// conns are the subscribers whose connections were taken over
	// (conn.go); pool writes to them and a heartbeat loop, stopped by
	// closing loopStop, runs while there are any.
	conns    map[*connSub]struct{}
	pool     *writerPool
	hups     *hangups
	loopStop chan struct{}
	loops    sync.WaitGroup
	hbTick   time.Duration
	// noTakeOver keeps every subscriber on its request's goroutine (tests).
	noTakeOver bool
	// writeWait is writeTimeout for taken-over connections (tests set it).
	writeWait time.Duration
}

// stream is one configured endpoint.
type stream struct {
	cfg        Config
	backend    backend
	heartbeat  time.Duration
	maxPending int
	auth       *authorizer
	cors       *CORS
	subs       atomic.Int64
	sent       atomic.Uint64
	// mSent and mSubs are the stream's metric children, resolved once.
	mSent interface{ Add(float64) }
	mSubs interface {
		Inc()
		Dec()
	}
}

// New validates cfgs and prepares one endpoint per stream. It does not
// contact the brokers: subscriptions are made per request, so a broker that
// is down at start only makes its streams answer 503 until it is back.
func New(cfgs []Config, deps Deps) (*Server, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:      log,
		streams:  make(map[string]*stream, len(cfgs)),
		maxSubs:  deps.MaxSubscribers,
		shared:   deps.Shared,
		stopping: make(chan struct{}),
		active:   map[*subscriber]struct{}{},
	}
	var errs []error
	var kafka *kafkaShared
	// allTokens lets a bearer token valid for another stream get 403
	// rather than 401: it is a real credential, just not for this path.
	allTokens := map[string]bool{}
	for _, c := range cfgs {
		if c.Auth != nil {
			for _, t := range c.Auth.BearerTokens {
				allTokens[t] = true
			}
		}
	}
	known := func(tok string) bool {
		return allTokens[tok] || (deps.KnownToken != nil && deps.KnownToken(tok))
	}
	for i, c := range cfgs {
		name := c.Path
		if name == "" {
			name = "#" + strconv.Itoa(i)
		}
		if err := checkConfig(c); err != nil {
			errs = append(errs, fmt.Errorf("stream %q: %w", name, err))
			continue
		}
		if _, dup := s.streams[c.Path]; dup {
			errs = append(errs, fmt.Errorf("stream %q: path served twice", name))
			continue
		}
		st := &stream{
			cfg:        c,
			heartbeat:  c.Heartbeat,
			maxPending: c.MaxPending,
			cors:       c.CORS,
			mSent:      metrics.StreamEventsSent.WithLabelValues(c.Path),
			mSubs:      metrics.Subscribers.WithLabelValues(c.Path),
		}
		if st.heartbeat <= 0 {
			st.heartbeat = DefaultHeartbeat
		}
		if st.maxPending <= 0 {
			st.maxPending = DefaultMaxPending
		}
		if c.Auth != nil {
			a, err := newAuthorizer(c.Path, c.Auth, known)
			if err != nil {
				errs = append(errs, fmt.Errorf("stream %q: auth: %w", name, err))
				continue
			}
			st.auth = a
		}
		switch {
		case c.NATS != nil && c.NATS.JetStream != "":
			if deps.NATS == nil {
				errs = append(errs, fmt.Errorf("stream %q: JetStream stream but no NATS connection configured", name))
				continue
			}
			b, err := newJetStreamBackend(deps.NATS, c, log)
			if err != nil {
				errs = append(errs, fmt.Errorf("stream %q: %w", name, err))
				continue
			}
			st.backend = b
		case c.NATS != nil:
			if deps.NATS == nil {
				errs = append(errs, fmt.Errorf("stream %q: NATS subject but no NATS connection configured", name))
				continue
			}
			st.backend = newCoreBackend(deps.NATS, c, st.maxPending, log)
		case c.Kafka != nil:
			if !deps.Kafka.configured() {
				errs = append(errs, fmt.Errorf("stream %q: Kafka topic but no Kafka brokers configured", name))
				continue
			}
			if kafka == nil {
				k, err := newKafkaShared(deps.Kafka)
				if err != nil {
					errs = append(errs, fmt.Errorf("stream %q: kafka: %w", name, err))
					continue
				}
				kafka = k
				s.closers = append(s.closers, k.close)
			}
			st.backend = newKafkaBackend(kafka, c, log)
		}
		s.closers = append(s.closers, st.backend.close)
		s.streams[c.Path] = st
		s.order = append(s.order, st)
	}
	// The heartbeat loop of taken-over connections looks often enough
	// for the shortest interval.
	s.writeWait = writeTimeout
	s.hbTick = time.Second
	for _, st := range s.order {
		s.hbTick = min(s.hbTick, max(st.heartbeat/4, 5*time.Millisecond))
	}
	if len(errs) > 0 {
		s.runClosers()
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Stats returns a snapshot of every stream, in configuration order.
func (s *Server) Stats() []StreamStats {
	out := make([]StreamStats, 0, len(s.order))
	for _, st := range s.order {
		out = append(out, StreamStats{
			Path:        st.cfg.Path,
			Backend:     st.backend.kind(),
			Subscribers: int(st.subs.Load()),
			EventsSent:  st.sent.Load(),
		})
	}
	return out
}

// Shutdown ends every subscription: each subscriber gets the events already
// buffered for it flushed, then its response ends and its broker
// subscription is released. It returns when all are done. If ctx ends
// first, the subscribers still being flushed (clients that stopped reading)
// are cut off at once, and Shutdown returns ctx's error as soon as their
// handlers have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.stopping)
	s.mu.Unlock()

	s.closeConns()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.loops.Wait()
		s.runClosers()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for sub := range s.active {
		sub.cut(ErrClosed)
	}
	s.mu.Unlock()
	// A cut handler returns promptly: its blocked write fails at once.
	// Bound the wait anyway, so Shutdown can never hang.
	select {
	case <-done:
	case <-time.After(writeTimeout):
	}
	return fmt.Errorf("streams shutdown: %w", ctx.Err())
}

// runClosers runs the closers last first, as defers run: a stream's
// backend stops (its lingering tail, its watch) before the shared client
// it looks up the broker through is closed, or its last look-up could
// open a connection pool after the client was closed.
func (s *Server) runClosers() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// ServeHTTP routes a request to its stream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, ok := s.streams[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if st.cors != nil && applyCORS(w, r, st.cors) {
		return // preflight answered
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		w.Header().Set("Allow", "GET, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, OPTIONS")
		http.Error(w, "method not allowed: a stream is read with GET", http.StatusMethodNotAllowed)
		return
	}
	if st.auth != nil && !st.auth.check(w, r) {
		return
	}
	req, err := parseRequest(r)
	if err != nil {
		http.Error(w, capEcho(err.Error()), http.StatusBadRequest)
		return
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()

	if !s.acquire(st) {
		s.wg.Done()
		metrics.SubscribersRejected.WithLabelValues(st.cfg.Path).Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many subscribers", http.StatusServiceUnavailable)
		return
	}
	if s.serve(w, r, st, req) {
		return // the writers own the connection, its slot and wg count
	}
	s.release(st)
	s.wg.Done()
}

// acquire takes a subscriber slot of st and of the server.
func (s *Server) acquire(st *stream) bool {
	if s.shared != nil && !acquireSlot(&s.shared.n, int(s.shared.max.Load())) {
		return false
	}
	if !acquireSlot(&s.subs, s.maxSubs) {
		s.releaseShared()
		return false
	}
	if !acquireSlot(&st.subs, st.cfg.MaxSubscribers) {
		s.subs.Add(-1)
		s.releaseShared()
		return false
	}
	st.mSubs.Inc()
	return true
}

func (s *Server) release(st *stream) {
	st.mSubs.Dec()
	st.subs.Add(-1)
	s.subs.Add(-1)
	s.releaseShared()
}

func (s *Server) releaseShared() {
	if s.shared != nil {
		s.shared.n.Add(-1)
	}
}

// SubscriberLimit caps the subscribers of several Servers together. A
// subscriber holds its slot until its response ends, whether its request's
// goroutine or the server's writers serve it. The zero value has no cap.
type SubscriberLimit struct {
	n   atomic.Int64
	max atomic.Int64
}

// SetMax sets the cap (0: none); subscribers already over it stay.
func (l *SubscriberLimit) SetMax(n int) { l.max.Store(int64(n)) }

// Subscribers is the number of slots held.
func (l *SubscriberLimit) Subscribers() int { return int(l.n.Load()) }

// acquireSlot increments n unless that would exceed limit (0: no limit).
func acquireSlot(n *atomic.Int64, limit int) bool {
	for {
		cur := n.Load()
		if limit > 0 && cur >= int64(limit) {
			return false
		}
		if n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}
