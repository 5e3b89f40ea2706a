package streams

import (
	"strconv"
	"sync"
	"time"
)

// appendID appends cur's id to b; a core stream's counter is formatted in
// place, without a string per event per subscriber.
func appendID(b []byte, cur cursor) []byte {
	if cc, ok := cur.(*counterCursor); ok {
		return strconv.AppendUint(b, cc.n, 10)
	}
	return append(b, cur.id()...)
}

// writeBatchBytes bounds what one run gathers before writing.
const writeBatchBytes = 256 << 10

// appendWriter appends what is written to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// bufPool holds the buffers of response heads (takeOver).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // a rare huge head: let it go
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// writerScratch is what a writer reuses from one run to the next: the
// burst it gathers, the frames it reads and the clock of its batch. Idle
// subscribers hold none of it.
type writerScratch struct {
	w      appendWriter
	frames []*frame
	now    int64 // UnixNano at the start of the batch
	// writes and events count the batch's writes and the events they
	// carried, for the pacer.
	writes, events int64
}

// release lets go of a buffer a rare huge burst grew.
func (ws *writerScratch) release() {
	if cap(ws.w.b) > 1<<20 {
		ws.w.b = nil
	}
}

// writerPool runs the connSubs that have something to write, on a few
// goroutines.
type writerPool struct {
	mu   sync.Mutex
	cond *sync.Cond
	// queue[head:] waits for a writer; taking from the front by index
	// keeps a pass over 10,000 subscribers linear.
	queue  []*connSub
	head   int
	closed bool
	pace   pacer
	wg     sync.WaitGroup
}

func newWriterPool(workers int) *writerPool {
	p := &writerPool{}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

func (p *writerPool) push(c *connSub) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	p.cond.Signal()
}

// pushAll queues every connSub of cs (marked by the caller) at once: a
// tail schedules all its subscribers with one lock and one wake-up per
// event, not one each. The writers wake each other while more is queued.
func (p *writerPool) pushAll(cs []*connSub) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	p.queue = append(p.queue, cs...)
	p.mu.Unlock()
	p.cond.Signal()
}

// work runs queued connSubs, taking several at a time, until the pool is
// closed and its queue empty.
func (p *writerPool) work() {
	defer p.wg.Done()
	var batch []*connSub
	ws := &writerScratch{frames: make([]*frame, 0, tailBatch)}
	for {
		p.mu.Lock()
		for len(p.queue) == p.head && !p.closed {
			p.cond.Wait()
		}
		if len(p.queue) == p.head {
			p.mu.Unlock()
			return
		}
		n := min(len(p.queue)-p.head, 32)
		batch = append(batch[:0], p.queue[p.head:p.head+n]...)
		clear(p.queue[p.head : p.head+n])
		p.head += n
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		} else if p.head >= 1024 && p.head > len(p.queue)/2 {
			k := copy(p.queue, p.queue[p.head:])
			clear(p.queue[k:])
			p.queue, p.head = p.queue[:k], 0
		}
		more := len(p.queue) > p.head
		p.mu.Unlock()
		if more {
			p.cond.Signal()
		}
		ws.now = time.Now().UnixNano()
		start, slept := ws.now, int64(0)
		for i, c := range batch {
			batch[i] = nil
			if d := c.due.Load(); d > 0 {
				// Coalesce: let the burst gather before writing it.
				if wait := time.Until(time.Unix(0, d)); wait > 0 {
					time.Sleep(wait)
					now := time.Now().UnixNano()
					slept += now - ws.now
					ws.now = now
				}
			}
			c.run(ws)
		}
		end := time.Now().UnixNano()
		p.pace.account(end, end-start-slept, ws.writes, ws.events)
		ws.writes, ws.events = 0, 0
		ws.release()
	}
}

// close stops the writers once the queue is empty, and waits for them.
func (p *writerPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
