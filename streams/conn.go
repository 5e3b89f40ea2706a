package streams

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// A subscriber that reads only the shared tail (the usual case: a new one,
// or one resuming inside the window) does not keep a goroutine, net/http's
// buffers or its background reader: once its place in the stream is fixed,
// the server takes the HTTP/1.x connection over (Hijack), writes the
// response head itself and hands the connection to the server's writers.
// An idle subscriber is then a few hundred bytes and a socket. A writer
// wakes for a subscriber when the tail has frames for it (or a heartbeat
// is due), writes everything pending in one write from a pooled buffer and
// goes on to the next; one whose socket is full is finished by a goroutine
// of its own, so it never holds up the others. The response has no length
// and ends when the connection closes, as an SSE response always does.
//
// HTTP/2 connections, writers that cannot be taken over and subscribers
// with a feed of their own (a catch-up) keep the goroutine of their
// request (serve.go).

// connSub is a subscriber whose connection the server took over.
type connSub struct {
	srv  *Server
	pool *writerPool
	st   *stream
	sub  *subscriber
	conn net.Conn
	raw  rawWriter // nil where the connection is not a plain socket (TLS)
	f    feed
	req  *request

	// state is connIdle, connQueued, connRunning or connAgain.
	state atomic.Int32
	// hbDue asks the next run for a heartbeat (and a liveness check).
	hbDue atomic.Bool
	// lastWrite is when the connection was last written (UnixNano).
	lastWrite atomic.Int64
	// due is when a queued run may start, with Coalesce (UnixNano).
	due     atomic.Int64
	closing atomic.Bool // the server is shutting down: flush and end
	// peerGone is set when the client closed the connection (hangups,
	// or the heartbeat loop's probe).
	peerGone atomic.Bool
	// hup watches the socket for a hang-up (nil: probed instead); hupFD
	// is its descriptor there, guarded by hup's mu.
	hup   *hangups
	hupFD int32
	hupOK atomic.Bool // the watch has it; no probe needed

	// Owned by whoever runs it (a writer, or its slow goroutine).
	scratch []byte // a core stream's id line
	ended   bool
}

// States of a connSub's scheduling: at most one goroutine runs it.
const (
	connIdle int32 = iota
	connQueued
	connRunning
	connAgain // notified while running: run again
)

// schedule makes sure a writer runs c soon.
func (c *connSub) schedule() {
	if c.mark() {
		c.pool.push(c)
	}
}

// mark notes that c has something to write; it reports true when c was
// idle and is now queued, and the caller must push it to c.pool.
func (c *connSub) mark() bool {
	for {
		switch s := c.state.Load(); s {
		case connIdle:
			if c.state.CompareAndSwap(connIdle, connQueued) {
				if w := c.st.cfg.Coalesce; w > 0 {
					c.due.Store(time.Now().Add(w).UnixNano())
				}
				return true
			}
		case connRunning:
			if c.state.CompareAndSwap(connRunning, connAgain) {
				return false
			}
		default:
			return false // queued, or already asked to run again
		}
	}
}

// done ends a run: back to idle, or queued again if notified meanwhile or
// more is pending.
func (c *connSub) done(more bool) {
	if c.ended {
		return
	}
	if !more && c.state.CompareAndSwap(connRunning, connIdle) {
		return
	}
	c.state.Store(connQueued)
	c.pool.push(c)
}

// poolWriteWait bounds a writer's wait on a socket where the connection
// cannot be written without blocking (TLS): past it, the rest is left to
// a goroutine of the subscriber's own.
const poolWriteWait = 20 * time.Millisecond

// run writes what is pending for c, gathered in ws, the buffers of the
// writer running it.
func (c *connSub) run(ws *writerScratch) {
	c.state.Store(connRunning)
	sub := c.sub
	if sub.isCut.Load() {
		c.end(errCutOff)
		return
	}
	closing := c.closing.Load()
	if closing {
		c.f.stop() // nothing more arrives; flush what has
	}
	if c.peerGone.Load() {
		c.end(errPeerClosed)
		return
	}
	hb := c.hbDue.Swap(false)
	if hb {
		if c.f.check != nil {
			if err := c.f.check(); err != nil {
				sub.fail(err)
				c.end(err)
				return
			}
		}
		if c.raw != nil && c.raw.peerClosed() {
			c.end(errPeerClosed)
			return
		}
	}
	w := &ws.w
	w.b = w.b[:0]
	var more bool
	var sent uint64
	for len(w.b) < writeBatchBytes {
		var err error
		ws.frames, more, err = c.f.tail.read(sub, ws.frames[:0], tailBatch)
		if err != nil {
			c.end(err)
			return
		}
		for i, fr := range ws.frames {
			ws.frames[i] = nil
			ok, _ := c.srv.writeFrame(w, c.f, c.req, fr, &c.scratch)
			if ok {
				sent++
			}
		}
		if !more {
			break
		}
	}
	if len(w.b) == 0 && hb {
		w.b = append(w.b, ": heartbeat\n"...)
	}
	c.count(sent)
	upto := sub.next.Load() // the frames this write gives the connection
	if len(w.b) == 0 {
		sub.taken.Store(upto)
		if closing {
			c.end(ErrClosed)
			return
		}
		c.done(more)
		return
	}
	ws.writes++
	ws.events += int64(sent)
	n, blocked, err := c.write(w.b)
	switch {
	case err != nil:
		c.end(err)
	case blocked:
		// A full socket: finish with a goroutine of its own, so the
		// writer goes on with the others. Until it is done the
		// subscriber is stalled: if it stays so for stallAfter while
		// more than max_pending behind, it is cut off.
		sub.stalled.Store(time.Now().UnixNano())
		rest := append([]byte(nil), w.b[n:]...)
		go c.finishWrite(rest, upto)
	default:
		sub.taken.Store(upto)
		// The batch's clock: heartbeats are seconds apart, so a clock
		// read per batch of runs, not per write, is close enough.
		c.lastWrite.Store(ws.now)
		c.done(more || closing)
	}
}

