// Package config is the user-facing contract of ssebridge: the YAML file's
// structure, its defaults and its validation.
//
// Every key a user can write is a field here with a yaml tag, except the
// keys of a pipeline's sink block: those are the fields of the sink
// driver's own options type (see Sink). Defaults live in one place
// (defaults.go; a sink driver's in its package); Validate reports every
// problem at once, each with the file, line and key it concerns.
package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a whole ssebridge configuration file.
type Config struct {
	// DataDir holds checkpoints and the embedded JetStream store.
	DataDir string `yaml:"data_dir"`
	// ShutdownTimeout bounds graceful shutdown (drain in-flight events,
	// write checkpoints, close subscribers).
	ShutdownTimeout Duration   `yaml:"shutdown_timeout"`
	HTTP            HTTP       `yaml:"http"`
	NATS            NATS       `yaml:"nats"`
	Kafka           Kafka      `yaml:"kafka"`
	Log             Log        `yaml:"log"`
	Cluster         Cluster    `yaml:"cluster"`
	Pipelines       []Pipeline `yaml:"pipelines"`
	Streams         []Stream   `yaml:"streams"`

	// File is the path the configuration was loaded from ("" when built in
	// code); errors name it.
	File string `yaml:"-"`

	// lines maps dotted keys ("pipelines[0].source.url") to the line they
	// were read from, so that Validate can point at them. Compare Pipeline
	// and Stream values, not whole Configs: lines differ between two loads
	// of equivalent files.
	lines map[string]int
}

// Cluster lets replicas with the same configuration share its pipelines
// through a JetStream key-value bucket: one lease per pipeline, so every
// feed is read by exactly one replica, and checkpoints in the same bucket,
// so another replica resumes where the owner stopped.
type Cluster struct {
	// Enabled turns clustering on; off, one process runs every pipeline
	// with its checkpoints in data_dir.
	Enabled bool `yaml:"enabled"`
	// Bucket is the JetStream key-value bucket (created if missing).
	Bucket string `yaml:"bucket"`
	// LeaseTTL: an owner that stops renewing loses its pipelines after it.
	LeaseTTL Duration `yaml:"lease_ttl"`
	// ReplicaID names this replica (default: host name plus a random
	// suffix); unique among the replicas.
	ReplicaID string `yaml:"replica_id"`
}

// HTTP configures the server for reverse streams, /metrics, /healthz and /readyz.
type HTTP struct {
	Addr string `yaml:"addr"`
	// MaxSubscribers caps SSE subscribers across all streams (0: no cap).
	MaxSubscribers int `yaml:"max_subscribers"`
	// TLS serves HTTPS, and with it HTTP/2: browsers open at most six
	// HTTP/1.1 connections to a host, so a page with more EventSources
	// than that stalls, while over HTTP/2 they share one connection.
	TLS *ServerTLS `yaml:"tls"`
}

