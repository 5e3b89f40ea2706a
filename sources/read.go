package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ssebridge/ssebridge/internal/logging"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sse"
)

// The reader: one goroutine per Worker that connects, decodes the stream
// and queues its events, reconnecting with backoff after every drop.

func (w *Worker) readLoop(ctx context.Context) error {
	// Closing the queue is what tells the writer to flush and finish.
	defer close(w.queue)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Reconnect only once everything received was handled, so
			// Last-Event-ID (the last acknowledged event) is also the
			// last received one: nothing is fetched twice.
			if err := w.waitDrained(ctx); err != nil {
				return nil
			}
		}
		w.setConn(StateConnecting, time.Time{})
		n, err := w.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrServerStopped) {
			w.log.Info("source stopped by the server (204)")
			w.recordError(err)
			w.report(ctx, err)
			return err
		}
		if err == nil {
			if w.cfg.Once {
				return nil
			}
			err = ErrStreamEnded
		}
		w.recordError(err)
		reason, permanent, retryAfter := classify(err)
		if permanent {
			w.log.Error("source configuration error", "url", w.cfg.URL, "error", err)
		} else {
			w.log.Warn("source connection lost", "url", w.cfg.URL, "reason", reason, "events", n, "error", err)
		}
		w.report(ctx, err)
		if w.cfg.Once {
			return err
		}
		if n > 0 {
			w.bo.Reset()
		}
		delay := w.retryDelay(permanent, retryAfter)
		metrics.Reconnects.WithLabelValues(w.cfg.Name, reason).Inc()
		w.mu.Lock()
		w.st.Reconnects++
		w.mu.Unlock()
		w.setConn(StateBackoff, time.Now().Add(delay))
		if err := w.cfg.Sleep(ctx, delay); err != nil {
			return nil
		}
	}
}

func (w *Worker) retryDelay(permanent bool, retryAfter time.Duration) time.Duration {
	if permanent {
		return w.cfg.RetryMax
	}
	d := w.bo.NextBackOff()
	if d == backoff.Stop || d > w.cfg.RetryMax {
		d = w.cfg.RetryMax
	}
	if w.haveRetry {
		// The server's retry is the reconnection time (WHATWG): jitter
		// may add to it, never take from it. A draw below it is mirrored
		// above it, which keeps the spread.
		if floor := w.bo.InitialInterval; d < floor {
			d = min(2*floor-d, max(w.cfg.RetryMax, floor))
		}
	}
	// The server's Retry-After is a floor, even above RetryMax: it asked.
	return max(d, retryAfter)
}

// onRetry applies a retry field: it becomes the base delay (bounded by
// RetryMax) and restarts the backoff sequence from it.
func (w *Worker) onRetry(d time.Duration) {
	if w.haveRetry && d == w.serverRetry {
		return
	}
	w.serverRetry, w.haveRetry = d, true
	w.bo.InitialInterval = max(min(d, w.cfg.RetryMax), minRetry)
	w.bo.Reset()
}

// classify maps a connection error to its metrics reason, whether it is a
// configuration problem, and the server's Retry-After.
func classify(err error) (reason string, permanent bool, retryAfter time.Duration) {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		switch {
		case se.Code >= 500:
			return ReasonHTTP5xx, false, se.RetryAfter
		case se.Code == http.StatusTooManyRequests:
			return ReasonHTTP429, false, se.RetryAfter
		case se.Code == http.StatusRequestTimeout:
			return ReasonHTTP4xx, false, se.RetryAfter
		case se.Permanent():
			return ReasonHTTP4xx, true, 0
		}
		return ReasonHTTPOther, false, se.RetryAfter
	case errors.Is(err, ErrBadRedirect):
		return ReasonRedirect, true, 0
	case errors.Is(err, ErrContentType), errors.Is(err, ErrContentEncoding):
		return ReasonContentType, true, 0
	case errors.Is(err, ErrIdleTimeout):
		return ReasonIdle, false, 0
	case errors.Is(err, ErrStreamEnded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ReasonEOF, false, 0
	}
	return ReasonNetwork, false, 0
}

