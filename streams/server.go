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
// A NATS or JetStream stream has one broker reader while it has
// subscribers (a JetStream one lingers 30 s after the last leaves): it
// encodes each message once into the stream's tail, a window of recent
// events bounded by window_events and window_bytes, and every subscriber
// writes the same bytes from there (see tail.go). A JetStream resume
// inside the window is served from memory; one from before it is caught
// up by an ordered consumer of its own, which then hands over to the tail
// with no gap and no repeat. A Kafka subscriber still reads every
// partition with readers of its own, into a buffer of its own.
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
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sse"
)

// Defaults for stream settings left at zero, for configurations built in
// code without config.SetDefaults; the values live in package config.
const (
	// DefaultHeartbeat is the interval of keep-alive comments; proxies
	// commonly close connections idle for 30-60 s.
	DefaultHeartbeat = config.DefaultStreamHeartbeat
	// DefaultMaxPending is how many events a subscriber may fall behind.
	DefaultMaxPending = config.DefaultStreamMaxPending
	// DefaultWindowEvents and DefaultWindowBytes bound the window of
	// recent events a JetStream stream keeps while it has subscribers.
	DefaultWindowEvents = config.DefaultStreamWindowEvents
	DefaultWindowBytes  = config.DefaultStreamWindowBytes
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
	// Kafka is the cluster configuration; required by Kafka streams.
	Kafka  config.Kafka
	Logger *slog.Logger
	// MaxSubscribers caps subscribers across all streams (0: no cap).
	MaxSubscribers int
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
}

