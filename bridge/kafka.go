package bridge

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/kafkaconn"
)

// KafkaStatus is the Kafka cluster's reachability.
type KafkaStatus struct {
	Connected bool      `json:"connected"`
	Broker    string    `json:"broker,omitempty"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// kafkaProbeTTL is how long a probe result is reused: the status page
// polls every second and must not open a broker connection each time.
const kafkaProbeTTL = 5 * time.Second

// kafkaProbeTimeout bounds one probe, so /readyz answers promptly even
// when every broker blackholes connections.
const kafkaProbeTimeout = 2 * time.Second

// kafkaProbe checks that a broker accepts a connection (TLS and SASL
// included) on demand, caching the answer. Kafka clients are per sink and
// per stream, so the bridge has no shared connection to ask.
type kafkaProbe struct {
	ttl time.Duration

	mu   sync.Mutex // held during a probe: concurrent callers share it
	last KafkaStatus
}

func (k *kafkaProbe) status(ctx context.Context, cfg config.Kafka) KafkaStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	ttl := k.ttl
	if ttl == 0 {
		ttl = kafkaProbeTTL
	}
	if !k.last.CheckedAt.IsZero() && time.Since(k.last.CheckedAt) < ttl {
		return k.last
	}
	k.last = probeKafka(ctx, cfg)
	return k.last
}

func probeKafka(ctx context.Context, cfg config.Kafka) KafkaStatus {
	st := KafkaStatus{CheckedAt: time.Now().UTC()}
	d, err := kafkaconn.Dialer(kafkaConfig(cfg))
	if err != nil {
		st.Error = err.Error()
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaProbeTimeout)
	defer cancel()
	// kafka-go waits for a broker's answers (the SASL handshake inside the
	// dial, ApiVersions after it) with no deadline of its own: a peer that
	// accepts but never answers would hold the probe, and every /readyz
	// queued behind its lock, for good. Closing the socket when the probe
	// ends (timed out, or another broker answered) ends every such wait.
	dialer := &net.Dialer{} // Happy Eyeballs is on by default (DualStack is deprecated)
	d.DialFunc = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = c.Close() })
		return c, nil
	}
	// Every broker at once: one that hangs must neither use up the others'
	// budget nor make a cluster that answers look down.
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(cfg.Brokers))
	for i, b := range cfg.Brokers {
		go func() { results <- result{i, probeBroker(ctx, d, b)} }()
	}
	errs := make([]error, len(cfg.Brokers))
	for range cfg.Brokers {
		r := <-results
		errs[r.i] = r.err
		if r.err == nil && !st.Connected {
			st.Connected, st.Broker = true, cfg.Brokers[r.i]
			cancel() // the other answers are not needed
		}
	}
	if !st.Connected {
		st.Error = errors.Join(errs...).Error()
	}
	return st
}

// probeBroker dials one broker with d and asks it for its API versions.
func probeBroker(ctx context.Context, d *kafka.Dialer, addr string) error {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// ApiVersions proves a Kafka protocol peer, not just an open port.
	_, err = conn.ApiVersions()
	return err
}
