package sse

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// The decoder's fast path: whole buffered lines decoded in one loop, a
// word at a time.

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