// stream is one configured endpoint.
type stream struct {
	cfg        config.Stream
	backend    backend
	heartbeat  time.Duration
	maxPending int
	auth       *authorizer
	cors       *config.CORS
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
func New(cfgs []config.Stream, deps Deps) (*Server, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:      log,
		streams:  make(map[string]*stream, len(cfgs)),
		maxSubs:  deps.MaxSubscribers,
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
		if err := validateStream(c); err != nil {
			errs = append(errs, fmt.Errorf("stream %q: %w", name, err))
			continue
		}
		if _, dup := s.streams[c.Path]; dup {
			errs = append(errs, fmt.Errorf("stream %q: path served twice", name))
			continue
		}
		st := &stream{
			cfg:        c,
			heartbeat:  c.Heartbeat.D(),
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
		case c.NATS != nil && c.NATS.JetStream != nil:
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
			if !deps.Kafka.Configured() {
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
	if len(errs) > 0 {
		for _, c := range s.closers {
			c()
		}
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func validateStream(c config.Stream) error {
	var errs []error
	if !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, fmt.Errorf("path must start with \"/\""))
	}
	switch {
	case c.NATS != nil && c.Kafka != nil:
		errs = append(errs, fmt.Errorf("set either nats or kafka, not both"))
	case c.NATS == nil && c.Kafka == nil:
		errs = append(errs, fmt.Errorf("set nats or kafka"))
	case c.NATS != nil:
		if c.NATS.JetStream != nil && c.NATS.JetStream.Stream == "" {
			errs = append(errs, fmt.Errorf("nats.jetstream.stream is required"))
		}
		if c.NATS.Subject == "" && c.NATS.JetStream == nil {
			errs = append(errs, fmt.Errorf("nats.subject is required"))
		}
		if c.NATS.Subject != "" {
			if err := validPattern(c.NATS.Subject); err != nil {
				errs = append(errs, fmt.Errorf("nats.subject: %w", err))
			}
		}
	case c.Kafka != nil:
		if c.Kafka.Topic == "" {
			errs = append(errs, fmt.Errorf("kafka.topic is required"))
		}
		switch c.Kafka.Start {
		case "", "latest", "earliest":
		default:
			errs = append(errs, fmt.Errorf("kafka.start is %q, want earliest or latest", c.Kafka.Start))
		}
	}
	if c.MaxPending < 0 || c.MaxSubscribers < 0 || c.Heartbeat < 0 || c.WindowEvents < 0 || c.WindowBytes < 0 {
		errs = append(errs, fmt.Errorf("heartbeat, max_pending, max_subscribers, window_events and window_bytes must not be negative"))
	}
	return errors.Join(errs...)
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

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		for _, c := range s.closers {
			c()
		}
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
	defer s.wg.Done()

	if !s.acquire(st) {
		metrics.SubscribersRejected.WithLabelValues(st.cfg.Path).Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many subscribers", http.StatusServiceUnavailable)
		return
	}
	defer s.release(st)
	s.serve(w, r, st, req)
}

// acquire takes a subscriber slot of st and of the server.
func (s *Server) acquire(st *stream) bool {
	if !acquireSlot(&s.subs, s.maxSubs) {
		return false
	}
	if !acquireSlot(&st.subs, st.cfg.MaxSubscribers) {
		s.subs.Add(-1)
		return false
	}
	st.mSubs.Inc()
	return true
}

func (s *Server) release(st *stream) {
	st.mSubs.Dec()
	st.subs.Add(-1)
	s.subs.Add(-1)
}

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

// request is what a subscriber asked for.
type request struct {
	// lastEventID is the resume position, "" for none.
	lastEventID string
	// since starts at a point in time (zero: not asked).
	since time.Time
	// subject narrows a NATS stream ("" for the configured subject).
	subject string
	// events keeps only these event types (nil: all).
	events map[string]bool
}

func parseRequest(r *http.Request) (*request, error) {
	q := r.URL.Query()
	req := &request{lastEventID: r.Header.Get("Last-Event-ID")}
	if req.lastEventID == "" {
		req.lastEventID = q.Get("lastEventId")
	}
	req.lastEventID = strings.TrimSpace(req.lastEventID)
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("%w: since=%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", ErrBadRequest, v)
		}
		req.since = t
	}
	if evs := q["event"]; len(evs) > 0 {
		req.events = make(map[string]bool, len(evs))
		for _, e := range evs {
			if e == "" {
				return nil, fmt.Errorf("%w: empty event= filter", ErrBadRequest)
			}
			req.events[e] = true
		}
	}
	if v, ok := q["subject"]; ok {
		if len(v) != 1 {
			return nil, fmt.Errorf("%w: give at most one subject= filter", ErrBadRequest)
		}
		if err := validPattern(v[0]); err != nil {
			return nil, fmt.Errorf("%w: subject filter: %v", ErrBadRequest, err)
		}
		req.subject = v[0]
	}
	return req, nil
}

// capEcho keeps an error body short: errors quote what the client sent
// (Last-Event-ID, since=), which may be kilobytes. The middle goes; the
// start and the reason at the end stay.
func capEcho(msg string) string {
	const keep = 120
	if len(msg) <= 2*keep+40 {
		return msg
	}
	return strings.ToValidUTF8(fmt.Sprintf("%s…(%d bytes)…%s", msg[:keep], len(msg)-2*keep, msg[len(msg)-keep:]), "")
}

// statusOf maps a subscription error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidLastEventID), errors.Is(err, ErrForeignLastEventID), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	default:
		return http.StatusServiceUnavailable
	}
}

