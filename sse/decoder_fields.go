package sse

import (
	"bytes"
	"math"
	"time"
	"unsafe"
)

// Fields: applying a line to the event being assembled, dispatch, and the
// memory events are carved from.

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