// connect makes one request and reads the stream until it ends. It returns
// the number of events received, and nil at a clean end of stream.
func (w *Worker) connect(ctx context.Context) (int, error) {
	connCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	w.mu.Lock()
	lastID, haveID := w.st.LastEventID, w.st.HasLastEventID
	w.mu.Unlock()

	req, err := w.newRequest(connCtx, lastID)
	if err != nil {
		return 0, err
	}
	var idle *time.Timer
	if w.cfg.IdleTimeout > 0 {
		idle = time.AfterFunc(w.cfg.IdleTimeout, func() { cancel(ErrIdleTimeout) })
		defer idle.Stop()
	}
	resp, err := w.client.Do(req)
	if idle != nil {
		idle.Stop()
	}
	if err != nil {
		// The error repeats the URL (or a redirect's), whose query often
		// holds an API key; it goes to logs and Status.LastError, which
		// /api/status and /readyz serve.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = logging.RedactURL(ue.URL)
		}
		if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
			return 0, fmt.Errorf("waiting for response headers: %w", ErrIdleTimeout)
		}
		if errors.Is(err, ErrBadRedirect) {
			return 0, err
		}
		if strings.Contains(err.Error(), "Location header") {
			return 0, fmt.Errorf("%w: %v", ErrBadRedirect, err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return 0, err
	}

	w.setConnected()
	w.log.Info("source connected", "url", w.cfg.URL, "last_event_id", lastID)

	var body io.Reader = &idleReader{r: resp.Body, timer: idle, idle: w.cfg.IdleTimeout, bytes: w.m.bytes}
	if isGzip(resp) {
		body = &gzipBody{r: body}
	}
	d := sse.NewDecoder(body)
	if w.cfg.MaxEventSize > 0 {
		d.SetMaxEventSize(w.cfg.MaxEventSize)
	}
	if haveID {
		// The last event ID persists across reconnections (as in a
		// browser), so events without an id field carry it. The decoder
		// starts from a placeholder no id field can hold, replaced by
		// lastID below, so that an event that carries lastID in an id
		// field of its own (a feed resuming inclusively resends the event
		// Last-Event-ID names) is told from one that inherits it.
		d.SetLastEventID(noOwnID)
	}
	d.OnRetry(w.onRetry)
	limit := w.cfg.chunkLimit()
	c := w.newChunk()
	var comments []comment // read during the current ReadBatch
	if w.cfg.OnComment != nil {
		d.OnComment(func(text string) {
			if len(c.batch.Events) > 0 {
				comments = append(comments, comment{at: len(c.batch.Events), text: text})
				return
			}
			// ReadBatch waits for an event: a comment that comes first
			// (a keep-alive) must not wait with it. In a chunk of its
			// own, since ReadBatch is filling c.
			cc := w.newChunk()
			cc.items = append(cc.items, item{kind: kindComment, text: text})
			if !w.pushChunk(connCtx, cc) {
				w.recycle(cc)
			}
		})
	}
	n := 0
	prevID := noOwnID // the stream's last event ID before the next event, owned
	for {
		err := d.ReadBatch(&c.batch, limit)
		if k := len(c.batch.Events); k > 0 {
			n += k
			prevID = w.fillChunk(c, comments, prevID, lastID)
			comments = comments[:0]
			if !w.pushChunk(connCtx, c) {
				if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
					return n, ErrIdleTimeout
				}
				return n, ctx.Err()
			}
			c = w.newChunk()
		}
		if errors.Is(err, sse.ErrEventTooLarge) {
			w.m.tooLarge.Inc()
			w.mu.Lock()
			w.st.Failed++
			w.mu.Unlock()
			w.log.Warn("event too large, skipped", "max_event_size", w.cfg.MaxEventSize, "error", err)
			continue
		}
		if err != nil {
			w.recycle(c)
			if errors.Is(context.Cause(connCtx), ErrIdleTimeout) {
				return n, ErrIdleTimeout
			}
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("reading stream: %w", err)
		}
	}
}

