package sources

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ssebridge/ssebridge/internal/retry"
)

// The writer: one goroutine per Worker that hands queued events to the sink
// in order, retries what it did not acknowledge, and reports what it did
// to the checkpointer.

// writeLoop delivers the queue to the sink under ctx, which outlives
// runCtx (Run's) by the shutdown flush. Checkpoints are the
// checkpointer's: the loop only reports what was acknowledged.
//
// It hands the sink batches of up to BatchSize events, made of whole
// queued chunks when they fit (or the part of one that does), and
// recycles a chunk once all its items were handled. After an error the
// chunks it holds are left to the garbage collector, not recycled: a sink
// whose Write was cancelled may still be reading them.
func (w *Worker) writeLoop(ctx, runCtx context.Context) error {
	var held []*chunk // received chunks not yet handled, in order
	off := 0          // held[0].items[:off] are handled
	var batch []item
	closed := false
	for {
		if len(held) == 0 {
			if closed {
				return nil
			}
			c, ok := <-w.queue
			if !ok {
				return nil
			}
			held, off = append(held, c), 0
		}
		// While the store fails, never past MaxUnsaved unsaved events
		// (hold waits at it), even within a batch.
		limit := max(1, min(w.cfg.BatchSize, w.ck.room()))
		have := len(held[0].items) - off
		for _, c := range held[1:] {
			have += len(c.items)
		}
	fill:
		for !closed && have < limit {
			select {
			case c, ok := <-w.queue:
				if !ok {
					closed = true
					break fill
				}
				held = append(held, c)
				have += len(c.items)
			default:
				break fill
			}
		}
		// The batch: the first chunk's items in place when it alone
		// fills it, a copy of several chunks' otherwise.
		var seg []item
		done, end := 0, off // held[:done] are handled by seg, then held[done].items[:end]
		if first := held[0].items[off:]; len(first) >= limit || len(held) == 1 {
			end = off + min(limit, len(first))
			seg = held[0].items[off:end]
		} else {
			batch = batch[:0]
			for done < len(held) && len(batch) < limit {
				items := held[done].items[end:]
				take := min(limit-len(batch), len(items))
				batch = append(batch, items[:take]...)
				end += take
				if end < len(held[done].items) {
					break
				}
				done, end = done+1, 0
			}
			seg = batch
		}
		if done < len(held) && end == len(held[done].items) {
			done, end = done+1, 0
		}
		err := w.process(ctx, seg)
		clear(batch) // drop references to delivered data
		if err != nil {
			return err
		}
		for _, c := range held[:done] {
			w.recycle(c)
		}
		n := copy(held, held[done:])
		clear(held[n:])
		held, off = held[:n], end
		if closed && len(held) == 0 {
			return nil
		}
		if err := w.ck.hold(runCtx, func(p bool) { w.setPaused(p, nil) }); err != nil {
			return err
		}
	}
}

// process delivers a batch in order: runs of events go to the sink, the
// comment and error entries to their hooks in between.
func (w *Worker) process(ctx context.Context, batch []item) error {
	start := 0
	for i, it := range batch {
		if it.kind == kindEvent {
			continue
		}
		if err := w.deliver(ctx, batch[start:i]); err != nil {
			return err
		}
		start = i + 1
		switch it.kind {
		case kindComment:
			w.cfg.OnComment(it.text)
		case kindError:
			w.cfg.OnError(it.err)
		}
		w.markDone(1)
	}
	return w.deliver(ctx, batch[start:])
}

// deliver writes the forwarded events of seg until the sink acknowledged
// them all, retrying the rest with backoff, and advances the acknowledged
// ID as it goes. Filtered events advance it once everything before them is
// acknowledged.
func (w *Worker) deliver(ctx context.Context, seg []item) error {
	if len(seg) == 0 {
		return nil
	}
	msgs, idx := w.msgBuf[:0], w.idxBuf[:0]
	for i, it := range seg {
		if it.forward {
			msgs = append(msgs, it.msg)
			idx = append(idx, i)
		}
	}
	w.msgBuf, w.idxBuf = msgs, idx
	defer clear(w.msgBuf)

	pos := 0 // seg[:pos] are handled
	ack := func(upto int, forwarded int) {
		for upto < len(seg) && !seg[upto].forward {
			upto++
		}
		if upto <= pos {
			return
		}
		id := seg[upto-1].msg.Event.ID
		w.mu.Lock()
		// The event's memory is reused once its chunk is handled: keep a
		// copy, only when the ID changed.
		if id == w.st.LastEventID {
			id = w.st.LastEventID
		} else {
			id = strings.Clone(id)
		}
		w.st.LastEventID, w.st.HasLastEventID = id, true
		w.st.Forwarded += uint64(forwarded)
		w.mu.Unlock()
		w.ck.acked(id, upto-pos)
		pos = upto
	}
	ack(0, 0)
	off := 0
	failing := false
	for off < len(msgs) {
		if w.cfg.Fence != nil {
			if err := w.cfg.Fence(); err != nil {
				return fmt.Errorf("sink: %d events not delivered: %w", len(msgs)-off, err)
			}
		}
		n, err := w.sink.Write(ctx, msgs[off:])
		n = min(max(n, 0), len(msgs)-off)
		if n > 0 {
			now := time.Now()
			for _, m := range msgs[off : off+n] {
				w.m.lag.Observe(now.Sub(m.ReceivedAt).Seconds())
			}
			w.m.forwarded.Add(float64(n))
			off += n
			ack(idx[off-1]+1, n)
		}
		if err == nil && off < len(msgs) {
			err = errShortWrite
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sink: %d events not delivered: %w", len(msgs)-off, err)
		}
		if !failing {
			failing = true
			w.sinkBo.Reset()
		}
		// What the broker acknowledged before failing is saved now, not
		// when it comes back: a crash during the outage must not replay it.
		w.ck.wake()
		w.setPaused(true, err)
		delay := w.sinkBo.NextBackOff()
		switch class := retry.Classify(err); class {
		case retry.NotConnected:
			// Nothing to fix but the broker's return: look again soon so
			// the feed resumes within a second of it.
			delay = min(delay, notConnectedRetry)
			w.log.Warn("broker not connected, retrying", "pending", len(msgs)-off, "delay", delay, "error", err)
		case retry.Permanent:
			// Someone must change something (a permission, say): retry
			// rarely, and say so loudly.
			delay = w.cfg.RetryMax
			w.log.Error("sink refused the events; retrying until it accepts them", "pending", len(msgs)-off, "delay", delay, "error", err)
		default:
			w.log.Warn("sink write failed, retrying", "pending", len(msgs)-off, "delay", delay, "error", err)
		}
		if serr := w.cfg.Sleep(ctx, delay); serr != nil {
			return fmt.Errorf("sink: %d events not delivered: %w", len(msgs)-off, err)
		}
	}
	if failing {
		w.log.Info("sink recovered")
		w.setPaused(false, nil)
	}
	w.markDone(len(seg))
	return nil
}

func (w *Worker) markDone(k int) {
	w.mu.Lock()
	w.done += uint64(k)
	w.mu.Unlock()
	select {
	case w.progress <- struct{}{}:
	default:
	}
}
