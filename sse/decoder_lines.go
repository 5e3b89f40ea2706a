package sse

import (
	"bytes"
	"fmt"
	"io"
)

// Reading lines: the read buffer, line ends and UTF-8 validation.

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
