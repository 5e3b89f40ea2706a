package sse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
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

// nextBuffered decodes the buffered lines that end with LF before the
// first buffered CR (buf[r:crAt] holds no CR), all in one loop, until an
// event is dispatched. It returns ok false, with every line it took
// applied, when no whole line is left in that region, when the next one
// needs the general path (it would make the event too large), or after a
// line that may have run a callback (a comment, retry, or a line with
// invalid UTF-8), so that Next resumes from the decoder's state.
//
// Most lines of a typical stream are short: the blank line, id and event.
// For those a word-at-a-time search of the first 16 bytes finds the LF
// without a call, and the first word tells the field name apart. Nothing
// is called per line on the usual path.
//
// With a batch b, it appends the events it dispatches to b instead of
// returning them, until b holds max events (ok stays false).
func (d *Decoder) nextBuffered(b *Batch, max int) (data []byte, id, typ string, ok bool) {
	buf := d.buf // the search may read stale bytes past w, never past buf
	r, lim, size := d.r, d.crAt, d.size
	for r < lim {
		var i int // the LF ends the line at r+i
		var x, x2 uint64
		if r+16 <= len(buf) {
			b := buf[r : r+16]
			x = binary.LittleEndian.Uint64(b)
			x2 = binary.LittleEndian.Uint64(b[8:])
			if m := lfBits(x); m != 0 {
				i = bits.TrailingZeros64(m) >> 3
			} else if m := lfBits(x2); m != 0 {
				i = 8 + bits.TrailingZeros64(m)>>3
			} else if r+16 < lim {
				j := bytes.IndexByte(buf[r+16:lim], '\n')
				if j < 0 {
					break
				}
				i = j + 16
			} else {
				break
			}
		} else {
			j := bytes.IndexByte(buf[r:lim], '\n')
			if j < 0 {
				break
			}
			i = j
			// x stays 0: the field name was not preloaded, so the line
			// takes the general path.
		}
		e := r + i
		if e >= lim || size+i > d.max {
			break
		}
		if e > d.validTo {
			d.r = r
			if !d.validLine(e) {
				d.r, d.size = e+1, size+i
				d.processLine(d.fixUTF8(buf[r:e]))
				return nil, "", "", false
			}
		}
		size += i
		start := r
		r = e + 1
		// The field names are in x, little-endian. The bytes compared are
		// not LF, so the line is at least as long as the name.
		switch {
		case i == 0:
			d.r = r
			if data, id, typ, ok = d.dispatch(); ok {
				if b == nil {
					return data, id, typ, true
				}
				b.push(data, id, typ)
				d.noBlock = true
				if len(b.Events) >= max {
					return nil, "", "", false
				}
			}
			size = 0
		case x&(1<<40-1) == fieldData:
			v := start + 5
			if x>>40&0xFF == ' ' {
				v++
			}
			value := buf[v:e]
			if b != nil && d.dlen == 0 && !d.spilled && !d.zcSet && d.bufMem != nil {
				// ReadBatch: a first data line stays where it is.
				d.zc, d.zcSet = value, true
			} else if need := d.dlen + len(value) + 1; !d.spilled && !d.zcSet && need <= cap(d.slab)-len(d.slab) {
				// appendData's usual case, written out.
				tail := d.slab[len(d.slab):cap(d.slab)]
				copy(tail[d.dlen:need-1], value)
				tail[need-1] = '\n'
				d.dlen = need
			} else {
				d.appendData(value)
			}
		case x&(1<<24-1) == fieldID:
			v := start + 3
			if x>>24&0xFF == ' ' {
				v++
			}
			// A NUL makes the field ignored. For a line within the 16
			// bytes loaded, look for it there, in the bytes before the LF
			// (zeroBits flags no false byte below a real NUL).
			var nul bool
			if i <= 16 {
				z, z2 := zeroBits(x), zeroBits(x2)
				if i < 8 {
					z &= 1<<(8*i) - 1
					z2 = 0
				} else {
					z2 &= 1<<(8*(i-8)) - 1
				}
				nul = z|z2 != 0
			} else {
				nul = bytes.IndexByte(buf[v:e], 0) >= 0
			}
			if !nul {
				d.setIDValid(buf[v:e])
			}
		case x&(1<<48-1) == fieldEvent:
			v := start + 6
			if x>>48&0xFF == ' ' {
				v++
			}
			d.setType(buf[v:e])
		default:
			// Comments and retry reach callbacks, which may call methods
			// of d: hand the state back first and resume from it.
			d.r, d.size = r, size
			d.processLine(buf[start:e])
			return nil, "", "", false
		}
	}
	d.r, d.size = r, size
	return nil, "", "", false
}