// ServerTLS is the server's certificate. The files are read again when
// they change (a renewed certificate needs no restart).
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// NATS configures the NATS connection shared by sinks and streams.
type NATS struct {
	// URL of an external server; mutually exclusive with Embedded.
	URL string `yaml:"url"`
	// Embedded runs a NATS server with JetStream in process, storing in DataDir.
	Embedded bool `yaml:"embedded"`
	// Listen exposes the embedded server's client port (e.g.
	// "127.0.0.1:4222") so other tools can connect; "" keeps it in-process.
	Listen    string `yaml:"listen"`
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	Token     string `yaml:"token"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	TLS       *TLS   `yaml:"tls"`
}

// Configured reports whether the file set up a NATS connection at all.
func (n NATS) Configured() bool { return n.URL != "" || n.Embedded }

// Kafka configures the Kafka cluster shared by sinks and streams.
type Kafka struct {
	Brokers  []string `yaml:"brokers"`
	ClientID string   `yaml:"client_id"`
	SASL     *SASL    `yaml:"sasl"`
	TLS      *TLS     `yaml:"tls"`
}

// Configured reports whether the file set up a Kafka cluster at all.
func (k Kafka) Configured() bool { return len(k.Brokers) > 0 }

// SASL is Kafka SASL authentication.
type SASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// TLS holds client TLS options.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Log configures structured logging.
type Log struct {
	// Format is text or json.
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Pipeline moves one SSE feed into one sink.
type Pipeline struct {
	Name   string `yaml:"name"`
	Source Source `yaml:"source"`
	Sink   Sink   `yaml:"sink"`
}

// Source is the upstream SSE feed of a pipeline.
type Source struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"`
	Headers map[string]string `yaml:"headers"`
	// Body is sent with every (re)connection.
	Body string `yaml:"body"`
	// Events, when set, forwards only these event types.
	Events      []string `yaml:"events"`
	Retry       Retry    `yaml:"retry"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	TLS         *TLS     `yaml:"tls"`
	// MaxEventSize in bytes; a larger event is counted and skipped.
	MaxEventSize int `yaml:"max_event_size"`
	// QueueSize bounds the events buffered between socket and sink.
	QueueSize int `yaml:"queue_size"`
	// CheckpointMaxUnsaved bounds the acknowledged events not yet in the
	// checkpoint while the store fails; past it forwarding pauses until a
	// save succeeds, so a crash replays at most that many.
	CheckpointMaxUnsaved int `yaml:"checkpoint_max_unsaved"`
}

// Retry bounds the reconnection delay.
type Retry struct {
	Initial Duration `yaml:"initial"`
	Max     Duration `yaml:"max"`
}

// Sink is a pipeline's destination: the block of exactly one registered
// sink driver (sink: {nats: {...}}). The block belongs to the driver: it
// decodes into the driver's options type (see package sinks), which checks
// it, so this package knows no driver and no driver's keys.
type Sink struct {
	// Kind is the driver's name, the key of its block ("nats", "kafka").
	Kind string
	// Block is the driver's block as Load checked it: environment
	// references expanded, positions, comments and styles dropped, so that
	// two equal blocks are equal under reflect.DeepEqual wherever they
	// stand in the file. nil stands for an empty block.
	Block *yaml.Node
}

// Stream serves a queue topic as an SSE endpoint.
type Stream struct {
	Path  string       `yaml:"path"`
	NATS  *NATSStream  `yaml:"nats"`
	Kafka *KafkaStream `yaml:"kafka"`
	// Heartbeat is the interval of keep-alive comments.
	Heartbeat Duration `yaml:"heartbeat"`
	// MaxPending is how far a subscriber may fall behind before it is cut off.
	MaxPending int `yaml:"max_pending"`
	// MaxSubscribers caps this stream's subscribers (0: no cap).
	MaxSubscribers int   `yaml:"max_subscribers"`
	Auth           *Auth `yaml:"auth"`
	CORS           *CORS `yaml:"cors"`
	// WindowEvents bounds how many recent events a JetStream stream keeps
	// in memory while it has subscribers, so that a client resuming
	// inside that window is served without reading the broker again.
	WindowEvents int `yaml:"window_events"`
	// WindowBytes bounds the same window in bytes of encoded events.
	WindowBytes int `yaml:"window_bytes"`
	// Coalesce lets a subscriber's write wait up to this long for the
	// rest of a burst (streams.Config.Coalesce); 0 writes at once.
	Coalesce Duration `yaml:"coalesce"`
}

// NATSStream reads a NATS subject, or a JetStream stream when JetStream is set.
type NATSStream struct {
	Subject   string             `yaml:"subject"`
	JetStream *JetStreamSelector `yaml:"jetstream"`
}

// JetStreamSelector names the JetStream stream that holds the subject.
type JetStreamSelector struct {
	Stream string `yaml:"stream"`
}

// KafkaStream reads a Kafka topic.
type KafkaStream struct {
	Topic string `yaml:"topic"`
	// Start is latest (default) or earliest for subscribers with no Last-Event-ID.
	Start string `yaml:"start"`
}

// Auth restricts who may subscribe.
type Auth struct {
	BearerTokens []string `yaml:"bearer_tokens"`
	JWT          *JWT     `yaml:"jwt"`
	// Cookie is the name of a cookie that may carry the token.
	Cookie string `yaml:"cookie"`
}

// JWT validates bearer tokens as JSON Web Tokens.
type JWT struct {
	HS256Secret        string `yaml:"hs256_secret"`
	RS256PublicKeyFile string `yaml:"rs256_public_key_file"`
	Audience           string `yaml:"audience"`
	// Claim lists the stream paths the token may read.
	Claim string `yaml:"claim"`
}

// CORS answers cross-origin requests and preflights.
type CORS struct {
	AllowedOrigins   []string `yaml:"allowed_origins"`
	AllowCredentials bool     `yaml:"allow_credentials"`
}

// Duration is a time.Duration written in YAML as "90s", "1m30s".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
