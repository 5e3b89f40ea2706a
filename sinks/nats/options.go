package nats

import (
	"context"
	"fmt"
	"time"

	"github.com/ssebridge/ssebridge/internal/names"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// This file is the driver's side of the configuration: its block
// (Options), its default and its rules, and its registration.

// DefaultMaxInFlight is Options.MaxInFlight when it is not set.
const DefaultMaxInFlight = 256

// MaxMaxInFlight bounds max_in_flight: the JetStream publisher allocates
// its window of reply slots up front, so a mistyped huge value would cost
// its memory at start, and no stream acknowledges faster with more.
const MaxMaxInFlight = 65536

// Options configure one NATS sink: the driver's block of a pipeline's sink
// (sink: {nats: {...}}), whose keys are the yaml tags.
type Options struct {
	// Subject is a template: {pipeline}, {event}, {id}, {data.PATH}.
	Subject string `yaml:"subject"`
	// FallbackSubject receives events whose subject cannot be rendered;
	// without it they are counted as failed and logged.
	FallbackSubject string `yaml:"fallback_subject"`
	// JetStream publishes with acknowledgements (and deduplication) to a
	// JetStream stream instead of core NATS.
	JetStream bool `yaml:"jetstream"`
	// Stream, with JetStream, is created when absent.
	Stream *StreamOptions `yaml:"stream"`
	// MaxInFlight bounds unacknowledged async JetStream publishes (0:
	// DefaultMaxInFlight).
	MaxInFlight int `yaml:"max_in_flight"`
}

// StreamOptions describe a JetStream stream to create if absent.
type StreamOptions struct {
	Name string `yaml:"name"`
	// Subjects the stream binds (default: the sink's subject, when it is
	// not a template).
	Subjects []string `yaml:"subjects"`
	// MaxAge, MaxBytes: 0 for no limit.
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// Replicas: 0 for 1.
	Replicas int `yaml:"replicas"`
}

// withDefaults is o with its unset fields set: the one place this
// driver's defaults are applied.
func (o Options) withDefaults() Options {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	return o
}

func init() {
	sinks.Register(Kind, sinks.Driver[Options]{
		Shared: "nats",
		Check:  check,
		Open: func(ctx context.Context, deps sinks.Deps, pipeline string, opts Options) (sinks.Sink, error) {
			return Open(ctx, deps, pipeline, opts)
		},
	})
}

// check reports the problems of a nats block; zero values stand for the
// defaults.
func check(o *Options, p sinks.Problems) {
	if o.Subject == "" {
		p.Add("subject", "required")
	} else if err := route.CheckSubject(o.Subject); err != nil {
		p.Add("subject", "%v", err)
	}
	if o.FallbackSubject != "" {
		if err := route.CheckSubject(o.FallbackSubject); err != nil {
			p.Add("fallback_subject", "%v", err)
		}
	}
	p.NonNegative("max_in_flight", int64(o.MaxInFlight))
	if o.MaxInFlight > MaxMaxInFlight {
		p.Add("max_in_flight", "must be at most %d, got %d", MaxMaxInFlight, o.MaxInFlight)
	}
	st := o.Stream
	if st == nil {
		return
	}
	if !o.JetStream {
		p.Add("stream", "needs jetstream: true")
	}
	if st.Name == "" {
		p.Add("stream.name", "required")
	} else if err := names.JetStreamStream(st.Name); err != nil {
		p.Add("stream.name", "%v", err)
	}
	for j, subj := range st.Subjects {
		if err := names.SubscribeSubject(subj); err != nil {
			p.Add(fmt.Sprintf("stream.subjects[%d]", j), "%v", err)
		}
	}
	p.NonNegative("stream.max_age", int64(st.MaxAge))
	p.NonNegative("stream.max_bytes", st.MaxBytes)
	if st.Replicas < 0 || st.Replicas > 5 {
		p.Add("stream.replicas", "must be from 1 to 5 (0: 1)")
	}
}