// Field names with their colon as little-endian words, for nextBuffered.
const (
	fieldData  = uint64('d') | uint64('a')<<8 | uint64('t')<<16 | uint64('a')<<24 | uint64(':')<<32
	fieldID    = uint64('i') | uint64('d')<<8 | uint64(':')<<16
	fieldEvent = uint64('e') | uint64('v')<<8 | uint64('e')<<16 | uint64('n')<<24 | uint64('t')<<32 | uint64(':')<<40
)

// zeroBits returns x with the high bit of each byte set where that byte
// of x is 0, with the same caveat as lfBits.
func zeroBits(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	return (x - ones) &^ x & highs
}

// lfBits returns x with the high bit of each byte set where that byte of x
// is LF. Bits above the lowest one may be false positives (a borrow runs
// into the next byte), so only the lowest set bit is meaningful.
func lfBits(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	t := x ^ (ones * '\n')
	return (t - ones) &^ t & highs
}

// takeLine consumes the buffered line ending at buf[r+i] and returns it
// without its line end, valid until the next read. Next has a copy of
// this inlined on its fast path.
func (d *Decoder) takeLine(i int) ([]byte, error) {
	e := d.r + i
	line := d.buf[d.r:e]
	if e > d.validTo && !d.validLine(e) {
		line = d.fixUTF8(line)
	}
	d.skipLF = d.buf[e] == '\r'
	d.r = e + 1
	d.size += i
	if d.size > d.max {
		return nil, d.tooLarge(true)
	}
	return line, nil
}

func (d *Decoder) wrapReadErr(err error) error {
	if err == io.EOF || err == errWouldBlock {
		return err
	}
	return fmt.Errorf("sse: reading stream: %w", err)
}

// readLine returns the next line without its line end. The slice is only
// valid until the next call.
func (d *Decoder) readLine() ([]byte, error) {
	if d.buf == nil {
		d.buf = make([]byte, max(d.bufSize, minBufSize))
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
				if len(d.partial) > 0 {
					line := b[:i]
					d.skipLF = b[i] == '\r'
					d.r += i + 1
					d.partial = append(d.partial, line...)
					line = d.partial
					d.partial = d.partial[:0]
					d.size += len(line)
					if d.size > d.max {
						return nil, d.tooLarge(true)
					}
					return d.validUTF8(line), nil
				}
				return d.takeLine(i)
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
				d.resetCaches()
			}
		}
		if err := d.fill(); err != nil {
			return nil, err
		}
	}
}

// indexEOL returns the index in buf[r:w] of the first CR or LF, or -1.
// Each search runs to the end of the buffer when the byte is absent, so a
// stream using only LF (or only CR) scans for the other byte once per
// buffer, not once per line.
func (d *Decoder) indexEOL() int {
	if d.lfAt < d.r {
		d.lfAt = d.r
	}
	if d.lfAt < d.w && d.buf[d.lfAt] != '\n' {
		if j := bytes.IndexByte(d.buf[d.lfAt+1:d.w], '\n'); j >= 0 {
			d.lfAt += j + 1
		} else {
			d.lfAt = d.w
		}
	}
	if d.crAt < d.r {
		d.crAt = d.r
	}
	if d.crAt < d.w && d.buf[d.crAt] != '\r' {
		if j := bytes.IndexByte(d.buf[d.crAt+1:d.w], '\r'); j >= 0 {
			d.crAt += j + 1
		} else {
			d.crAt = d.w
		}
	}
	if e := min(d.lfAt, d.crAt); e < d.w {
		return e - d.r
	}
	return -1
}

// validLine reports whether the buffered line ending at absolute index e
// is valid UTF-8. It validates everything buffered in one pass, so the
// common valid stream costs one check per read, not one per line, and
// never looks at a byte twice: a read that ends inside a multi-byte
// sequence leaves validTo at the start of that sequence.
func (d *Decoder) validLine(e int) bool {
	if e <= d.validTo {
		return true
	}
	if e > d.checkedTo {
		from := max(d.r, d.validTo)
		switch utf8State(dfaAccept, d.buf[from:d.w]) {
		case dfaAccept:
			d.validTo = d.w
			return true
		case dfaError:
			// Something in there is invalid: check line by line up to w.
			d.checkedTo = d.w
		default:
			// Valid, but the last sequence is still incomplete: it began
			// at the last lead byte, at most three bytes back.
			v := d.w - 1
			for v > from && d.buf[v]&0xC0 == 0x80 {
				v--
			}
			d.validTo = v
			if e <= v {
				return true
			}
		}
	}
	return validUTF8Fast(d.buf[d.r:e])
}

// resetCaches forgets what was learnt about buf, after it was emptied.
func (d *Decoder) resetCaches() {
	d.lfAt, d.crAt, d.validTo, d.checkedTo = 0, 0, 0, 0
}

