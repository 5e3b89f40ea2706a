package sse

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

const (
	// batchSlabSize is the size of the pooled slabs that ReadBatch carves
	// events from. Being reused, they can be larger than the slabs of
	// Next, and hold events of up to batchSlabMax without a spill.
	batchSlabSize = 64 << 10
	batchSlabMax  = 8 << 10
	// poolKeepMax bounds the bytes of released memory a decoder keeps for
	// reuse; memory released beyond it is left to the garbage collector.
	poolKeepMax = 16 << 20
)

// errWouldBlock stops ReadBatch before a read that could wait for the
// network, once the batch holds an event.
var errWouldBlock = errors.New("sse: would block")

// Batch is a run of events read by Decoder.ReadBatch.
//
// Unlike the events of Next, these borrow the decoder's memory: the Data,
// ID and Type of every event stay valid until Release, after which the
// decoder reuses the memory for later events. That is what makes a batch
// cheaper than owned events: a steady stream allocates nothing. Use (or
// copy) the events, then Release the batch, for example once a broker
// acknowledged them. Release may be called from any goroutine; a Batch
// is not otherwise safe for concurrent use.
type Batch struct {
	// Events are the events read, in stream order.
	Events []Event
	mem    []*pooled // the memory the events live in, one reference each
}

// Release hands the batch's memory back to its decoder and empties the
// batch. The events, and anything sharing their memory, must not be used
// afterwards. Release on an empty batch does nothing.
func (b *Batch) Release() {
	for _, p := range b.mem {
		p.unref()
	}
	clear(b.mem)
	b.mem = b.mem[:0]
	clear(b.Events)
	b.Events = b.Events[:0]
}

// pooled is a piece of memory that events of batches live in: a slab, or
// the data buffer of one large event. It returns to its pool when the
// last reference (the decoder's while it writes to it, one per batch
// holding events in it) is dropped.
type pooled struct {
	buf  []byte
	refs atomic.Int32
	pool *memPool
}

func (p *pooled) unref() {
	if p.refs.Add(-1) == 0 {
		p.pool.put(p)
	}
}

// memPool keeps released memory of one decoder for reuse. Batches are
// released from other goroutines, so it is locked.
type memPool struct {
	mu    sync.Mutex
	slabs []*pooled // batchSlabSize each
	large []*pooled // data buffers of large events, any size
	bytes int       // kept in slabs and large
}

// getSlab returns a slab with one reference (the caller's).
func (m *memPool) getSlab() *pooled {
	m.mu.Lock()
	if n := len(m.slabs); n > 0 {
		p := m.slabs[n-1]
		m.slabs[n-1] = nil
		m.slabs = m.slabs[:n-1]
		m.bytes -= cap(p.buf)
		m.mu.Unlock()
		p.refs.Store(1)
		return p
	}
	m.mu.Unlock()
	p := &pooled{buf: make([]byte, 0, batchSlabSize), pool: m}
	p.refs.Store(1)
	return p
}

// getLarge returns a buffer of capacity at least n, with one reference,
// preferring the most recently released.
func (m *memPool) getLarge(n int) *pooled {
	m.mu.Lock()
	for i := len(m.large) - 1; i >= 0; i-- {
		if p := m.large[i]; cap(p.buf) >= n {
			last := len(m.large) - 1
			m.large[i] = m.large[last]
			m.large[last] = nil
			m.large = m.large[:last]
			m.bytes -= cap(p.buf)
			m.mu.Unlock()
			p.buf = p.buf[:0]
			p.refs.Store(1)
			return p
		}
	}
	m.mu.Unlock()
	p := &pooled{buf: make([]byte, 0, n), pool: m}
	p.refs.Store(1)
	return p
}

func (m *memPool) put(p *pooled) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bytes+cap(p.buf) > poolKeepMax {
		return
	}
	m.bytes += cap(p.buf)
	if cap(p.buf) == batchSlabSize {
		m.slabs = append(m.slabs, p)
	} else {
		m.large = append(m.large, p)
	}
}