// serve runs one subscription until the client leaves, falls behind, the
// broker side fails or the server shuts down.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, st *stream, req *request) {
	path := st.cfg.Path
	rc := http.NewResponseController(w)
	// A stream read through a shared tail needs no buffer of its own; a
	// backend that hands every subscriber its own messages does.
	pending := st.maxPending
	if _, ok := st.backend.(tailBackend); ok {
		pending = 0
	}
	sub := newSubscriber(pending, rc)
	s.mu.Lock()
	s.active[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, sub)
		s.mu.Unlock()
	}()
	sctx, cancel := context.WithTimeout(r.Context(), subscribeTimeout)
	f, err := st.backend.subscribe(sctx, sub, req)
	cancel()
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			s.log.Warn("stream subscription failed", "stream", path, "err", err)
		}
		http.Error(w, capEcho(err.Error()), code) // it may quote an 8 KB Last-Event-ID
		return
	}
	defer f.stop()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	enc := sse.NewEncoder(w)
	// The opening comment makes the client and every proxy on the way see
	// the stream open now, not at the first event.
	if !sub.armWrite() || enc.Comment("ok") != nil || !announceStart(w, f, req) || rc.Flush() != nil {
		return
	}

	// The heartbeat fires only after heartbeat of silence: a busy stream
	// needs none, an idle one gets one exactly when due.
	hb := time.NewTimer(st.heartbeat)
	defer hb.Stop()
	var sent uint64
	count := func() {
		if sent > 0 {
			st.sent.Add(sent)
			st.mSent.Add(float64(sent))
			sent = 0
		}
	}
	defer count()
	// private is the subscriber's own feed (Kafka readers, a JetStream
	// catch-up); nil once it has joined the tail.
	private := sub.ch
	var joined bool
	if f.tail != nil && private == nil {
		joined = true
	}
	write := func(m *message) error {
		if sub.isCut.Load() {
			// Buffered messages may follow one that was dropped.
			return errCutOff
		}
		f.cur.advance(m)
		if f.subject != "" && !subjectMatches(f.subject, m.subject) {
			return nil
		}
		if req.events != nil && !req.events[m.eventType()] {
			return nil
		}
		typ := m.typ
		if typ == sse.DefaultType {
			typ = ""
		}
		if err := enc.Encode(sse.Event{ID: f.cur.id(), Type: typ, Data: m.data}); err != nil {
			if errors.Is(err, sse.ErrInvalidType) {
				// A header with a line break cannot be an event type;
				// skipping the one message keeps the stream alive.
				s.log.Warn("message skipped: SSE-Event header is not a valid event type", "stream", path, "type", typ)
				return nil
			}
			return err
		}
		sent++
		return nil
	}
	// join continues from the tail where a catch-up ended.
	join := func(m *message) error {
		if err := f.tail.joinAfter(sub, m.seq); err != nil {
			if errors.Is(err, errNotCovered) {
				// The window moved on while the last events of the
				// catch-up were written: resuming is safe and cheap.
				sub.cut(errOutOfWindow)
				return errOutOfWindow
			}
			sub.fail(err)
			return err
		}
		private, joined = nil, true
		return nil
	}
	// drain writes what is buffered without waiting, then flushes once, so
	// a burst costs one flush yet every event leaves before we block again.
	drain := func(first *message) error {
		if !sub.armWrite() {
			return errCutOff
		}
		m := first
		for n := 0; ; n++ {
			if m.join {
				if err := join(m); err != nil {
					return err
				}
				break
			}
			if err := write(m); err != nil {
				return err
			}
			if n+1 >= st.maxPending {
				break
			}
			select {
			case next := <-private:
				m = &next
				continue
			default:
			}
			break
		}
		count()
		return rc.Flush()
	}
	var frames []*frame
	var scratch []byte
	// writeTail writes the tail's frames the subscriber has not written
	// yet, a batch at a time, the same bytes for every subscriber.
	writeTail := func() error {
		if !sub.armWrite() {
			return errCutOff
		}
		var more bool
		var err error
		frames, more, err = f.tail.read(sub, frames[:0], tailBatch)
		if err != nil {
			return err
		}
		for i, fr := range frames {
			frames[i] = nil
			if sub.isCut.Load() {
				return errCutOff
			}
			ok, err := s.writeFrame(w, f, req, fr, &scratch)
			if err != nil {
				return err
			}
			if ok {
				sent++
			}
		}
		if more {
			sub.notify() // come back after a look at the other cases
		}
		count()
		return rc.Flush()
	}
	for {
		select {
		case m := <-private:
			if err := drain(&m); err != nil {
				s.logEnd(path, sub, err)
				return
			}
			hb.Reset(st.heartbeat)
		case <-sub.wake:
			if !joined {
				continue // a catch-up's join wakes it again
			}
			if err := writeTail(); err != nil {
				s.logEnd(path, sub, err)
				return
			}
			hb.Reset(st.heartbeat)
		case <-hb.C:
			if f.check != nil {
				if err := f.check(); err != nil {
					sub.fail(err)
					s.logEnd(path, sub, err)
					return
				}
			}
			if !sub.armWrite() || enc.Comment("heartbeat") != nil || rc.Flush() != nil {
				s.logEnd(path, sub, errCutOff)
				return
			}
			hb.Reset(st.heartbeat)
		case <-sub.done:
			s.logEnd(path, sub, errCutOff)
			return
		case <-r.Context().Done():
			return
		case <-s.stopping:
			// Stop the feed first so that nothing more arrives, then
			// flush what it had already delivered: the client has every
			// event it was sent, and its Last-Event-ID covers them.
			f.stop()
			for private != nil {
				select {
				case m := <-private:
					if m.join {
						private = nil
						break
					}
					if drain(&m) != nil {
						return
					}
				default:
					private = nil
				}
			}
			for joined {
				if writeTail() != nil {
					return
				}
				select {
				case <-sub.wake:
				default:
					return
				}
			}
			return
		}
	}
}

