package nats

import (
	"context"
	"fmt"
	"time"

	gonats "github.com/nats-io/nats.go"
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
// which the Nats-Msg-Id makes harmless when the caller retries: they are
// stored once. Not always in order, though: when the stream refused the
// failed message for a reason that ends while those behind it are still
// in flight (a full stream with discard new that frees room at that very
// moment), they are stored before its retry. The publishing itself is
// jsPublisher's.
//
// Order in the stream needs two more things. A publish that met no
// responders (JetStream not ready yet after a server restart) is never
// retried by the publisher (nats.go's asynchronous publisher would resend
// it 250 ms later, after the ones behind it, and the stream would store
// them out of order): it fails the write. And after a failed write the
// stream may still be coming back, refusing a message while taking the
// ones published just after it: the next write publishes its first message
// alone and opens the window only once that one is acknowledged.
func (s *Sink) writeJetStream(ctx context.Context, msgs []sinks.Message) (n, acked int, err error) {
	p := s.jsp
	if err := p.open(); err != nil {
		return 0, 0, s.connErr("jetstream", err)
	}
	// A reconnection before this write concerns nothing of it: nothing
	// is in flight between writes.
	for len(p.status) > 0 {
		<-p.status
	}
	limit := s.maxInFlight
	if s.probe {
		limit = 1
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
	defer func() {
		if err != nil {
			p.abandon()
		}
	}()
	base := p.tail // msgs[i] is sequence number base+i
	// collect settles the answered head of the window, in order.
	collect := func() error {
		for p.head != p.tail {
			sl := p.slot(p.head)
			switch sl.state {
			case slotPending:
				return nil
			case slotFailed:
				return s.connErr(fmt.Sprintf("jetstream publish %q", sl.subj), sl.err)
			case slotStored:
				acked, limit = acked+1, s.maxInFlight
			case slotDup:
				acked, limit = acked+1, s.maxInFlight
				s.duplicate(sl.ack)
			}
			*sl = pubSlot{}
			p.head++
		}
		return nil
	}
	// denied reports whether the head's subject was refused since mark
	// (its ack, were it coming, would be there: see drain before).
	denied := func() error {
		if !sawRefusal || p.head == p.tail {
			return nil
		}
		sl := p.slot(p.head)
		if sl.state != slotPending || !s.perms.RefusedSince(mark, sl.subj) {
			return nil
		}
		s.log.Warn("nats server refused publish: permission denied; the events are retried, not checkpointed",
			"pipeline", s.pipeline, "subject", sl.subj, "delivered", acked)
		return retry.MarkPermanent(fmt.Errorf("nats jetstream publish %q: %w", sl.subj, ErrPermissionDenied))
	}
	env := route.NewEnv(nil)
	maxPayload := s.nc.MaxPayload()
	// The Nats-Msg-Id hashes of the whole batch, four messages at a time.
	s.hashes, s.hashIdx = msgHashes(s.hashes, s.hashIdx, msgs)
	// One timer for the whole batch, restarted whenever the head moves:
	// AckTimeout without an answer fails the write.
	timer := time.NewTimer(AckTimeout)
	defer timer.Stop()
	timedHead := p.head
	next := 0 // msgs[next] is the next to publish
	var pubErr error
	for {
		p.drain()
		if err := collect(); err != nil {
			return int(p.head - base), acked, err
		}
		if err := denied(); err != nil {
			return int(p.head - base), acked, err
		}
		if pubErr == nil && next < len(msgs) && p.inFlight() < limit {
			m := &msgs[next]
			next++
			subj, ok := s.prepareJS(env, m, s.hashes[next-1], maxPayload)
			if !ok {
				p.skip()
				continue
			}
			if err := p.publish(subj, m.Event.Data); err != nil {
				// Settle what is already in flight so n is as large as it
				// can truthfully be, then report the failure.
				pubErr = s.connErr(fmt.Sprintf("jetstream publish %q", subj), err)
			}
			continue
		}
		if p.inFlight() == 0 {
			break
		}
		if p.head != timedHead {
			timer.Reset(AckTimeout)
			timedHead = p.head
		}
		head := p.slot(p.head).subj
		select {
		case m := <-p.acks:
			p.record(m)
		case <-ctx.Done():
			return int(p.head - base), acked, fmt.Errorf("nats jetstream publish %q: waiting for ack: %w", head, ctx.Err())
		case <-timer.C:
			return int(p.head - base), acked, s.connErr(fmt.Sprintf("jetstream publish %q", head), jetstream.ErrAsyncPublishTimeout)
		case <-refusal:
			refusal, sawRefusal = s.perms.Changed(), true
		case st := <-p.status:
			cause := gonats.ErrDisconnected
			if st == gonats.CLOSED {
				cause = gonats.ErrConnectionClosed
			}
			return int(p.head - base), acked, s.connErr(fmt.Sprintf("jetstream publish %q", head), cause)
		}
	}
	n = int(p.head - base)
	if pubErr != nil {
		return n, acked, pubErr
	}
	return n, acked, nil
}

// prepareJS routes m and fills the publisher's headers for it, h being
// its MsgID hash (see msgHashes), or decides to skip it (unroutable or
// larger than the server takes; counted and logged).
func (s *Sink) prepareJS(env *route.Env, m *sinks.Message, h uint64, maxPayload int64) (subject string, ok bool) {
	subj, ok := s.route(env, m)
	if !ok || !s.fits(m, s.jsp.hdr.fill(m, needsMsgID(m), h), maxPayload) {
		return "", false
	}
	return subj, true
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
