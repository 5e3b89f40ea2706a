package streams

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sse"
)

// serve runs one subscription until the client leaves, falls behind, the
// broker side fails or the server shuts down. It reports true when it has
// handed the connection to the writers (conn.go), which then release the
// subscriber's slot and wg count when it ends.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, st *stream, req *request) (handed bool) {
	path := st.cfg.Path
	rc := http.NewResponseController(w)
	// A stream read through a shared tail needs no buffer of its own; a
	// backend that hands every subscriber its own messages does.
	pending := st.maxPending
	if _, ok := st.backend.(tailBackend); ok {
		pending = 0
	}
	sub := newSubscriber(pending, rc)
	s.mu.Lock()
	s.active[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		if handed {
			return // the writers remove it when it ends
		}
		s.mu.Lock()
		delete(s.active, sub)
		s.mu.Unlock()
	}()
	sctx, cancel := context.WithTimeout(r.Context(), subscribeTimeout)
	f, err := st.backend.subscribe(sctx, sub, req)
	cancel()
	if err != nil {
		code := statusOf(err)
		if code >= 500 {
			s.log.Warn("stream subscription failed", "stream", path, "err", err)
		}
		http.Error(w, capEcho(err.Error()), code) // it may quote an 8 KB Last-Event-ID
		return false
	}
	if f.tail != nil && sub.ch == nil && !s.noTakeOver && !wrapped(w) {
		// It reads only the shared tail: no goroutine of its own needed.
		ok, failed := s.takeOver(w, rc, st, sub, f, req)
		if ok {
			return true
		}
		if failed {
			f.stop()
			return false
		}
	}
	defer f.stop()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	enc := sse.NewEncoder(w)
	// The opening comment makes the client and every proxy on the way see
	// the stream open now, not at the first event.
	if !sub.armWrite() || enc.Comment("ok") != nil || !announceStart(w, f, req) || rc.Flush() != nil {
		return
	}

	// The heartbeat fires only after heartbeat of silence: a busy stream
	// needs none, an idle one gets one exactly when due.
	hb := time.NewTimer(st.heartbeat)
	defer hb.Stop()
	var sent uint64
	count := func() {
		if sent > 0 {
			st.sent.Add(sent)
			st.mSent.Add(float64(sent))
			sent = 0
		}
	}
	defer count()
	// private is the subscriber's own feed (Kafka readers, a JetStream
	// catch-up); nil once it has joined the tail.
	private := sub.ch
	var joined bool
	if f.tail != nil && private == nil {
		joined = true
	}
	write := func(m *message) error {
		if sub.isCut.Load() {
			// Buffered messages may follow one that was dropped.
			return errCutOff
		}
		f.cur.advance(m)
		if f.subject != "" && !subjectMatches(f.subject, m.subject) {
			return nil
		}
		if req.events != nil && !req.events[m.eventType()] {
			return nil
		}
		typ := m.typ
		if typ == sse.DefaultType {
			typ = ""
		}
		if err := enc.Encode(sse.Event{ID: f.cur.id(), Type: typ, Data: m.data}); err != nil {
			if errors.Is(err, sse.ErrInvalidType) {
				// A header with a line break cannot be an event type;
				// skipping the one message keeps the stream alive.
				s.log.Warn("message skipped: SSE-Event header is not a valid event type", "stream", path, "type", typ)
				return nil
			}
			return err
		}
		sent++
		return nil
	}
	// join continues from the tail where a catch-up ended.
	join := func(m *message) error {
		if err := f.join(m); err != nil {
			if errors.Is(err, errNotCovered) {
				// The window moved on while the last events of the
				// catch-up were written: resuming is safe and cheap.
				sub.cut(errOutOfWindow)
				return errOutOfWindow
			}
			sub.fail(err)
			return err
		}
		private, joined = nil, true
		return nil
	}
	// drain writes what is buffered without waiting, then flushes once, so
	// a burst costs one flush yet every event leaves before we block again.
	drain := func(first *message) error {
		if !sub.armWrite() {
			return errCutOff
		}
		m := first
		for n := 0; ; n++ {
			if m.join {
				if err := join(m); err != nil {
					return err
				}
				break
			}
			if err := write(m); err != nil {
				return err
			}
			if n+1 >= st.maxPending {
				break
			}
			select {
			case next := <-private:
				m = &next
				continue
			default:
			}
			break
		}
		count()
		return rc.Flush()
	}
	var frames []*frame
	var scratch []byte
	// writeTail writes the tail's frames the subscriber has not written
	// yet, a batch at a time, the same bytes for every subscriber.
	writeTail := func() error {
		if !sub.armWrite() {
			return errCutOff
		}
		var more bool
		var err error
		frames, more, err = f.tail.read(sub, frames[:0], tailBatch)
		if err != nil {
			return err
		}
		// Until the write returns, the subscriber counts as stalled: if
		// it is still waiting stallAfter later, more than max_pending
		// behind, a frame's arrival cuts it off.
		upto := sub.next.Load()
		sub.stalled.Store(time.Now().UnixNano())
		defer sub.stalled.Store(0)
		for i, fr := range frames {
			frames[i] = nil
			if sub.isCut.Load() {
				return errCutOff
			}
			ok, err := s.writeFrame(w, f, req, fr, &scratch)
			if err != nil {
				return err
			}
			if ok {
				sent++
			}
		}
		if more {
			sub.notify() // come back after a look at the other cases
		}
		count()
		if err := rc.Flush(); err != nil {
			return err
		}
		sub.taken.Store(upto)
		return nil
	}
	for {
		select {
		case m := <-private:
			if err := drain(&m); err != nil {
				s.logEnd(path, sub, err)
				return
			}
			hb.Reset(st.heartbeat)
		case <-sub.wake:
			if !joined {
				continue // a catch-up's join wakes it again
			}
			if err := writeTail(); err != nil {
				s.logEnd(path, sub, err)
				return
			}
			hb.Reset(st.heartbeat)
		case <-hb.C:
			if f.check != nil {
				if err := f.check(); err != nil {
					sub.fail(err)
					s.logEnd(path, sub, err)
					return
				}
			}
			if !sub.armWrite() || enc.Comment("heartbeat") != nil || rc.Flush() != nil {
				s.logEnd(path, sub, errCutOff)
				return
			}
			hb.Reset(st.heartbeat)
		case <-sub.done:
			s.logEnd(path, sub, errCutOff)
			return
		case <-r.Context().Done():
			return
		case <-s.stopping:
			// Stop the feed first so that nothing more arrives, then
			// flush what it had already delivered: the client has every
			// event it was sent, and its Last-Event-ID covers them.
			f.stop()
			for private != nil {
				select {
				case m := <-private:
					if m.join {
						private = nil
						break
					}
					if drain(&m) != nil {
						return
					}
				default:
					private = nil
				}
			}
			for joined {
				if writeTail() != nil {
					return
				}
				select {
				case <-sub.wake:
				default:
					return
				}
			}
			return
		}
	}
}