// tailBatch bounds the frames written between two looks at the handler's
// other duties (heartbeat, shutdown, a cut).
const tailBatch = 256

// tailBackend is a backend whose subscribers read a shared tail, so they
// need no buffer of their own (a JetStream catch-up makes its own).
type tailBackend interface {
	backend
	sharesTail()
}

// writeFrame writes one frame of the tail to a subscriber, unless its
// filters skip it.
func (s *Server) writeFrame(w io.Writer, f feed, req *request, fr *frame, scratch *[]byte) (bool, error) {
	if f.subject != "" && !subjectMatches(f.subject, fr.subject) {
		return false, nil
	}
	var idLine []byte
	if fr.id == "" {
		// Core NATS: ids count the events of this connection.
		f.cur.advance(nil)
		idLine = append(append(append((*scratch)[:0], "id: "...), f.cur.id()...), '\n')
		*scratch = idLine
	}
	if fr.wire == nil {
		return false, nil // logged once, when the frame was made
	}
	if req.events != nil && !req.events[fr.eventType()] {
		return false, nil
	}
	if idLine != nil {
		if _, err := w.Write(idLine); err != nil {
			return false, err
		}
	}
	_, err := w.Write(fr.wire)
	return err == nil, err
}

// announceStart tells a client that came without Last-Event-ID where its
// subscription starts, as an id-only record: an event with no data is not
// dispatched (WHATWG), yet its id becomes the last event ID, which
// EventSource and sse.Decoder send back on reconnect. Without it a client
// that drops before its first event has no id, and whatever was published
// until it reconnects would be lost. It reports whether the write worked.
func announceStart(w http.ResponseWriter, f feed, req *request) bool {
	if f.start == "" || req.lastEventID != "" {
		return true // nothing to name, or the client already holds it
	}
	// Ids are digits or base64url, so they cannot break the framing.
	_, err := io.WriteString(w, "id: "+f.start+"\n\n")
	return err == nil
}

func (s *Server) logEnd(path string, sub *subscriber, err error) {
	if reason := sub.reason(); reason != nil {
		err = reason
	}
	if errors.Is(err, errSlow) {
		metrics.SlowSubscriberDrops.WithLabelValues(path).Inc()
		s.log.Info("slow subscriber disconnected", "stream", path, "err", err)
		return
	}
	if errors.Is(err, errBroker) {
		s.log.Warn("subscriber disconnected: broker side failed; it may resume", "stream", path, "err", err)
		return
	}
	s.log.Debug("subscriber ended", "stream", path, "err", err)
}
