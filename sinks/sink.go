// Package sinks is where brokers plug into ssebridge.
//
// A sink driver registers itself by name from an init function (Register),
// like a database/sql driver or a Caddy module; a program selects drivers
// by importing them for their side effect
// (import _ "github.com/ssebridge/ssebridge/sinks/nats"). The name is the
// key of the driver's block in a pipeline's sink (sink: {nats: {...}}), and
// the block decodes into the driver's own options type: the configuration
// checks it against that type (unknown keys, types, FILE:LINE) and then
// runs the driver's Check, so adding a broker needs no edit of the
// configuration package.
package sinks

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

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
	// not stall a feed forever. The messages' memory (ID, type, data) is
	// valid until Write returns: the source reuses it once they are
	// acknowledged, so a sink that keeps any of it copies it.
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
