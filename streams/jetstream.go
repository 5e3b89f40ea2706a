package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/bridge/config"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
)

// jsBackend serves a JetStream stream. Each subscriber gets its own ordered
// consumer (ephemeral, in memory, no acks), which is what lets it start at
// any sequence and survive broker restarts without a gap.
type jsBackend struct {
	js      jetstream.JetStream
	stream  string
	subject string // "" serves every subject of the stream
	path    string
	log     *slog.Logger
}

func newJetStreamBackend(nc *nats.Conn, c config.Stream, log *slog.Logger) (*jsBackend, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &jsBackend{js: js, stream: c.NATS.JetStream.Stream, subject: c.NATS.Subject, path: c.Path, log: log}, nil
}

func (b *jsBackend) kind() string { return "jetstream" }

func (b *jsBackend) subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error) {
	filter := b.subject
	if req.subject != "" {
		if b.subject != "" && !subjectWithin(req.subject, b.subject) {
			return feed{}, fmt.Errorf("%w: subject %q is not within this stream's subject %q", ErrBadRequest, req.subject, b.subject)
		}
		filter = req.subject
	}
	cfg := jetstream.OrderedConsumerConfig{
		// A consumer left behind by a crash disappears on its own.
		InactiveThreshold: time.Minute,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}

	var seq uint64
	if req.lastEventID != "" {
		var err error
		seq, err = strconv.ParseUint(req.lastEventID, 10, 64)
		if err != nil {
			return feed{}, fmt.Errorf("%w: %q is not a JetStream sequence number", ErrInvalidLastEventID, req.lastEventID)
		}
	}
	// Reading the stream's state (not a cached one) is also the check that
	// JetStream answers at all, before the consumer is created.
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return feed{}, fmt.Errorf("%w: JetStream stream %q: %v", ErrUnavailable, b.stream, err)
	}
	info := st.CachedInfo()
	if filter != "" && !overlapsAny(filter, info.Config.Subjects) {
		// The broker accepts a consumer filtered on a subject the stream
		// never stores: the client would get 200 and then nothing, ever.
		// The filter is the client's mistake, or the configuration's.
		kind := ErrBadRequest
		if req.subject == "" {
			kind = ErrUnavailable
		}
		return feed{}, fmt.Errorf("%w: subject %q matches none of the subjects of JetStream stream %q (%s)",
			kind, filter, b.stream, strings.Join(info.Config.Subjects, ", "))
	}
	state := info.State
	var start string
	switch {
	case req.lastEventID != "":
		if seq > state.LastSeq {
			return feed{}, fmt.Errorf("%w: sequence %d is beyond the last one of JetStream stream %q (%d); was the stream recreated?",
				ErrInvalidLastEventID, seq, b.stream, state.LastSeq)
		}
		next := seq + 1
		if next < state.FirstSeq {
			// The messages after seq are gone: start at the oldest the
			// stream still has rather than wait for a sequence that will
			// never come.
			metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
			b.log.Warn("resume position no longer retained, starting at the earliest message",
				"stream", b.path, "last_event_id", seq, "first_seq", state.FirstSeq)
			next = state.FirstSeq
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = next
	case !req.since.IsZero():
		t := req.since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	default:
		// Start right after the stream's last message rather than with
		// DeliverNew, so that the id announced to the client (LastSeq) and
		// the consumer's start agree exactly: a client that drops before
		// its first event resumes from that id with no gap. Messages
		// published since the stream info was read are delivered, not
		// skipped. An empty stream has LastSeq 0, which resumes from 1.
		seq = state.LastSeq
		start = strconv.FormatUint(seq, 10)
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = seq + 1
	}

	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return feed{}, fmt.Errorf("%w: JetStream consumer on %q: %v", ErrUnavailable, b.stream, err)
	}
	// Consume creates the consumer on the server before it returns, which
	// is what puts the subscription in place before the headers go out.
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			sub.fail(fmt.Errorf("message metadata: %w", err))
			return
		}
		m := message{subject: msg.Subject(), data: msg.Data(), seq: md.Sequence.Stream}
		if h := msg.Headers(); h != nil {
			m.typ = h.Get(sinks.HeaderEvent)
		}
		sub.offer(m)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// The ordered consumer recreates itself after heartbeats are
		// missed or the server restarts; only a closed connection ends it
		// for good, and then the client must reconnect to resume.
		if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) {
			sub.fail(err)
			return
		}
		b.log.Debug("JetStream consumer error", "stream", b.path, "err", err)
	}))
	if err != nil {
		return feed{}, fmt.Errorf("%w: JetStream consume %q: %v", ErrUnavailable, b.stream, err)
	}
	f := newFeed(&seqCursor{seq: seq}, func() {
		cc.Stop()
		<-cc.Closed()
		// Delete the server-side consumer now rather than leave it for
		// InactiveThreshold: busy sites see many short subscriptions.
		if info := cons.CachedInfo(); info != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = b.js.DeleteConsumer(ctx, b.stream, info.Name)
		}
	})
	f.start = start
	return f, nil
}

func (b *jsBackend) close() {}

// overlapsAny reports whether some subject matched by pattern is also
// matched by one of subjects. A stream without subjects of its own (a
// mirror, or one only sourcing others) stores whatever it copies, so any
// pattern may match there.
func overlapsAny(pattern string, subjects []string) bool {
	if len(subjects) == 0 {
		return true
	}
	for _, s := range subjects {
		if subjectsOverlap(pattern, s) {
			return true
		}
	}
	return false
}

// seqCursor's id is the stream sequence of the last message.
type seqCursor struct{ seq uint64 }

func (c *seqCursor) advance(m *message) { c.seq = m.seq }
func (c *seqCursor) id() string         { return strconv.FormatUint(c.seq, 10) }
