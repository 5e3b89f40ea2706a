package config

import (
	"net/http"
	"time"

	"github.com/ssebridge/ssebridge/internal/kafkaconn"
)

// Defaults. These constants are the one place a default lives: SetDefaults
// applies them, config.example.yaml documents them and other packages refer
// to them instead of repeating a number. A sink driver's defaults live in
// its own package (sinks/nats, sinks/kafka).
const (
	DefaultDataDir         = "./data"
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultLogFormat       = LogFormatText
	DefaultLogLevel        = LogLevelInfo

	DefaultSourceMethod = http.MethodGet
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = 60 * time.Second
	// DefaultIdleTimeout is how long a feed may stay silent (comments and
	// heartbeats count as traffic) before the connection is recycled.
	DefaultIdleTimeout  = 90 * time.Second
	DefaultMaxEventSize = 4 << 20 // 4 MiB
	DefaultQueueSize    = 1024
	// DefaultCheckpointMaxUnsaved is how many acknowledged events the
	// checkpoint may lag while the checkpoint store fails before forwarding
	// pauses: what a crash then replays at most.
	DefaultCheckpointMaxUnsaved = 10000

	DefaultClusterBucket   = "ssebridge"
	DefaultClusterLeaseTTL = 10 * time.Second

	DefaultStreamHeartbeat  = 15 * time.Second
	DefaultStreamMaxPending = 1024
	// DefaultStreamWindowEvents and DefaultStreamWindowBytes bound a
	// stream's in-memory window of recent events: about a minute of a
	// busy feed, and at most 16 MiB per stream that has subscribers.
	DefaultStreamWindowEvents = 10000
	DefaultStreamWindowBytes  = 16 << 20
	DefaultKafkaStart         = KafkaStartLatest
)

// Enumerated values.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"

	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"

	// The SASL mechanisms are kafkaconn's, which applies them.
	SASLPlain       = kafkaconn.MechanismPlain
	SASLScramSHA256 = kafkaconn.MechanismSCRAMSHA256
	SASLScramSHA512 = kafkaconn.MechanismSCRAMSHA512

	KafkaStartLatest   = "latest"
	KafkaStartEarliest = "earliest"
)

// SetDefaults fills every unset (zero) field that has a default. Load calls
// it; code that builds a Config by hand calls it before Validate or before
// handing the Config to the bridge. It is idempotent.
func (c *Config) SetDefaults() {
	setString(&c.DataDir, DefaultDataDir)
	setDuration(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setString(&c.HTTP.Addr, DefaultHTTPAddr)
	setString(&c.Log.Format, DefaultLogFormat)
	setString(&c.Log.Level, DefaultLogLevel)
	if c.Cluster.Enabled {
		setString(&c.Cluster.Bucket, DefaultClusterBucket)
		setDuration(&c.Cluster.LeaseTTL, DefaultClusterLeaseTTL)
	}
	for i := range c.Pipelines {
		c.Pipelines[i].SetDefaults()
	}
	for i := range c.Streams {
		c.Streams[i].SetDefaults()
	}
}

// SetDefaults fills the pipeline's unset fields.
func (p *Pipeline) SetDefaults() {
	s := &p.Source
	setString(&s.Method, DefaultSourceMethod)
	setDuration(&s.Retry.Initial, DefaultRetryInitial)
	setDuration(&s.Retry.Max, DefaultRetryMax)
	setDuration(&s.IdleTimeout, DefaultIdleTimeout)
	setInt(&s.MaxEventSize, DefaultMaxEventSize)
	setInt(&s.QueueSize, DefaultQueueSize)
	setInt(&s.CheckpointMaxUnsaved, DefaultCheckpointMaxUnsaved)
	// The sink's defaults belong to its driver, which applies them when
	// it opens the sink.
}

// SetDefaults fills the stream's unset fields.
func (s *Stream) SetDefaults() {
	setDuration(&s.Heartbeat, DefaultStreamHeartbeat)
	setInt(&s.MaxPending, DefaultStreamMaxPending)
	setInt(&s.WindowEvents, DefaultStreamWindowEvents)
	setInt(&s.WindowBytes, DefaultStreamWindowBytes)
	if k := s.Kafka; k != nil {
		setString(&k.Start, DefaultKafkaStart)
	}
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p *Duration, def time.Duration) {
	if *p == 0 {
		*p = Duration(def)
	}
}
