// Package sse reads and writes the Server-Sent Events wire format exactly as
// the WHATWG HTML standard defines it ("event stream interpretation").
//
// It is the codec and nothing else: no HTTP, no reconnection. Sources decode
// with it, reverse streams and tests encode with it.
package sse

// DefaultType is the event type of an event whose stream named none.
const DefaultType = "message"

// Event is one dispatched event.
//
// An Event from Decoder.Next owns its memory: Data is a fresh slice per
// event, so it may be retained or handed to another goroutine without
// copying. The events of Decoder.ReadBatch borrow pooled memory instead,
// valid until their Batch is released.
type Event struct {
	// ID is the stream's last event ID at the moment of dispatch. The
	// standard makes it persist across events until an id field changes it,
	// so consecutive events may share it; "" when there is none.
	ID string
	// Type is the event type, DefaultType when the stream named none.
	Type string
	// Data is the data buffer: every data line of the event joined by LF.
	Data []byte
}
