package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
	"unsafe"
)

// DefaultMaxEventSize bounds one event when SetMaxEventSize was not called.
const DefaultMaxEventSize = 4 << 20

// ErrEventTooLarge reports an event whose lines exceeded the maximum event
// size. It is not fatal: the event is dropped and the next call to Next
// continues with the event after it.
var ErrEventTooLarge = errors.New("sse: event too large")

const (
	// readBufSize is the fixed read buffer. Lines longer than it spill into
	// an accumulator bounded by the maximum event size.
	readBufSize = 64 << 10
	// maxEmptyReads guards against readers returning 0, nil forever, as
	// bufio does.
	maxEmptyReads = 100
	// combineMax is the largest data size whose allocation also carries a
	// new event ID. Sharing one allocation keeps small events at one
	// allocation each, but a retained ID string pins the data it was
	// allocated with, so it is limited to small events.
	combineMax = 4 << 10
	// keepBufMax is the capacity above which scratch buffers are released
	// after use, so one huge event does not pin memory for the life of the
	// stream.
	keepBufMax = 1 << 20
)

// utf8BOM is stripped once, at the very start of the stream.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Decoder reads events from an SSE byte stream following the WHATWG "event
// stream interpretation" rules.
//
// The output depends only on the bytes of the stream, never on how the
// reader splits them: a CR at the end of one Read and an LF at the start of
// the next are one line end. A line end is acted on as soon as it is read,
// so a live stream never waits for the byte after a CR.
//
// Memory is bounded by the maximum event size (see SetMaxEventSize) plus a
// fixed 64 KiB read buffer, whatever the input. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	rd  io.Reader
	err error // sticky error from rd

	buf  []byte // fixed read buffer; buf[r:w] is unread
	r, w int
	// Line-end search caches (absolute indexes into buf, both >= r): there
	// is no LF in buf[r:lfAt] and no CR in buf[r:crAt]. They keep streams
	// that use only one kind of line end linear instead of rescanning the
	// buffer for the other kind on every line.
	lfAt, crAt int

	partial []byte // start of a line longer than the unread buffer
	fixed   []byte // scratch for lines with invalid UTF-8

	bomDone bool // the stream start was checked for a BOM
	skipLF  bool // the previous line ended with CR: an LF next is its end

	skipping    bool // discarding the rest of an oversized event
	atLineStart bool // while skipping: no byte of the current line seen yet

	max  int // maximum bytes of one event's lines
	size int // bytes of the current event's lines so far

	data   []byte // data buffer: every data value followed by LF
	typBuf []byte // event type buffer
	idBuf  []byte // last event ID buffer, when idSet
	idSet  bool   // idBuf differs from lastID

	lastID   string // last event ID as of the last blank line
	lastType string // last non-default type, reused while unchanged

	onComment func(string)
	onRetry   func(time.Duration)
}

// NewDecoder returns a Decoder reading from r. The Decoder buffers: it may
// read past the event it returns.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{rd: r, max: DefaultMaxEventSize}
}

// SetMaxEventSize sets the maximum size of one event: the bytes of all its
// lines (field lines and comment lines, line ends not counted) from the
// previous blank line on. n <= 0 restores DefaultMaxEventSize. An event
// going over it makes Next return an error wrapping ErrEventTooLarge.
func (d *Decoder) SetMaxEventSize(n int) {
	if n <= 0 {
		n = DefaultMaxEventSize
	}
	d.max = n
}

// SetLastEventID sets the last event ID, as a resumed stream starts with
// the ID the previous connection ended with. Events carry it until the
// stream sends an id field.
func (d *Decoder) SetLastEventID(id string) {
	d.lastID = id
	d.idSet = false
}

// LastEventID returns the last event ID as of the last blank line read,
// which is what a client sends as Last-Event-ID when it reconnects. An id
// field of an event that was never completed does not count.
func (d *Decoder) LastEventID() string { return d.lastID }

// OnComment registers fn to receive the text of every comment line (after
// the colon, one leading space stripped), in stream order, from within
// Next. Comments inside an event that is dropped for its size are lost.
func (d *Decoder) OnComment(fn func(text string)) { d.onComment = fn }

// OnRetry registers fn to receive the reconnection time of every valid
// retry field (only ASCII digits, read as milliseconds), from within Next.
// Values too large for a time.Duration saturate at its maximum.
func (d *Decoder) OnRetry(fn func(time.Duration)) { d.onRetry = fn }