// comment is a comment line read after at events of a batch.
type comment struct {
	at   int
	text string
}

// fillChunk turns the events ReadBatch put in c.batch, and the comments
// read among them, into c's items, in stream order, and counts them.
// prevID is the stream's last event ID before the batch and lastID the ID
// the connection resumed from. It returns the stream's last event ID after
// the batch, in memory of its own: the batch's is reused once released.
func (w *Worker) fillChunk(c *chunk, comments []comment, prevID, lastID string) string {
	evs := c.batch.Events
	now := time.Now() // one clock read for a batch decoded at once
	filtered := 0
	prev := prevID
	for i := range evs {
		for len(comments) > 0 && comments[0].at <= i {
			c.items = append(c.items, item{kind: kindComment, text: comments[0].text})
			comments = comments[1:]
		}
		ev := evs[i]
		fwd := w.filter == nil || w.filter[ev.Type]
		if !fwd {
			filtered++
		}
		inherited := message.InheritsID(ev.ID, prev)
		prev = ev.ID
		if ev.ID == noOwnID {
			ev.ID, inherited = lastID, lastID != ""
		}
		c.items = append(c.items, item{kind: kindEvent, forward: fwd,
			msg: message.Message{Pipeline: w.cfg.Name, Event: ev, ReceivedAt: now, InheritedID: inherited}})
	}
	for _, cm := range comments {
		c.items = append(c.items, item{kind: kindComment, text: cm.text})
	}
	w.m.received.Add(float64(len(evs)))
	if filtered > 0 {
		w.m.filtered.Add(float64(filtered))
	}
	w.mu.Lock()
	w.st.Received += uint64(len(evs))
	w.st.Filtered += uint64(filtered)
	w.mu.Unlock()
	if prev != prevID {
		prevID = strings.Clone(prev)
	}
	return prevID
}

// newChunk returns an empty chunk, a recycled one when there is one.
func (w *Worker) newChunk() *chunk {
	select {
	case c := <-w.free:
		return c
	default:
		return &chunk{items: make([]item, 0, w.cfg.chunkLimit())}
	}
}

// recycle releases c's events to the decoder's memory and keeps c for the
// reader's next chunk. Only once the sink is done with the events.
func (w *Worker) recycle(c *chunk) {
	c.batch.Release()
	clear(c.items)
	c.items = c.items[:0]
	select {
	case w.free <- c:
	default:
	}
}

// noOwnID is the decoder's last event ID until the stream sends an id
// field: WHATWG ignores an id field holding U+0000, so no event can carry
// it but by inheriting it from before the connection.
const noOwnID = "\x00"

// pushChunk hands c to the writer, waiting while the sink is failing or
// the queue is full; false when ctx ended first (c is then the caller's).
func (w *Worker) pushChunk(ctx context.Context, c *chunk) bool {
	for {
		w.mu.Lock()
		ch := w.resume
		w.mu.Unlock()
		if ch == nil {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	k := uint64(len(c.items))
	w.mu.Lock()
	w.enqueued += k
	w.mu.Unlock()
	select {
	case w.queue <- c:
		return true
	case <-ctx.Done():
		w.mu.Lock()
		w.enqueued -= k
		w.mu.Unlock()
		return false
	}
}

// report passes a connection error to OnError through the queue, so it is
// seen after every event received before it.
func (w *Worker) report(ctx context.Context, err error) {
	if w.cfg.OnError != nil {
		c := w.newChunk()
		c.items = append(c.items, item{kind: kindError, err: err})
		if !w.pushChunk(ctx, c) {
			w.recycle(c)
		}
	}
}

func (w *Worker) waitDrained(ctx context.Context) error {
	for {
		w.mu.Lock()
		drained := w.done == w.enqueued
		w.mu.Unlock()
		if drained {
			return nil
		}
		select {
		case <-w.progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *Worker) recordError(err error) {
	w.mu.Lock()
	w.st.LastError = err.Error()
	w.st.LastErrorAt = time.Now()
	w.mu.Unlock()
}
