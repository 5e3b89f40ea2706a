package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidID reports an event ID that cannot be written: one containing
// CR or LF would end the id line early, and a decoder ignores an id with
// NUL.
var ErrInvalidID = errors.New("sse: invalid event id")

// ErrInvalidType reports an event type containing CR or LF, which would end
// the event line early.
var ErrInvalidType = errors.New("sse: invalid event type")

// ErrInvalidRetry reports a negative reconnection time.
var ErrInvalidRetry = errors.New("sse: invalid retry")

// Encoder writes the SSE wire format to an io.Writer. Each call is one
// Write of complete lines. It does not buffer or flush: wrap w in a
// bufio.Writer and flush (http.Flusher) where the caller decides. An
// Encoder is not safe for concurrent use.
type Encoder struct {
	w   io.Writer
	buf []byte
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes ev as one event. See AppendEvent for the format.
func (e *Encoder) Encode(ev Event) error {
	b, err := AppendEvent(e.buf[:0], ev)
	if err != nil {
		return err
	}
	return e.write(b)
}

// Comment writes text as comment lines, one per line of text (CR, LF and
// CRLF all split it), so no text can inject fields. Comment("") writes
// ":\n", the usual heartbeat. A Decoder returns each line's text as given.
func (e *Encoder) Comment(text string) error {
	return e.write(appendLines(e.buf[:0], ":", []byte(text)))
}

// Retry writes a retry field telling the client to wait d before
// reconnecting. It is sent in whole milliseconds, rounded down.
func (e *Encoder) Retry(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("sse: retry %v: %w", d, ErrInvalidRetry)
	}
	b := append(e.buf[:0], "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return e.write(append(b, '\n'))
}

func (e *Encoder) write(b []byte) error {
	e.buf = b[:0]
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("sse: writing stream: %w", err)
	}
	return nil
}

// AppendEvent appends the wire form of ev to dst and returns the extended
// slice, so an event can be encoded once and the bytes written to many
// subscribers.
//
// It writes an id line only when ev.ID != "" (so a decoder keeps its
// previous last event ID for an event without one), an event line only
// when ev.Type is neither "" nor DefaultType, one "data:" line per line of
// ev.Data (CR, LF and CRLF all end a line), and the blank line that
// dispatches. Empty Data is written as one empty data line, which a
// decoder dispatches as an event with empty data.
//
// For an event whose Data is valid UTF-8 without CR, whose Type is not ""
// and whose ID is not "", decoding the output yields the event back.
//
// On error dst is returned unchanged, with an error wrapping ErrInvalidID
// or ErrInvalidType.
func AppendEvent(dst []byte, ev Event) ([]byte, error) {
	if strings.ContainsAny(ev.ID, "\r\n\x00") {
		return dst, fmt.Errorf("sse: event id %q: %w", ev.ID, ErrInvalidID)
	}
	if strings.ContainsAny(ev.Type, "\r\n") {
		return dst, fmt.Errorf("sse: event type %q: %w", ev.Type, ErrInvalidType)
	}
	if ev.ID != "" {
		dst = appendField(dst, "id:", []byte(ev.ID))
	}
	if ev.Type != "" && ev.Type != DefaultType {
		dst = appendField(dst, "event:", []byte(ev.Type))
	}
	dst = appendLines(dst, "data:", ev.Data)
	return append(dst, '\n'), nil
}

// appendField appends one "name: value" line. The space is always written
// after a colon with a value, so a value starting with a space survives
// the decoder stripping one.
func appendField(dst []byte, name string, value []byte) []byte {
	dst = append(dst, name...)
	if len(value) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, value...)
	}
	return append(dst, '\n')
}

// appendLines appends one field line per line of text.
func appendLines(dst []byte, name string, text []byte) []byte {
	if bytes.IndexByte(text, '\r') < 0 {
		// The usual case: LF line ends only, found by a vectorised search.
		for {
			i := bytes.IndexByte(text, '\n')
			if i < 0 {
				return appendField(dst, name, text)
			}
			dst = appendField(dst, name, text[:i])
			text = text[i+1:]
		}
	}
	start := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '\n':
			dst = appendField(dst, name, text[start:i])
			start = i + 1
		case '\r':
			dst = appendField(dst, name, text[start:i])
			if i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	return appendField(dst, name, text[start:])
}