// Next returns the next dispatched event.
//
// It returns io.EOF at the end of the input; an event without its closing
// blank line is then discarded, as the standard requires. It returns an
// error wrapping ErrEventTooLarge as soon as an event exceeds the maximum
// event size: the event is dropped, and the following call discards the
// rest of it, without buffering, then continues normally. Any other error
// comes from the reader, wrapped, and is final.
//
// The Data of the returned Event is freshly allocated: the caller may keep
// it and modify it.
func (d *Decoder) Next() (Event, error) {
	for {
		if d.skipping {
			if err := d.skipEvent(); err != nil {
				return Event{}, d.wrapReadErr(err)
			}
		}
		line, err := d.readLine()
		if err != nil {
			if errors.Is(err, ErrEventTooLarge) {
				return Event{}, err
			}
			return Event{}, d.wrapReadErr(err)
		}
		if len(line) == 0 {
			if ev, ok := d.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		d.processLine(line)
	}
}

func (d *Decoder) wrapReadErr(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	return fmt.Errorf("sse: reading stream: %w", err)
}

// readLine returns the next line without its line end. The slice is only
// valid until the next call.
func (d *Decoder) readLine() ([]byte, error) {
	if d.buf == nil {
		d.buf = make([]byte, readBufSize)
	}
	for {
		if d.r < d.w {
			if d.skipLF {
				d.skipLF = false
				if d.buf[d.r] == '\n' {
					d.r++
					continue
				}
			}
			if !d.bomDone {
				b := d.buf[d.r:d.w]
				if len(b) < len(utf8BOM) && bytes.HasPrefix(utf8BOM, b) && d.err == nil {
					// Could still be a BOM split across reads.
					if err := d.fill(); err != nil {
						return nil, err
					}
					continue
				}
				d.bomDone = true
				if bytes.HasPrefix(b, utf8BOM) {
					d.r += len(utf8BOM)
					continue
				}
			}
			b := d.buf[d.r:d.w]
			if i := d.indexEOL(); i >= 0 {
				line := b[:i]
				d.skipLF = b[i] == '\r'
				d.r += i + 1
				if len(d.partial) > 0 {
					d.partial = append(d.partial, line...)
					line = d.partial
					d.partial = d.partial[:0]
				}
				d.size += len(line)
				if d.size > d.max {
					return nil, d.tooLarge(true)
				}
				return d.validUTF8(line), nil
			}
			// No line end buffered: everything unread belongs to this line.
			if d.size+len(d.partial)+len(b) > d.max {
				d.r = d.w
				d.partial = d.partial[:0]
				return nil, d.tooLarge(false)
			}
			if len(b) > len(d.buf)/2 {
				d.partial = append(d.partial, b...)
				d.r, d.w = 0, 0
				d.lfAt, d.crAt = 0, 0
			}
		}
		if err := d.fill(); err != nil {
			return nil, err
		}
	}
}

// indexEOL returns the index in buf[r:w] of the first CR or LF, or -1.
func (d *Decoder) indexEOL() int {
	if d.lfAt < d.r {
		d.lfAt = d.r
	}
	if d.lfAt < d.w {
		if j := bytes.IndexByte(d.buf[d.lfAt:d.w], '\n'); j >= 0 {
			d.lfAt += j
		} else {
			d.lfAt = d.w
		}
	}
	// A CR only matters before the first LF.
	if d.crAt < d.r {
		d.crAt = d.r
	}
	if d.crAt < d.lfAt {
		if j := bytes.IndexByte(d.buf[d.crAt:d.lfAt], '\r'); j >= 0 {
			d.crAt += j
			return d.crAt - d.r
		}
		d.crAt = d.lfAt
	}
	if d.lfAt < d.w {
		return d.lfAt - d.r
	}
	return -1
}

// fill reads more input into buf, moving unread bytes to the front first.
func (d *Decoder) fill() error {
	if d.err != nil {
		return d.err
	}
	if d.r > 0 {
		n := copy(d.buf, d.buf[d.r:d.w])
		d.lfAt -= d.r
		d.crAt -= d.r
		d.r, d.w = 0, n
	}
	for range maxEmptyReads {
		n, err := d.rd.Read(d.buf[d.w:])
		if n < 0 || n > len(d.buf)-d.w {
			d.err = fmt.Errorf("sse: reader returned invalid count %d", n)
			return d.err
		}
		d.w += n
		if err != nil {
			d.err = err
			if n > 0 {
				return nil // deliver the bytes first
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	d.err = io.ErrNoProgress
	return d.err
}

// tooLarge drops the current event and switches to discarding the rest of
// it. atLineStart says whether the offending line was complete.
func (d *Decoder) tooLarge(atLineStart bool) error {
	d.resetEvent()
	d.skipping = true
	d.atLineStart = atLineStart
	return fmt.Errorf("sse: event over %d bytes dropped: %w", d.max, ErrEventTooLarge)
}

// resetEvent forgets every field of the current event. Its id field is
// forgotten too: an event that is never delivered must not move the ID a
// reconnecting client resumes from.
func (d *Decoder) resetEvent() {
	d.size = 0
	d.data = trimBuf(d.data)
	d.typBuf = d.typBuf[:0]
	d.idSet = false
	d.partial = trimBuf(d.partial)
	d.fixed = trimBuf(d.fixed)
}

// trimBuf empties b, releasing it if one huge event made it large.
func trimBuf(b []byte) []byte {
	if cap(b) > keepBufMax {
		return nil
	}
	return b[:0]
}

// skipEvent discards input up to and including the blank line that ends
// the current event, looking at each byte once and keeping none.
func (d *Decoder) skipEvent() error {
	for {
		for d.r < d.w {
			c := d.buf[d.r]
			if d.skipLF {
				d.skipLF = false
				if c == '\n' {
					d.r++
					continue
				}
			}
			if d.atLineStart && (c == '\n' || c == '\r') {
				d.r++
				d.skipLF = c == '\r'
				d.skipping = false
				return nil
			}
			i := d.indexEOL()
			if i < 0 {
				d.r = d.w
				d.atLineStart = false
				break
			}
			d.skipLF = d.buf[d.r+i] == '\r'
			d.r += i + 1
			d.atLineStart = true
		}
		d.r, d.w = 0, 0
		d.lfAt, d.crAt = 0, 0
		if err := d.fill(); err != nil {
			return err
		}
	}
}

// validUTF8 returns line with every maximal invalid subsequence replaced
// by U+FFFD, as the WHATWG UTF-8 decoder does. Decoding line by line is
// equivalent to decoding the stream: CR and LF are ASCII, so they never
// belong to a multi-byte sequence and always end an invalid one.
func (d *Decoder) validUTF8(line []byte) []byte {
	if utf8.Valid(line) {
		return line
	}
	d.fixed = appendValidUTF8(d.fixed[:0], line)
	return d.fixed
}

// processLine applies one non-blank line to the current event.
func (d *Decoder) processLine(line []byte) {
	if line[0] == ':' {
		if d.onComment != nil {
			d.onComment(string(trimSpace(line[1:])))
		}
		return
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], trimSpace(line[i+1:])
	}
	switch string(name) {
	case "data":
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
	case "event":
		d.typBuf = append(d.typBuf[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return
		}
		if string(value) == d.lastID {
			d.idSet = false
			return
		}
		d.idBuf = append(d.idBuf[:0], value...)
		d.idSet = true
	case "retry":
		if ms, ok := parseRetry(value); ok && d.onRetry != nil {
			d.onRetry(ms)
		}
	}
}

// trimSpace strips the one leading space the standard allows after a colon.
func trimSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

// parseRetry reads a retry value: one or more ASCII digits, milliseconds.
func parseRetry(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	var ms int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ms <= maxMS {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > maxMS {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// dispatch ends the current event at a blank line. It reports false when
// the data buffer is empty: nothing is dispatched then, but the ID still
// updates.
func (d *Decoder) dispatch() (Event, bool) {
	d.size = 0
	if len(d.data) == 0 {
		if d.idSet {
			d.lastID = string(d.idBuf)
			d.idSet = false
		}
		d.typBuf = d.typBuf[:0]
		return Event{}, false
	}
	data := d.data[:len(d.data)-1] // drop the LF after the last line
	var ev Event
	n := len(data)
	switch {
	case d.idSet && n <= combineMax && len(d.idBuf) > 0:
		// One allocation for both: the ID bytes follow the data and are
		// never written again, and Data's capacity ends before them.
		b := make([]byte, n+len(d.idBuf))
		copy(b, data)
		copy(b[n:], d.idBuf)
		ev.Data = b[:n:n]
		d.lastID = unsafe.String(&b[n], len(d.idBuf))
	default:
		ev.Data = make([]byte, n)
		copy(ev.Data, data)
		if d.idSet {
			d.lastID = string(d.idBuf)
		}
	}
	d.idSet = false
	ev.ID = d.lastID
	switch {
	case len(d.typBuf) == 0:
		ev.Type = DefaultType
	case string(d.typBuf) == d.lastType:
		ev.Type = d.lastType
	default:
		d.lastType = string(d.typBuf)
		ev.Type = d.lastType
	}
	d.data = trimBuf(d.data)
	d.typBuf = d.typBuf[:0]
	if cap(d.partial) > keepBufMax {
		d.partial = nil
	}
	if cap(d.fixed) > keepBufMax {
		d.fixed = nil
	}
	return ev, true
}