// write writes p without waiting for room in the socket: blocked reports
// that only the first n bytes went.
func (c *connSub) write(p []byte) (n int, blocked bool, err error) {
	if c.raw != nil {
		return c.raw.writeNow(p)
	}
	if !c.sub.armDeadline(c.conn, poolWriteWait) {
		return 0, false, errCutOff
	}
	n, err = c.conn.Write(p)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && !c.sub.isCut.Load() {
		return n, true, nil
	}
	return n, false, err
}

// finishWrite writes the rest of a burst the socket had no room for,
// waiting up to writeTimeout, then hands c back to the writers. Once the
// write has waited stallAfter, a subscriber more than max_pending frames
// behind is cut off (tail.publish does the same when a frame arrives).
// upto is the tail index after the burst's frames.
func (c *connSub) finishWrite(rest []byte, upto uint64) {
	sub := c.sub
	t := c.f.tail
	start := time.Now()
	// After a timeout a plain socket can go on writing; a TLS connection
	// cannot, so it waits the whole writeTimeout at once.
	checked := c.raw == nil
	for {
		wait := c.srv.writeWait - time.Since(start)
		if !checked {
			wait = min(wait, t.stall-time.Since(start))
		}
		if !sub.armDeadline(c.conn, max(wait, 1)) { // 0 would be none
			c.end(errCutOff)
			return
		}
		n, err := c.conn.Write(rest)
		rest = rest[n:]
		if err == nil {
			break
		}
		var ne net.Error
		if checked || !errors.As(err, &ne) || !ne.Timeout() || sub.isCut.Load() {
			c.end(err)
			return
		}
		checked = true
		if t.slow(sub) {
			sub.cut(errSlow)
			c.end(errSlow)
			return
		}
	}
	// The raw writes that follow fail once a deadline has passed: clear it.
	if !sub.armDeadline(c.conn, 0) {
		c.end(errCutOff)
		return
	}
	sub.taken.Store(upto)
	sub.stalled.Store(0)
	c.lastWrite.Store(time.Now().UnixNano())
	c.done(true)
}

// count adds n events to the stream's counters.
func (c *connSub) count(n uint64) {
	if n > 0 {
		c.st.sent.Add(n)
		c.st.mSent.Add(float64(n))
	}
}

// errPeerClosed ends a subscriber whose client closed the connection.
var errPeerClosed = errors.New("client closed the connection")

// end closes the connection and releases everything the subscription
// held. It runs once, on the goroutine running c.
func (c *connSub) end(err error) {
	if c.ended {
		return
	}
	c.ended = true
	if c.hup != nil {
		c.hup.forget(c)
	}
	_ = c.conn.Close()
	c.f.stop()
	s := c.srv
	s.unregister(c)
	s.release(c.st)
	s.logEnd(c.st.cfg.Path, c.sub, err)
	s.wg.Done()
}

// armDeadline sets the write deadline of conn to d from now (0: none),
// unless the subscriber has been cut off (ordered with cut by mu).
func (s *subscriber) armDeadline(conn net.Conn, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	var at time.Time
	if d != 0 {
		at = time.Now().Add(d)
	}
	_ = conn.SetWriteDeadline(at)
	return true
}

