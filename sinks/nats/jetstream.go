package nats

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// ctxOr reports the caller's context error when ctx ended (rather than the
// internal ack timeout it caused), else err wrapped by connErr.
func (s *Sink) ctxOr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return s.connErr(what, err)
}

// writeJetStream keeps up to maxInFlight publishes outstanding and consumes
// their acks strictly in order: n is the acknowledged prefix. A failure
// stops the batch; publishes already in flight behind it may still land,
// which the Nats-Msg-Id makes harmless when the caller retries.
//
// Order in the stream needs two more things. nats.go's own retry of a
// publish that met no responders (JetStream not ready yet after a server
// restart) is off: it resends that one message 250 ms later, after the
// ones behind it, so the stream would store them out of order. And after a
// failed write the stream may still be coming back, refusing a message
// while taking the ones published just after it: the next write publishes
// its first message alone and opens the window only once that one is
// acknowledged.
func (s *Sink) writeJetStream(ctx context.Context, msgs []sinks.Message) (n, acked int, err error) {
	env := route.NewEnv(nil)
	type slot struct {
		fut  jetstream.PubAckFuture // nil: skipped
		subj string
	}
	window := make([]slot, 0, min(s.maxInFlight, len(msgs)))
	limit := s.maxInFlight
	if s.probe {
		limit = 1
	}
	ok := func(ack *jetstream.PubAck) {
		n, acked, limit = n+1, acked+1, s.maxInFlight
		if ack != nil && ack.Duplicate {
			s.duplicate(ack)
		}
	}
	// A refused publish never gets its PubAck; its -ERR (recorded by
	// perms) ends the wait early instead of the ack timeout.
	var mark natsconn.Mark
	var refusal <-chan struct{}
	sawRefusal := false // an error was recorded since mark: check each head
	if s.perms != nil {
		sctx, cancel := ackContext(ctx)
		mark, err = s.perms.Sync(sctx)
		cancel()
		if err != nil {
			return 0, 0, s.connErr("permission check", err)
		}
		refusal = s.perms.Changed()
	}
	// One timer for the whole batch: the publisher's own ack timeout
	// normally fires first; this guards against a future never resolved.
	timer := time.NewTimer(AckTimeout)
	defer timer.Stop()
	resolve := func() error {
		head := window[0]
		window = window[1:]
		if head.fut == nil {
			n++
			return nil
		}
		timer.Reset(AckTimeout)
		// deny settles a head whose subject was refused: failed, unless
		// its ack came after all (the refusal was an older publish's).
		deny := func() error {
			select {
			case ack := <-head.fut.Ok():
				ok(ack)
				return nil
			default:
			}
			s.log.Warn("nats server refused publish: permission denied; the events are retried, not checkpointed",
				"pipeline", s.pipeline, "subject", head.subj, "delivered", acked)
			return retry.MarkPermanent(fmt.Errorf("nats jetstream publish %q: %w", head.subj, ErrPermissionDenied))
		}
		if sawRefusal && s.perms.RefusedSince(mark, head.subj) {
			return deny()
		}
		for {
			select {
			case ack := <-head.fut.Ok():
				ok(ack)
				return nil
			case err := <-head.fut.Err():
				return s.connErr(fmt.Sprintf("jetstream publish %q", head.subj), err)
			case <-ctx.Done():
				return fmt.Errorf("nats jetstream publish %q: waiting for ack: %w", head.subj, ctx.Err())
			case <-timer.C:
				return s.connErr(fmt.Sprintf("jetstream publish %q", head.subj), jetstream.ErrAsyncPublishTimeout)
			case <-refusal:
				refusal, sawRefusal = s.perms.Changed(), true
				if s.perms.RefusedSince(mark, head.subj) {
					return deny()
				}
			}
		}
	}
	for i := range msgs {
		for len(window) >= limit {
			if err := resolve(); err != nil {
				return n, acked, err
			}
		}
		p := s.prepare(env, msgs, i)
		if p.skip {
			window = append(window, slot{})
			continue
		}
		fut, err := s.js.PublishMsgAsync(p.msg, s.pubOpts...)
		if err != nil {
			// Settle what is already in flight so n is as large as it can
			// truthfully be, then report the failure.
			for len(window) > 0 {
				if rerr := resolve(); rerr != nil {
					return n, acked, rerr
				}
			}
			return n, acked, s.connErr(fmt.Sprintf("jetstream publish %q", p.msg.Subject), err)
		}
		window = append(window, slot{fut: fut, subj: p.msg.Subject})
	}
	for len(window) > 0 {
		if err := resolve(); err != nil {
			return n, acked, err
		}
	}
	return n, acked, nil
}

// duplicate counts and logs a publish JetStream acknowledged without
// storing it, because a message with the same Nats-Msg-Id is already in
// the stream: the event is stored, once.
func (s *Sink) duplicate(ack *jetstream.PubAck) {
	s.duplicates.Inc()
	if ok, more := s.dupLog.Allow(); ok {
		s.log.Warn("jetstream dropped a duplicate: an identical event (same id, type and data) is already stored",
			"pipeline", s.pipeline, "stream", ack.Stream, "stored_seq", ack.Sequence, "more_since_last_line", more)
	}
}
