package kafka

import (
	"context"
	"time"

	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// This file is the driver's side of the configuration: its block
// (Options), its defaults and its rules, and its registration.

// Options configure one Kafka sink: the driver's block of a pipeline's
// sink (sink: {kafka: {...}}), whose keys are the yaml tags. Zero values
// stand for the defaults (withDefaults).
type Options struct {
	// Topic is a template like the NATS sink's subject: {pipeline},
	// {event}, {id}, {data.PATH}.
	Topic string `yaml:"topic"`
	// FallbackTopic receives events whose topic cannot be rendered.
	FallbackTopic string `yaml:"fallback_topic"`
	// Key is a template; without it every event of the pipeline goes to one
	// partition, which keeps upstream order.
	Key string `yaml:"key"`
	// RequiredAcks must be all (RequiredAcksAll, the default); one and
	// none are refused by the configuration check.
	RequiredAcks string `yaml:"required_acks"`
	// BatchTimeout is accepted for older files and ignored: the sink
	// flushes every Write at once (it waits for the acks anyway).
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// BatchSize bounds the events of one produce request
	// (DefaultBatchSize).
	BatchSize int `yaml:"batch_size"`
	// Compression is none (the default), gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// CreateTopic creates the topic when absent.
	CreateTopic *TopicOptions `yaml:"create_topic"`
}

// TopicOptions describe a Kafka topic to create if absent; 0 asks for the
// broker's default.
type TopicOptions struct {
	Partitions        int `yaml:"partitions"`
	ReplicationFactor int `yaml:"replication_factor"`
}

// Defaults of Options.
const (
	DefaultRequiredAcks = RequiredAcksAll
	DefaultBatchTimeout = 5 * time.Millisecond
	DefaultBatchSize    = 256
	DefaultCompression  = CompressionNone
)

// The values of Options.RequiredAcks and Options.Compression.
const (
	RequiredAcksAll  = "all"
	RequiredAcksOne  = "one"
	RequiredAcksNone = "none"

	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// withDefaults is o with its unset fields set: the one place this
// driver's defaults are applied.
func (o Options) withDefaults() Options {
	if o.RequiredAcks == "" {
		o.RequiredAcks = DefaultRequiredAcks
	}
	if o.BatchTimeout == 0 {
		o.BatchTimeout = DefaultBatchTimeout
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	return o
}

func init() {
	sinks.Register(Kind, sinks.Driver[Options]{
		Shared: "kafka",
		Check:  check,
		Open: func(ctx context.Context, deps sinks.Deps, pipeline string, opts Options) (sinks.Sink, error) {
			return New(ctx, deps.Kafka, pipeline, opts, deps.Logger)
		},
	})
}

// check reports the problems of a kafka block; zero values stand for the
// defaults.
func check(o *Options, p sinks.Problems) {
	if o.Topic == "" {
		p.Add("topic", "required")
	} else if err := route.CheckTopic(o.Topic); err != nil {
		p.Add("topic", "%v", err)
	}
	if o.FallbackTopic != "" {
		if err := route.CheckTopic(o.FallbackTopic); err != nil {
			p.Add("fallback_topic", "%v", err)
		}
	}
	if o.Key != "" {
		if err := route.Check(o.Key); err != nil {
			p.Add("key", "%v", err)
		}
	}
	switch o.RequiredAcks {
	// A checkpoint moves past what the broker acknowledged: with these,
	// an acknowledged event may never be stored.
	case RequiredAcksOne:
		p.Add("required_acks", "one is refused: the partition leader acknowledges before its followers copy the event, so a leader failure loses events already checkpointed; use all (the default)")
	case RequiredAcksNone:
		p.Add("required_acks", "none is refused: writes are not acknowledged, so any failed write loses events already checkpointed; use all (the default)")
	default:
		p.OneOf("required_acks", o.RequiredAcks, RequiredAcksAll)
	}
	p.NonNegative("batch_timeout", int64(o.BatchTimeout))
	p.NonNegative("batch_size", int64(o.BatchSize))
	p.OneOf("compression", o.Compression, CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd)
	if t := o.CreateTopic; t != nil {
		p.NonNegative("create_topic.partitions", int64(t.Partitions))
		p.NonNegative("create_topic.replication_factor", int64(t.ReplicationFactor))
	}
}
