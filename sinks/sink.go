// Package sinks is where brokers plug into ssebridge.
//
// A sink driver registers itself by name from an init function, like a
// database/sql driver; a program selects drivers by importing them for their
// side effect (import _ "github.com/ssebridge/ssebridge/sinks/nats").
package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/message"
)

// The SSE headers of every published message (see package message).
const (
	HeaderID         = message.HeaderID
	HeaderEvent      = message.HeaderEvent
	HeaderSource     = message.HeaderSource
	HeaderReceivedAt = message.HeaderReceivedAt
)

// Message is an event on its way to a broker (see package message).
type Message = message.Message

// Sink delivers messages to a broker, in order, and says how many the broker
// acknowledged.
//
// The caller (a source worker) checkpoints an event only after Write counted
// it, so an implementation must never count a message that the broker has
// not acknowledged. Write is called by one goroutine at a time.
type Sink interface {
	// Write publishes msgs in order and returns once the broker has
	// acknowledged them. n is the number of leading messages acknowledged;
	// when err != nil, n < len(msgs) and the caller retries msgs[n:] with
	// backoff. Write returns promptly when ctx is done. A message that can
	// never be routed (a template naming a missing field, no fallback) is
	// counted, logged and reported as written, so that one bad event does
	// not stall a feed forever.
	Write(ctx context.Context, msgs []Message) (n int, err error)
	// Close releases what the sink opened; connections shared through Deps
	// stay open.
	Close() error
}

// ErrNotConnected is returned (wrapped) by Write while the broker cannot be
// reached; the caller backs off and retries (see internal/retry, whose
// error it is).
var ErrNotConnected = retry.ErrNotConnected

// Deps are the shared resources a driver may use.
type Deps struct {
	// NATS is the bridge's NATS connection (nil when NATS is not configured).
	NATS *nats.Conn
	// NATSPublish, when set, is a second connection to the same server on
	// which nothing ever subscribes. Core NATS has no acknowledgements: a
	// refused publish is known only from the connection's asynchronous
	// errors, which another error (a slow consumer on a subscription) can
	// mask, so core publishing goes through a connection that has no
	// subscription to produce one.
	NATSPublish *nats.Conn
	// Kafka is the Kafka cluster (Brokers empty when not configured).
	Kafka  kafkaconn.Config
	Logger *slog.Logger
}

// Driver opens a sink for one pipeline.
type Driver func(ctx context.Context, deps Deps, pipeline string, cfg config.Sink) (Sink, error)

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a driver available under name, the key of the sink block in
// the YAML (cfg.Kind()). It panics when name is registered twice, since that
// is a programming error, not a runtime condition.
func Register(name string, d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if d == nil {
		panic("sinks: Register driver is nil")
	}
	if _, dup := drivers[name]; dup {
		panic("sinks: Register called twice for driver " + name)
	}
	drivers[name] = d
}

// Drivers lists the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open opens the sink that cfg selects for pipeline.
func Open(ctx context.Context, deps Deps, pipeline string, cfg config.Sink) (Sink, error) {
	kind := cfg.Kind()
	driversMu.RLock()
	d, ok := drivers[kind]
	driversMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("pipeline %q: sink %q: no such driver (have %v)", pipeline, kind, Drivers())
	}
	s, err := d(ctx, deps, pipeline, cfg)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: sink %s: %w", pipeline, kind, err)
	}
	return s, nil
}