// tailBatch bounds the frames written between two looks at the handler's
// other duties (heartbeat, shutdown, a cut).
const tailBatch = 256

// tailBackend is a backend whose subscribers read a shared tail, so they
// need no buffer of their own (a JetStream catch-up makes its own).
type tailBackend interface {
	backend
	sharesTail()
}

// writeFrame writes one frame of the tail to a subscriber, unless its
// filters skip it.
func (s *Server) writeFrame(w io.Writer, f feed, req *request, fr *frame, scratch *[]byte) (bool, error) {
	if f.subject != "" && !subjectMatches(f.subject, fr.subject) {
		return false, nil
	}
	var idLine []byte
	switch {
	case fr.id == "":
		// Core NATS: ids count the events of this connection.
		f.cur.advance(nil)
		idLine = append(appendID(append((*scratch)[:0], "id: "...), f.cur), '\n')
		*scratch = idLine
	case f.kj != nil && !f.kj.aligned():
		// A Kafka position of its own, until the tail's reaches it.
		line, skip := f.kj.frame(fr)
		if skip {
			return false, nil
		}
		idLine = line
	}
	if fr.wire == nil {
		return false, nil // logged once, when the frame was made
	}
	if req.events != nil && !req.events[fr.eventType()] {
		return false, nil
	}
	body := fr.wire
	if idLine != nil {
		if _, err := w.Write(idLine); err != nil {
			return false, err
		}
		body = body[fr.idEnd:]
	}
	_, err := w.Write(body)
	return err == nil, err
}

// announceStart tells a client that came without Last-Event-ID where its
// subscription starts, as an id-only record: an event with no data is not
// dispatched (WHATWG), yet its id becomes the last event ID, which
// EventSource and sse.Decoder send back on reconnect. Without it a client
// that drops before its first event has no id, and whatever was published
// until it reconnects would be lost. It reports whether the write worked.
func announceStart(w http.ResponseWriter, f feed, req *request) bool {
	if f.start == "" || req.lastEventID != "" {
		return true // nothing to name, or the client already holds it
	}
	// Ids are digits or base64url, so they cannot break the framing.
	_, err := io.WriteString(w, "id: "+f.start+"\n\n")
	return err == nil
}

func (s *Server) logEnd(path string, sub *subscriber, err error) {
	if reason := sub.reason(); reason != nil {
		err = reason
	}
	if errors.Is(err, errSlow) {
		metrics.SlowSubscriberDrops.WithLabelValues(path).Inc()
		s.log.Info("slow subscriber disconnected", "stream", path, "err", err)
		return
	}
	if errors.Is(err, errBroker) {
		s.log.Warn("subscriber disconnected: broker side failed; it may resume", "stream", path, "err", err)
		return
	}
	s.log.Debug("subscriber ended", "stream", path, "err", err)
}

// wrapped reports whether w wraps another writer (middleware that counts
// or transforms what is written): taking the connection over would write
// past it, so such a response keeps net/http's path.
func wrapped(w http.ResponseWriter) bool {
	_, ok := w.(interface{ Unwrap() http.ResponseWriter })
	return ok
}
