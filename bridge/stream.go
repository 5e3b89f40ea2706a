package bridge

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sync"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/streams"
)

// streamServer is what the bridge needs from a reverse stream server
// (streams.Server) serving one path.
type streamServer interface {
	http.Handler
	Shutdown(ctx context.Context) error
	// Subscribers is the number of connected subscribers.
	Subscribers() int
}

// StreamStatus is one reverse stream's state as /api/status reports it.
type StreamStatus struct {
	Path        string `json:"path"`
	Source      string `json:"source"`
	Subscribers int    `json:"subscribers"`
	// EventsSent counts events written to its subscribers since start.
	EventsSent uint64 `json:"events_sent"`
	Error      string `json:"error,omitempty"`
}

// stream is one configured reverse stream. Each path gets its own server so
// that reloading one stream never disconnects another's subscribers.
type stream struct {
	cfg config.Stream
	b   *Bridge

	mu  sync.Mutex
	srv streamServer
	err error
}

// startStream creates the stream's server. A failure (the JetStream stream
// a pipeline creates may not exist yet) is kept and retried on the next
// request, so start order between pipelines and streams does not matter.
// Callers hold reloadMu.
func (b *Bridge) startStream(sc config.Stream) {
	metrics.InitStream(sc.Path)
	s := &stream{cfg: sc, b: b}
	if _, err := s.server(); err != nil {
		b.log.Warn("stream not available yet, retrying on first request", "stream", sc.Path, "err", err)
	} else {
		b.log.Info("stream started", "stream", sc.Path, "source", streamSource(sc))
	}
	b.mu.Lock()
	b.streams[sc.Path] = s
	b.mu.Unlock()
}

// stopStream removes a stream and disconnects its subscribers. Callers hold
// reloadMu.
func (b *Bridge) stopStream(path string) {
	b.mu.Lock()
	s := b.streams[path]
	delete(b.streams, path)
	timeout := b.shutdownTimeoutLocked()
	b.mu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.shutdown(ctx); err != nil {
		b.log.Warn("stream shutdown", "stream", path, "err", err)
	}
	b.log.Info("stream stopped", "stream", path)
}

// knownToken reports whether tok is a bearer token of any stream the bridge
// serves now. It is streams.Deps.KnownToken: each path has its own
// streams.Server, which alone could not tell another stream's token (403)
// from an unknown one (401). It reads b.streams under b.mu, so it follows
// reloads: a removed stream's tokens stop counting once it is stopped.
// Callers must not hold b.mu.
func (b *Bridge) knownToken(tok string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	match := 0
	for _, s := range b.streams {
		if s.cfg.Auth == nil {
			continue
		}
		for _, t := range s.cfg.Auth.BearerTokens {
			// Compare with every token, in constant time, so timing does
			// not tell which prefix of a valid token a guess shares.
			match |= subtle.ConstantTimeCompare([]byte(tok), []byte(t))
		}
	}
	return match == 1
}

func (s *stream) server() (streamServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return s.srv, nil
	}
	srv, err := newStreamServer(s.b, s.cfg)
	if err != nil {
		s.err = err
		return nil, err
	}
	s.srv, s.err = srv, nil
	return srv, nil
}

func (s *stream) shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func (s *stream) status() StreamStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StreamStatus{Path: s.cfg.Path, Source: streamSource(s.cfg), EventsSent: metrics.StreamSent(s.cfg.Path)}
	if s.srv != nil {
		st.Subscribers = s.srv.Subscribers()
	} else if s.err != nil {
		st.Error = s.err.Error()
	}
	return st
}

func streamSource(sc config.Stream) string {
	switch {
	case sc.NATS != nil && sc.NATS.JetStream != nil:
		return "jetstream " + sc.NATS.JetStream.Stream + " " + sc.NATS.Subject
	case sc.NATS != nil:
		return "nats " + sc.NATS.Subject
	case sc.Kafka != nil:
		return "kafka " + sc.Kafka.Topic
	}
	return ""
}

// streamRouter dispatches stream paths to their servers and enforces
// http.max_subscribers across all of them: every path's streams.Server
// takes a slot of the one limit, and holds it as long as its subscriber
// is connected (a taken-over connection outlives its handler).
type streamRouter struct {
	b *Bridge
}

// lookup returns the stream for an exact path.
func (r *streamRouter) lookup(path string) *stream {
	r.b.mu.RLock()
	defer r.b.mu.RUnlock()
	return r.b.streams[path]
}

func (r *streamRouter) serve(w http.ResponseWriter, req *http.Request, s *stream) {
	srv, err := s.server()
	if err != nil {
		http.Error(w, fmt.Sprintf("stream %s unavailable: %v", s.cfg.Path, err), http.StatusServiceUnavailable)
		return
	}
	r.b.mu.RLock()
	r.b.subLimit.SetMax(r.b.cfg.HTTP.MaxSubscribers)
	r.b.mu.RUnlock()
	srv.ServeHTTP(w, req)
}

// oneStream adapts a streams.Server serving a single path.
type oneStream struct{ *streams.Server }

func (s oneStream) Subscribers() int {
	n := 0
	for _, st := range s.Stats() {
		n += st.Subscribers
	}
	return n
}

// newStreamServer gives each path its own streams.Server, so a reload can
// replace one stream without disconnecting the subscribers of another. The
// global http.max_subscribers cap is therefore enforced by streamRouter.
func newStreamServer(b *Bridge, sc config.Stream) (streamServer, error) {
	b.mu.RLock()
	nc, kc := b.nc, b.cfg.Kafka
	b.mu.RUnlock()
	deps := streams.Deps{
		Shared: &b.subLimit,
		NATS:   nc,
		Logger: b.log, // streams name the path in each line
		// This server knows only its own stream's tokens; another stream's
		// token must still get 403, not 401.
		KnownToken: b.knownToken,
	}
	if sc.Kafka != nil && kc.Configured() {
		k, err := kafkaCluster(kc)
		if err != nil {
			return nil, fmt.Errorf("stream %q: kafka: %w", sc.Path, err)
		}
		deps.Kafka = k
	}
	srv, err := streams.New([]streams.Config{sc.Options()}, deps)
	if err != nil {
		return nil, err
	}
	return oneStream{srv}, nil
}

// kafkaCluster is the kafka block as the streams read it: client_id, SASL
// and TLS applied as the sinks apply them.
func kafkaCluster(c config.Kafka) (streams.KafkaCluster, error) {
	kc := kafkaConfig(c)
	tr, err := kafkaconn.Transport(kc)
	if err != nil {
		return streams.KafkaCluster{}, err
	}
	d, err := kafkaconn.Dialer(kc)
	if err != nil {
		return streams.KafkaCluster{}, err
	}
	return streams.KafkaCluster{Brokers: c.Brokers, Transport: tr, Dialer: d}, nil
}
