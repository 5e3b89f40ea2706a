package streams

import (
	"time"

	"github.com/segmentio/kafka-go"
)

// Defaults for stream settings left at zero. The YAML configuration applies
// the same values (package config); these serve configurations built in
// code, and a test in the runner checks that the two agree.
const (
	// DefaultHeartbeat is the interval of keep-alive comments; proxies
	// commonly close connections idle for 30-60 s.
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxPending is how many events a subscriber may fall behind.
	DefaultMaxPending = 1024
	// DefaultWindowEvents and DefaultWindowBytes bound the window of
	// recent events a JetStream or Kafka stream keeps while it has
	// subscribers.
	DefaultWindowEvents = 10000
	DefaultWindowBytes  = 16 << 20
)

// Config is one stream: a path and the broker source it serves. Exactly one
// of NATS and Kafka is set.
type Config struct {
	// Path is where the stream is served; it starts with "/".
	Path string
	// NATS serves a core NATS subject or a JetStream stream.
	NATS *NATSConfig
	// Kafka serves a Kafka topic.
	Kafka *KafkaConfig
	// Heartbeat is the interval of keep-alive comments after silence.
	// Defaults to DefaultHeartbeat.
	Heartbeat time.Duration
	// MaxPending is how many events a subscriber may fall behind before
	// it is cut off. Defaults to DefaultMaxPending.
	MaxPending int
	// MaxSubscribers caps this stream's subscribers (0: no cap).
	MaxSubscribers int
	// Auth, when set, restricts who may subscribe.
	Auth *Auth
	// CORS, when set, answers cross-origin requests and preflights.
	CORS *CORS
	// WindowEvents bounds how many recent events a JetStream or Kafka
	// stream keeps in memory while it has subscribers. Defaults to
	// DefaultWindowEvents; never fewer than MaxPending+1.
	WindowEvents int
	// WindowBytes bounds the same window in bytes of encoded events.
	// Defaults to DefaultWindowBytes.
	WindowBytes int
	// Coalesce delays the write to a subscriber by up to this long after
	// the first event it has not been sent, so that the events of a burst
	// leave in one write: fewer system calls per event for that much more
	// latency. 0 (the default) writes at once, except that while writing
	// every event at once would keep the writers busy, a stream wakes its
	// subscribers at most every 30 ms (streams/pacing.go). It applies to
	// subscribers whose connection the server took over (HTTP/1.x).
	Coalesce time.Duration
}

// NATSConfig names what a NATS stream reads.
type NATSConfig struct {
	// Subject is the subject (wildcards allowed) served; with JetStream it
	// narrows the stream's subjects ("" for all of them).
	Subject string
	// JetStream, when not empty, is the JetStream stream read; otherwise
	// Subject is read as a core NATS subscription.
	JetStream string
}

// KafkaConfig names the topic a Kafka stream reads.
type KafkaConfig struct {
	Topic string
	// Start is where a subscriber without Last-Event-ID starts: "latest"
	// (the default, also for "") or "earliest".
	Start string
}

// Auth restricts a stream to clients with a token.
type Auth struct {
	// BearerTokens are accepted as they are.
	BearerTokens []string
	// JWT, when set, accepts JSON Web Tokens.
	JWT *JWT
	// Cookie is the name of a cookie that may carry the token.
	Cookie string
}

// JWT validates bearer tokens as JSON Web Tokens. At least one key is set.
type JWT struct {
	HS256Secret        string
	RS256PublicKeyFile string
	Audience           string
	// Claim lists the stream paths the token may read. Defaults to
	// DefaultJWTClaim.
	Claim string
}

// CORS answers cross-origin requests and preflights.
type CORS struct {
	// AllowedOrigins are the origins answered; "*" is any.
	AllowedOrigins   []string
	AllowCredentials bool
}

// KafkaCluster is the Kafka cluster that Kafka streams read.
type KafkaCluster struct {
	Brokers []string
	// Transport carries metadata and offset requests; nil for a plain
	// connection. The server closes its idle connections when it is done.
	Transport *kafka.Transport
	// Dialer connects the partition readers; nil for a plain connection.
	Dialer *kafka.Dialer
}

// configured reports whether brokers are set.
func (k KafkaCluster) configured() bool { return len(k.Brokers) > 0 }
