package nats

import (
	"context"
	"fmt"

	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/retry"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// writeCore publishes the whole batch then waits for one PONG: NATS
// processes a connection's commands in order, so the PONG proves the server
// has every message before it, and has already sent the -ERR of every PUB
// it refused. Those refusals are looked up by subject (see the package
// documentation); refused is how many of the batch's messages went to a
// refused subject. Nothing finer is known on other failures, so n is then 0
// (plus leading skipped messages).
func (s *Sink) writeCore(ctx context.Context, msgs []sinks.Message) (n, acked, refused int, err error) {
	fctx, cancel := ackContext(ctx)
	defer cancel()
	// Position in the connection's refusal history before the first PUB:
	// refusals recorded after it may be ours.
	var mark natsconn.Mark
	if s.perms != nil {
		if mark, err = s.perms.Sync(fctx); err != nil {
			return 0, 0, 0, s.ctxOr(ctx, "permission check", err)
		}
	}
	reconnects := s.nc.Stats().Reconnects
	env := route.NewEnv(nil)
	subjects := s.subjects[:0] // "" for a skipped message
	for range msgs {
		subjects = append(subjects, "")
	}
	s.subjects = subjects
	defer clear(s.subjects)
	leadingSkips, sent := 0, 0
	maxPayload := s.nc.MaxPayload()
	for i := range msgs {
		nm := s.prepare(env, &msgs[i], maxPayload)
		if nm == nil {
			if sent == 0 {
				leadingSkips++
			}
			continue
		}
		if err := s.nc.PublishMsg(nm); err != nil {
			return leadingSkips, 0, 0, s.connErr(fmt.Sprintf("publish %q", nm.Subject), err)
		}
		subjects[i] = nm.Subject
		sent++
	}
	if sent == 0 {
		return len(msgs), 0, 0, nil
	}
	if err := s.nc.FlushWithContext(fctx); err != nil {
		return leadingSkips, 0, 0, s.ctxOr(ctx, "flush", err)
	}
	// PUBs written to a connection that then dropped may never have
	// reached a server although the PONG came (from the new connection);
	// a reconnect also clears what Sync relies on. Send the batch again.
	if s.nc.Stats().Reconnects != reconnects {
		return leadingSkips, 0, 0, fmt.Errorf("%w: nats: reconnected during the batch, resending it", sinks.ErrNotConnected)
	}
	if s.perms == nil {
		return len(msgs), sent, 0, nil
	}
	if _, err := s.perms.Sync(fctx); err != nil {
		return leadingSkips, 0, 0, s.ctxOr(ctx, "permission check", err)
	}
	first := -1
	// Most batches go to one subject or a few: ask once per run of one.
	prev, prevRefused := "", false
	for i, subj := range subjects {
		if subj == "" {
			continue
		}
		if subj != prev {
			prev, prevRefused = subj, s.perms.RefusedSince(mark, subj)
		}
		if prevRefused {
			if first < 0 {
				first = i
			}
			refused++
		}
	}
	if first < 0 {
		return len(msgs), sent, 0, nil
	}
	for _, subj := range subjects[:first] {
		if subj != "" {
			acked++
		}
	}
	subj := subjects[first]
	s.log.Warn("nats server refused publish: permission denied; the events are retried, not checkpointed",
		"pipeline", s.pipeline, "subject", subj, "id", msgs[first].Event.ID, "refused", refused, "delivered", acked)
	return first, acked, refused, retry.MarkPermanent(fmt.Errorf("nats publish %q: %w", subj, ErrPermissionDenied))
}