// fill reads more input into buf, moving unread bytes to the front first.
func (d *Decoder) fill() error {
	if d.err != nil {
		return d.err
	}
	if d.noBlock {
		return errWouldBlock
	}
	if d.zcSet {
		d.takeZC() // its bytes are about to move or be read over
	}
	if d.bufMem != nil && d.bufMem.refs.Load() > 1 {
		d.replaceBuf()
	}
	if d.r > 0 {
		n := copy(d.buf, d.buf[d.r:d.w])
		d.lfAt -= d.r
		d.crAt -= d.r
		d.validTo -= d.r
		d.checkedTo -= d.r
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
	d.dlen, d.spilled, d.grows = 0, false, 0
	d.zc, d.zcSet = nil, false
	if d.dataMem == nil {
		d.data = trimBuf(d.data)
	} else {
		d.data = d.data[:0]
	}
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
		d.resetCaches()
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
	if validUTF8Fast(line) {
		return line
	}
	return d.fixUTF8(line)
}

// fixUTF8 returns a copy of the invalid line with replacements made.
func (d *Decoder) fixUTF8(line []byte) []byte {
	d.fixed = appendValidUTF8(d.fixed[:0], line)
	return d.fixed
}

// processLine applies one non-blank line to the current event.
func (d *Decoder) processLine(line []byte) {
	// The usual fields, recognised by prefix without searching for the
	// colon; anything else takes the general path below.
	switch {
	case len(line) >= 5 && string(line[:5]) == "data:":
		d.appendData(trimSpace(line[5:]))
		return
	case len(line) >= 3 && string(line[:3]) == "id:":
		d.setID(trimSpace(line[3:]))
		return
	case len(line) >= 6 && string(line[:6]) == "event:":
		d.setType(trimSpace(line[6:]))
		return
	case line[0] == ':':
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
		d.appendData(value)
	case "event":
		d.setType(value)
	case "id":
		d.setID(value)
	case "retry":
		if ms, ok := parseRetry(value); ok && d.onRetry != nil {
			d.onRetry(ms)
		}
	}
}

// setType applies an event field.
func (d *Decoder) setType(value []byte) {
	if len(value) > cap(d.typBuf) {
		d.typBuf = make([]byte, 0, len(value))
	}
	// Reslicing in place writes no pointer, so no GC write barrier.
	d.typBuf = d.typBuf[:len(value)]
	copy(d.typBuf, value)
}

// appendData appends one data value and its LF to the data buffer.
func (d *Decoder) appendData(value []byte) {
	if d.zcSet {
		d.takeZC()
	}
	if !d.spilled {
		need := d.dlen + len(value) + 1
		if need > cap(d.slab)-len(d.slab) {
			if need > slabMax && (d.cur == nil || need > batchSlabMax) {
				d.spill()
				d.appendData(value)
				return
			}
			// Move what there is to a fresh slab; the old one keeps only
			// what it already handed out.
			d.switchSlab()
		}
		tail := d.slab[len(d.slab):cap(d.slab)]
		copy(tail[d.dlen:], value)
		tail[need-1] = '\n'
		d.dlen = need
		return
	}
	n := len(d.data)
	m := n + len(value) + 1
	if m > cap(d.data) {
		if d.batch != nil {
			p := d.pool.getLarge(max(m, 2*cap(d.data)))
			b := p.buf[:n]
			copy(b, d.data)
			if d.dataMem != nil {
				d.dataMem.unref()
			}
			d.data, d.dataMem = b, p
		} else {
			// Not slices.Grow: under the race detector it allocates twice.
			b := make([]byte, n, max(m, 2*cap(d.data)))
			copy(b, d.data)
			d.data = b
			d.grows++
		}
	}
	// Reslicing in place writes no pointer, so no GC write barrier.
	d.data = d.data[:m]
	copy(d.data[n:], value)
	d.data[m-1] = '\n'
}

// spill moves the data buffer from the slab tail to its own buffer.
func (d *Decoder) spill() {
	d.data = append(d.data[:0], d.slab[len(d.slab):len(d.slab)+d.dlen]...)
	d.dlen = 0
	d.spilled = true
}

// setID applies an id field: it becomes the last event ID at the next
// blank line, unless it contains NUL.
func (d *Decoder) setID(value []byte) {
	if bytes.IndexByte(value, 0) >= 0 {
		return
	}
	d.setIDValid(value)
}

// setIDValid is setID for a value known to hold no NUL.
func (d *Decoder) setIDValid(value []byte) {
	if len(value) > cap(d.idBuf) {
		d.idBuf = make([]byte, 0, len(value))
	}
	d.idBuf = d.idBuf[:len(value)]
	copy(d.idBuf, value)
	d.idSet = true
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

// dispatch ends the current event at a blank line and returns the fields
// of the event to deliver (see Next for why not an Event). It reports
// false when the data buffer is empty: nothing is dispatched then, but the
// last event ID still updates.
func (d *Decoder) dispatch() (data []byte, id, typ string, ok bool) {
	d.size = 0
	if d.zcSet {
		// A single data line, handed out from the read buffer; the new
		// ID, if any, goes to the slab.
		d.useBuf()
		data = d.zc[:len(d.zc):len(d.zc)]
		d.zc, d.zcSet = nil, false
		if d.idSet {
			if n := len(d.idBuf); n > 0 && n <= cap(d.slab)-len(d.slab) {
				d.useSlab()
				start := len(d.slab)
				d.slab = d.slab[:start+n]
				b := d.slab[start : start+n]
				copy(b, d.idBuf)
				d.lastID = unsafe.String(&b[0], n)
			} else {
				d.lastID = d.makeString(d.idBuf)
			}
			d.lastIDPooled, d.lastIDMem = d.batch != nil, d.cur
			d.idSet = false
		}
	} else if d.dlen == 0 && !d.spilled {
		if d.idSet {
			d.lastID = d.makeString(d.idBuf)
			d.lastIDPooled, d.lastIDMem = d.batch != nil, d.cur
			d.idSet = false
		}
		d.typBuf = d.typBuf[:0]
		return nil, "", "", false
	} else if !d.spilled {
		// Data is already in place: commit it from the slab tail, then
		// put the new ID, if any, right after it.
		d.useSlab()
		start, n := len(d.slab), d.dlen-1 // drop the LF after the last line
		data = d.slab[start : start+n : start+n]
		d.dlen = 0
		if d.idSet && len(d.idBuf) > 0 && len(d.idBuf) <= cap(d.slab)-start-n {
			b := d.slab[start+n : start+n+len(d.idBuf)]
			copy(b, d.idBuf)
			d.lastID = unsafe.String(&b[0], len(b))
			d.lastIDPooled, d.lastIDMem = d.batch != nil, d.cur
			d.slab = d.slab[:start+n+len(b)]
		} else {
			d.slab = d.slab[:start+n]
			if d.idSet {
				d.lastID = d.makeString(d.idBuf)
				d.lastIDPooled, d.lastIDMem = d.batch != nil, d.cur
			}
		}
	} else {
		buf := d.data[:len(d.data)-1]
		n := len(buf)
		switch {
		case d.dataMem != nil:
			// ReadBatch: the pooled buffer goes to the batch, with d's
			// reference.
			data = buf[:n:n]
			d.batch.mem = append(d.batch.mem, d.dataMem)
			d.data, d.dataMem = nil, nil
		case d.batch != nil || (d.grows == 1 && cap(d.data)-n <= n/4):
			// The buffer was allocated for this event alone, to about
			// its size (one long line): hand it over instead of copying
			// it, and start afresh next time.
			data = buf[:n:n]
			d.data = nil
		default:
			if n <= slabMax {
				data = d.carve(n)
			} else {
				data = make([]byte, n)
			}
			copy(data, buf)
			if cap(d.data) > keepBufMax {
				d.data = nil
			} else {
				d.data = d.data[:0]
			}
		}
		if d.idSet {
			d.lastID = d.makeString(d.idBuf)
			d.lastIDPooled, d.lastIDMem = d.batch != nil, d.cur
		}
		d.spilled, d.grows = false, 0
	}
	d.idSet = false
	switch {
	case len(d.typBuf) == 0:
		typ = DefaultType
	case string(d.typBuf) == d.lastType:
		typ = d.lastType
	default:
		d.lastType = d.makeString(d.typBuf)
		d.lastTypePooled, d.lastTypeMem = d.batch != nil, d.cur
		typ = d.lastType
	}
	d.typBuf = d.typBuf[:0]
	if cap(d.partial) > keepBufMax {
		d.partial = nil
	}
	if cap(d.fixed) > keepBufMax {
		d.fixed = nil
	}
	return data, d.lastID, typ, true
}

// makeString returns b as a string, carved from the slab when short.
func (d *Decoder) makeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > slabMax {
		return string(b)
	}
	m := d.carve(len(b))
	copy(m, b)
	// Sound because slab bytes, once handed out, are never written by
	// the decoder again, and nobody else holds this piece.
	return unsafe.String(&m[0], len(m))
}

// carve returns n bytes of fresh memory from the slab, with capacity n so
// an append by the caller reallocates instead of running into a neighbour.
func (d *Decoder) carve(n int) []byte {
	if cap(d.slab)-len(d.slab) < n {
		d.switchSlab()
	}
	d.useSlab()
	start := len(d.slab)
	d.slab = d.slab[:start+n]
	return d.slab[start : start+n : start+n]
}