// takeOver writes the response head and the opening records on the
// connection itself and hands the subscriber to the writers. handed
// reports that the connection is now theirs (the caller must not touch
// w, release or stop anything); it is false, with the connection closed,
// if the head could not be written, and false, with nothing done, when the
// connection cannot be taken over (HTTP/2, a wrapped writer).
func (s *Server) takeOver(w http.ResponseWriter, rc *http.ResponseController, st *stream, sub *subscriber, f feed, req *request) (handed, failed bool) {
	conn, _, err := rc.Hijack()
	if err != nil {
		return false, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close") // the body ends with the connection
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	buf := getBuf()
	defer putBuf(buf)
	aw := appendWriter{b: append(*buf, "HTTP/1.1 200 OK\r\n"...)}
	_ = h.Write(&aw)
	aw.b = append(aw.b, "\r\n: ok\n"...)
	if f.start != "" && req.lastEventID == "" {
		aw.b = append(append(append(aw.b, "id: "...), f.start...), "\n\n"...)
	}
	*buf = aw.b
	c := &connSub{srv: s, st: st, sub: sub, conn: conn, raw: newRawWriter(conn), f: f, req: req}
	if !sub.armDeadline(conn, s.writeWait) {
		_ = conn.Close()
		return false, true
	}
	if _, err := conn.Write(aw.b); err != nil {
		_ = conn.Close()
		return false, true
	}
	// The writers' raw writes fail once a deadline has passed: clear it.
	if !sub.armDeadline(conn, 0) {
		_ = conn.Close()
		return false, true
	}
	c.lastWrite.Store(time.Now().UnixNano())
	sub.mu.Lock()
	sub.rc = nil // the connection is no longer net/http's
	sub.mu.Unlock()
	s.register(c)
	sub.cs.Store(c)
	if sub.isCut.Load() {
		// Cut before it was taken over: the cut could not reach it.
		_ = conn.SetWriteDeadline(time.Now())
	}
	c.schedule() // frames published meanwhile, or a cut
	return true, false
}

// register adds c to the subscribers whose heartbeats the server keeps,
// starting the writers and the heartbeat loop for the first.
func (s *Server) register(c *connSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*connSub]struct{}{}
	}
	s.conns[c] = struct{}{}
	if s.pool == nil {
		s.pool = newWriterPool(writerCount())
		s.loopStop = make(chan struct{})
		s.loops.Add(1)
		go s.heartbeats(s.pool, s.loopStop)
		s.hups = newHangups()
		if s.hups != nil {
			s.loops.Add(1)
			go func(h *hangups, stop chan struct{}) {
				defer s.loops.Done()
				h.run(stop)
			}(s.hups, s.loopStop)
		}
	}
	c.pool = s.pool
	c.hupFD = -1
	if s.hups != nil && c.raw != nil {
		c.hup = s.hups // before the watch: a hang-up may end c at once
		c.hupOK.Store(s.hups.watch(c))
	}
	if s.closed {
		c.closing.Store(true)
	}
}

// unregister removes c; the last one stops the writers and the loop.
func (s *Server) unregister(c *connSub) {
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.active, c.sub)
	if len(s.conns) == 0 && s.pool != nil {
		close(s.loopStop)
		s.pool, s.loopStop, s.hups = nil, nil, nil
	}
	s.mu.Unlock()
}

// writerCount is how many writers run while subscribers are taken over.
func writerCount() int { return 4 }

// heartbeats marks every taken-over subscriber silent for its stream's
// heartbeat interval as due one, until stop is closed; it then closes the
// pool it ran with.
func (s *Server) heartbeats(pool *writerPool, stop chan struct{}) {
	defer s.loops.Done()
	// The writers stop once their queue is empty; Shutdown waits for them
	// through loops.
	defer pool.close()
	tick := time.NewTicker(s.hbTick)
	defer tick.Stop()
	var due, probe []*connSub
	var lastProbe time.Time
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			probing := now.Sub(lastProbe) >= probeEvery
			if probing {
				lastProbe = now
			}
			s.mu.Lock()
			for c := range s.conns {
				if now.UnixNano()-c.lastWrite.Load() >= int64(c.st.heartbeat) {
					due = append(due, c)
				} else if probing && c.raw != nil && !c.hupOK.Load() {
					probe = append(probe, c)
				}
			}
			s.mu.Unlock()
			for i, c := range due {
				due[i] = nil
				c.hbDue.Store(true)
				c.schedule()
			}
			// A client that left is noticed here rather than at its
			// next heartbeat: nothing reads the connection.
			for i, c := range probe {
				probe[i] = nil
				if c.raw.peerClosed() {
					c.peerGone.Store(true)
					c.schedule()
				}
			}
			due, probe = due[:0], probe[:0]
		}
	}
}

// probeEvery spaces the heartbeat loop's checks that the clients of
// taken-over connections are still there: a peek at each socket, no read
// goroutine. It bounds how long a client that left counts as subscribed
// (and holds a broker reader).
const probeEvery = time.Second

// closeConns asks every taken-over subscriber to flush and end (Shutdown).
func (s *Server) closeConns() {
	s.mu.Lock()
	cs := make([]*connSub, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.closing.Store(true)
		c.schedule()
	}
}
