// Package message is what travels from a source to a sink: one decoded SSE
// event with the pipeline that received it, and the names of the headers
// that carry its SSE fields on the broker. Sources, sinks and reverse
// streams all speak it; it imports nothing of theirs.
package message

import (
	"time"

	"github.com/ssebridge/ssebridge/sse"
)

// Message headers carried by every published message. Reverse streams read
// them back, so they are a wire contract: never rename them.
const (
	// HeaderID is the upstream event ID; absent when the event had none.
	HeaderID = "SSE-Id"
	// HeaderEvent is the event type.
	HeaderEvent = "SSE-Event"
	// HeaderSource is the name of the pipeline that ingested the event.
	HeaderSource = "SSE-Source"
	// HeaderReceivedAt is when the source decoded the event, RFC 3339 with
	// nanoseconds.
	HeaderReceivedAt = "SSE-Received-At"
)

// Message is an event on its way to a broker.
type Message struct {
	// Pipeline is the name of the pipeline that received the event.
	Pipeline string
	Event    sse.Event
	// ReceivedAt is when the source dispatched the event.
	ReceivedAt time.Time
	// InheritedID reports that Event.ID was already the stream's last
	// event ID before this event, so the ID does not identify this event
	// alone: a sink that deduplicates by ID must not use it for this
	// message. The source decides it, once, for every sink (see
	// InheritsID); it knows this even for the first event after a
	// restart, when a sink has no previous message to compare with. The
	// first event of a connection that names the resumed ID in an id field
	// of its own is not inherited: it is the feed resending that event.
	InheritedID bool
}

// InheritsID is the rule for Message.InheritedID: an event whose ID is the
// stream's last event ID before it, which is what an event without an id
// field carries (WHATWG), and what a feed that repeats an id looks like.
func InheritsID(id, lastID string) bool { return id != "" && id == lastID }