// ReadBatch reads up to limit events (at least one; limit < 1 means one)
// into b, replacing what b held: a batch still holding events is
// released first.
//
// It waits for input only until the batch has its first event: after
// that it stops at the first read that could block, so a live stream's
// events are handed on as soon as they are complete. It returns io.EOF
// only with an empty batch; events read before the end of the input come
// first, with a nil error. Any other error is returned with the events
// read before it, which come first in the stream; errors are those of
// Next, ErrEventTooLarge included (not final).
//
// ReadBatch and Next may be mixed on one decoder, but the events of Next
// always own their memory (see Next) and those of ReadBatch never do.
func (d *Decoder) ReadBatch(b *Batch, limit int) error {
	b.Release()
	if limit < 1 {
		limit = 1
	}
	if d.pool == nil {
		d.pool = &memPool{}
	}
	d.batch = b
	if d.cur == nil {
		d.switchSlab()
	}
	if d.bufMem == nil {
		// Pool the read buffer, adopting the one in use with its unread
		// bytes.
		if d.buf == nil {
			d.bufMem = d.getBuf()
			d.buf = d.bufMem.buf[:max(d.bufSize, minBufSize)]
		} else {
			d.bufMem = &pooled{buf: d.buf, pool: d.pool}
			d.bufMem.refs.Store(1)
		}
	}
	defer d.endBatch()
	for len(b.Events) < limit {
		if d.crAt > d.r && d.bomDone && !d.skipping && !d.skipLF && len(d.partial) == 0 {
			// Next's fast path, appending straight to the batch.
			d.nextBuffered(b, limit)
			if len(b.Events) >= limit {
				break
			}
		}
		data, id, typ, err := d.next()
		if err != nil {
			if err == errWouldBlock {
				return nil
			}
			if err == io.EOF && len(b.Events) > 0 {
				return nil // the next call returns io.EOF: the error is sticky
			}
			return err
		}
		b.push(data, id, typ)
		d.noBlock = true
	}
	return nil
}

// push appends an event. Field by field: a whole Event built and copied
// is read back with wider loads than it was stored with (see Next).
func (b *Batch) push(data []byte, id, typ string) {
	n := len(b.Events)
	if n == cap(b.Events) {
		b.Events = append(b.Events, Event{})
	} else {
		b.Events = b.Events[:n+1]
	}
	ev := &b.Events[n]
	ev.Data, ev.ID, ev.Type = data, id, typ
}

// endBatch finishes ReadBatch: the next batch takes its own reference on
// the slab, and the memory of the last ID and type, which outlive the
// batch in the decoder, is pinned so that releasing the batch does not
// hand it out again.
func (d *Decoder) endBatch() {
	d.batch, d.curRef, d.bufRef, d.noBlock = nil, false, false, false
	if d.lastIDPooled {
		pin(&d.pinID, d.lastIDMem)
	}
	if d.lastTypePooled {
		pin(&d.pinType, d.lastTypeMem)
	}
	d.lastIDPooled, d.lastTypePooled = false, false
	d.lastIDMem, d.lastTypeMem = nil, nil
}

// pin makes *p hold a reference on mem instead of what it held.
func pin(p **pooled, mem *pooled) {
	if *p == mem {
		return
	}
	mem.refs.Add(1)
	if *p != nil {
		(*p).unref()
	}
	*p = mem
}

// switchSlab moves the decoder to a fresh slab, pooled during ReadBatch
// and plain memory otherwise, taking along the data of the event being
// assembled in the old slab's tail.
func (d *Decoder) switchSlab() {
	old, oldCur := d.slab, d.cur
	if d.batch != nil {
		d.cur = d.pool.getSlab()
		d.slab = d.cur.buf[:0]
	} else {
		d.cur = nil
		d.slab = make([]byte, 0, slabSize)
	}
	d.curRef = false
	if d.dlen > 0 {
		copy(d.slab[:d.dlen], old[len(old):len(old)+d.dlen])
	}
	if oldCur != nil {
		oldCur.unref()
	}
}

// getBuf returns pooled memory for a read buffer of d's size.
func (d *Decoder) getBuf() *pooled {
	size := max(d.bufSize, minBufSize)
	if size == batchSlabSize {
		return d.pool.getSlab()
	}
	return d.pool.getLarge(size)
}

// replaceBuf moves the unread bytes to a fresh read buffer, leaving the
// old one to the batches that hold events in it. The search caches move
// with the bytes, as when fill compacts.
func (d *Decoder) replaceBuf() {
	old, oldMem := d.buf, d.bufMem
	if d.pool == nil {
		d.pool = &memPool{}
	}
	d.bufMem = d.getBuf()
	d.buf = d.bufMem.buf[:len(old)]
	n := copy(d.buf, old[d.r:d.w])
	d.lfAt -= d.r
	d.crAt -= d.r
	d.validTo -= d.r
	d.checkedTo -= d.r
	d.r, d.w = 0, n
	d.bufRef = false
	oldMem.unref()
}

// useBuf records that the current batch holds memory in the read buffer.
func (d *Decoder) useBuf() {
	if d.batch != nil && !d.bufRef {
		d.bufMem.refs.Add(1)
		d.batch.mem = append(d.batch.mem, d.bufMem)
		d.bufRef = true
	}
}

// takeZC moves a pending single data line from the read buffer to the
// data buffer, as any other data line.
func (d *Decoder) takeZC() {
	v := d.zc
	d.zc, d.zcSet = nil, false
	d.appendData(v)
}

// useSlab records that the current batch holds memory in the current
// slab, before a piece of it is handed out.
func (d *Decoder) useSlab() {
	if d.batch != nil && !d.curRef {
		d.cur.refs.Add(1)
		d.batch.mem = append(d.batch.mem, d.cur)
		d.curRef = true
	}
}
