package sse

import (
	"errors"
	"io"
	"time"
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
	// minBufSize keeps a possible BOM and a CR LF pair within the buffer.
	minBufSize = 8
	// maxEmptyReads guards against readers returning 0, nil forever, as
	// bufio does.
	maxEmptyReads = 100
	// keepBufMax is the capacity above which scratch buffers are released
	// after use, so one huge event does not pin memory for the life of the
	// stream.
	keepBufMax = 1 << 20
	// slabSize is the chunk that the Data of small events and short ID
	// and type strings are carved from, so a typical event costs a fraction
	// of an allocation instead of one or two. The price is retention: a
	// kept small Data or ID keeps at most one slab alive.
	//
	// 6912 bytes is a Go allocator size class with seven objects to a
	// span. With 8 KiB, a class of one object to a span, every slab cost
	// a span allocation and later a span sweep, a good part of the time
	// of decoding small events.
	slabSize = 6912
	// slabMax is the largest piece carved from a slab.
	slabMax = 1 << 10
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
// fixed 64 KiB read buffer, whatever the input: a line longer than the
// limit is counted and skipped, never held. (Buffers are kept at most at
// about three times the limit: the line, the data buffer, and a copy of a
// line with invalid UTF-8.) A Decoder is not safe for concurrent use.
type Decoder struct {
	rd  io.Reader
	err error // sticky error from rd

	buf     []byte // fixed read buffer; buf[r:w] is unread
	bufSize int    // size of buf, allocated on first use
	r, w    int
	// Line-end search caches (absolute indexes into buf): there is no LF
	// in buf[r:lfAt] and no CR in buf[r:crAt]. They keep streams that use
	// only one kind of line end linear instead of rescanning the buffer for
	// the other kind on every line.
	lfAt, crAt int
	// UTF-8 validation cache (absolute indexes into buf): a buffered line
	// ending at or before validTo is valid; lines ending before checkedTo
	// lie in a region found invalid and are checked one by one.
	validTo, checkedTo int

	partial []byte // start of a line longer than the unread buffer
	fixed   []byte // scratch for lines with invalid UTF-8

	bomDone bool // the stream start was checked for a BOM
	skipLF  bool // the previous line ended with CR: an LF next is its end

	skipping    bool // discarding the rest of an oversized event
	atLineStart bool // while skipping: no byte of the current line seen yet

	max  int // maximum bytes of one event's lines
	size int // bytes of the current event's lines so far

	// The data buffer (every data value followed by LF) normally lives in
	// the unused tail of the slab, its first dlen bytes, so a small event's
	// Data is handed out where it was assembled, without a copy. An event
	// outgrowing slabMax spills to data.
	dlen    int
	spilled bool
	data    []byte
	grows   int    // allocations of data for the current event
	typBuf  []byte // event type buffer
	idBuf   []byte // last event ID buffer, when idSet
	idSet   bool   // an id field was seen since the last blank line

	lastID   string // last event ID as of the last blank line
	lastType string // last non-default type, reused while unchanged
	slab     []byte // backing for short strings; only ever appended to

	onComment func(string)
	onRetry   func(time.Duration)

	// ReadBatch state (see batch.go). During ReadBatch, slabs and the data
	// buffers of large events come from pool, and cur is the slab that
	// slab lives in; outside it cur is nil and slabs are plain memory.
	pool    *memPool
	cur     *pooled // slab's pooled memory, one reference held by d
	dataMem *pooled // data's pooled memory, when spilled during ReadBatch
	batch   *Batch  // the batch being read
	curRef  bool    // batch holds a reference on cur
	noBlock bool    // fill must not read: the batch has an event
	// lastID and lastType were carved from pooled memory during this
	// ReadBatch, so they are copied out before it returns.
	lastIDPooled, lastTypePooled bool
	lastIDMem, lastTypeMem       *pooled // where they were carved
	// pinID and pinType hold a reference on the memory of the last ID
	// and type once a batch ended, so releasing it cannot reuse them.
	pinID, pinType *pooled
	// During ReadBatch the read buffer is pooled too (bufMem), so that an
	// event with a single data line can hand out that line in place (zc,
	// pending until the blank line): fill reads on into a fresh buffer
	// while a batch holds events in the old one, and copies a pending zc
	// out before the buffer moves.
	bufMem *pooled
	bufRef bool // batch holds a reference on bufMem
	zc     []byte
	zcSet  bool
}

// NewDecoder returns a Decoder reading from r. The Decoder buffers: it may
// read past the event it returns.
func NewDecoder(r io.Reader) *Decoder {
	return newDecoderSize(r, readBufSize)
}

// newDecoderSize returns a Decoder with a read buffer of the given size;
// tests use tiny ones to reach every buffer boundary with small inputs.
func newDecoderSize(r io.Reader, size int) *Decoder {
	return &Decoder{rd: r, max: DefaultMaxEventSize, bufSize: size}
}

// Reset makes d read a new stream from r, as after a reconnect: buffered
// input and any partial event are discarded, a BOM is again stripped at
// the start, and the read buffer is reused. The last event ID, the
// maximum event size and the callbacks are kept.
func (d *Decoder) Reset(r io.Reader) {
	*d = Decoder{
		rd:        r,
		buf:       d.buf,
		bufSize:   d.bufSize,
		max:       d.max,
		data:      trimBuf(d.data),
		idBuf:     d.idBuf[:0],
		typBuf:    d.typBuf[:0],
		partial:   trimBuf(d.partial),
		fixed:     trimBuf(d.fixed),
		lastID:    d.lastID,
		lastType:  d.lastType,
		slab:      d.slab,
		onComment: d.onComment,
		onRetry:   d.onRetry,
		pool:      d.pool,
		cur:       d.cur,
		pinID:     d.pinID,
		pinType:   d.pinType,
		bufMem:    d.bufMem,
	}
	if d.bufMem != nil && d.bufMem.refs.Load() > 1 {
		// A batch still holds events in the read buffer: do not read
		// over them.
		d.bufMem.unref()
		d.bufMem, d.buf = nil, nil
	}
	if d.dataMem != nil {
		d.dataMem.unref()
	}
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
// The returned Event belongs to the caller: no other event shares the
// bytes of its Data, the decoder never writes them again, and Data's
// capacity ends with it, so it may be kept, modified or appended to, and
// handed to another goroutine. To make a typical event cost no allocation
// of its own, the Data of small events (up to 1 KiB) and ID and type
// strings are carved from slabs of under 7 KiB shared with neighbouring
// events: keeping one keeps its slab alive. Copy small events you retain
// for long while dropping their neighbours.
func (d *Decoder) Next() (ev Event, err error) {
	if d.cur != nil || d.dataMem != nil {
		// After ReadBatch: move to memory that events may own.
		d.dataMem = nil // the buffer, still being filled, is the event's
		d.switchSlab()
		if d.zcSet {
			d.takeZC() // the event's data line, still in the read buffer
		}
	}
	ev.Data, ev.ID, ev.Type, err = d.next()
	return ev, err
}

// next is Next without the switch from ReadBatch's memory.
func (d *Decoder) next() (data []byte, id, typ string, err error) {
	// Event is too big for the compiler to keep in registers: copying a
	// whole Event between stack slots reads it back with wider loads than
	// it was stored with, a store-forwarding stall per event. So dispatch
	// returns the fields and they are stored straight into the result.
	for {
		// Fast path: whole LF-terminated lines already buffered, with no
		// CR before them (crAt > r) and nothing unusual pending.
		if d.crAt > d.r && d.bomDone && !d.skipping && !d.skipLF && len(d.partial) == 0 {
			if data, id, typ, ok := d.nextBuffered(nil, 0); ok {
				return data, id, typ, nil
			}
		}
		i := -1
		if d.bomDone && !d.skipping && len(d.partial) == 0 {
			if d.skipLF && d.r < d.w {
				d.skipLF = false
				if d.buf[d.r] == '\n' {
					d.r++
				}
			}
			if !d.skipLF && d.r < d.w {
				i = d.indexEOL()
			}
		}
		var line []byte
		if i >= 0 {
			e := d.r + i
			line = d.buf[d.r:e]
			if e > d.validTo && !d.validLine(e) {
				line = d.fixUTF8(line)
			}
			d.skipLF = d.buf[e] == '\r'
			d.r = e + 1
			d.size += i
			if d.size > d.max {
				return nil, "", "", d.tooLarge(true)
			}
		} else {
			if d.skipping {
				if err := d.skipEvent(); err != nil {
					return nil, "", "", d.wrapReadErr(err)
				}
			}
			if line, err = d.readLine(); err != nil {
				if errors.Is(err, ErrEventTooLarge) {
					return nil, "", "", err
				}
				return nil, "", "", d.wrapReadErr(err)
			}
		}
		if len(line) == 0 {
			if data, id, typ, ok := d.dispatch(); ok {
				return data, id, typ, nil
			}
			continue
		}
		d.processLine(line)
	}
}
