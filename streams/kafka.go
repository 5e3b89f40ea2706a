package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// readerMaxWait bounds one fetch long-poll. A partition's reader returns as
// soon as it has data; this only caps how long an idle fetch holds a broker
// connection before it is renewed.
const readerMaxWait = 2 * time.Second

// Bounds of the watch that ends subscribers whose partition log went below
// their position.
const (
	// kafkaWatchEvery spaces the watch's look-ups; it is about how late a
	// connected client learns that its topic was recreated or truncated.
	kafkaWatchEvery = 2 * time.Second
	// kafkaWatchTimeout bounds one look-up (metadata and end offsets).
	kafkaWatchTimeout = 5 * time.Second
)

// errLogBelow ends a subscription whose partition log now ends before the
// subscriber's position: the topic was deleted and recreated (offsets start
// again at 0) or truncated (unclean leader election). kafka-go's reader
// would wait, on heartbeats, until the new log reaches the old offset and
// then skip everything before it. The client reconnects with its
// Last-Event-ID, whose offset is then beyond the end, and starts that
// partition at its earliest offset.
var errLogBelow = errors.New("the Kafka partition log ends before the subscriber's position (topic recreated or truncated?)")

// errPartitionsChanged ends a subscription whose topic now has other
// partitions than when it started: its readers would never read a partition
// added since, nor stop waiting on one that is gone. The reconnect reads the
// partitions the topic has then, a new one from its first offset.
var errPartitionsChanged = errors.New("the Kafka topic's partitions changed")

// kafkaShared is the cluster access shared by every Kafka stream: a client
// for metadata and offsets, and the dialer the partition readers use.
type kafkaShared struct {
	brokers   []string
	client    *kafka.Client
	transport *kafka.Transport
	dialer    *kafka.Dialer
}

func newKafkaShared(c KafkaCluster) (*kafkaShared, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("no brokers")
	}
	// The runner builds the transport and the dialer (client_id, SASL and
	// TLS exactly as the sinks have them); a copy of the transport is
	// kept, since its metadata TTL is set here.
	tr := &kafka.Transport{}
	if c.Transport != nil {
		tr = cloneTransport(c.Transport)
	}
	// The client answers metadata requests from the transport's cache; the
	// watch (see kafkaBackend) sees a topic's new partitions and leaders
	// only once it is refreshed, so refresh it at the watch's pace rather
	// than kafka-go's 6 s. One metadata request per interval, however many
	// streams and subscribers.
	if tr.MetadataTTL == 0 {
		tr.MetadataTTL = kafkaWatchEvery
	}
	d := c.Dialer
	if d == nil {
		d = &kafka.Dialer{Timeout: 10 * time.Second}
	}
	return &kafkaShared{
		brokers:   c.Brokers,
		transport: tr,
		client:    &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: 10 * time.Second},
		dialer:    d,
	}, nil
}

// cloneTransport copies the settings of t, not its connection pool.
func cloneTransport(t *kafka.Transport) *kafka.Transport {
	return &kafka.Transport{
		Dial:           t.Dial,
		DialTimeout:    t.DialTimeout,
		IdleTimeout:    t.IdleTimeout,
		MetadataTTL:    t.MetadataTTL,
		MetadataTopics: t.MetadataTopics,
		ClientID:       t.ClientID,
		TLS:            t.TLS,
		SASL:           t.SASL,
		Resolver:       t.Resolver,
		Context:        t.Context,
	}
}

// close drops the pooled connections of the metadata client.
func (k *kafkaShared) close() { k.transport.CloseIdleConnections() }

// kafkaBackend serves a Kafka topic. While it has subscribers, one reader
// per partition (never a consumer group, which would share the partitions
// out between subscribers and commit offsets nobody needs) reads the topic
// into the stream's tail, which every subscriber reads (see kafka_tail.go);
// a subscriber resuming from before the tail's window is caught up by
// partition readers of its own, which then hand it over to the tail.
//
// Offsets name no topic incarnation, so a reader cannot tell a recreated or
// truncated log from a quiet one. One watch per backend, running only while
// it has subscribers, looks up the topic's partitions and end offsets every
// kafkaWatchEvery with the shared client and ends the tail (and so its
// subscribers) or a catch-up whose position lies beyond an end
// (errLogBelow) or whose partitions changed (errPartitionsChanged): its
// broker load does not grow with the number of subscribers. A new log that
// has already grown past the old position before a look-up cannot be told
// apart from the old one; its first messages are then skipped, as they
// would be by any offset-based consumer.
type kafkaBackend struct {
	k     *kafkaShared
	topic string
	tag   uint32
	start string
	path  string
	log   *slog.Logger
	// watch checks the topic for the tail and the catch-ups (see
	// checkSubs); its interval is kafkaWatchEvery.
	watch *memberWatch[*kafkaSub]

	maxPending, winEvents, winBytes int

	sharedTail[*kafkaTail]
	// catchUps counts the catch-ups started, for tests.
	catchUps atomic.Int64
	// tailsStarted counts the tails started, for tests.
	tailsStarted atomic.Int64
}

// kafkaSub is what the watch knows of one reader of the topic: a tail or
// a subscriber's catch-up.
type kafkaSub struct {
	sub *subscriber
	cur *offsetCursor
	// end, when set, ends what is watched instead of sub (a tail).
	end func(error)
}

func newKafkaBackend(k *kafkaShared, c Config, log *slog.Logger) *kafkaBackend {
	b := &kafkaBackend{
		k: k, topic: c.Kafka.Topic, tag: topicTag(c.Kafka.Topic), start: c.Kafka.Start, path: c.Path, log: log,
		maxPending: c.MaxPending, winEvents: c.WindowEvents, winBytes: c.WindowBytes,
	}
	b.linger = defaultTailLinger
	if b.maxPending <= 0 {
		b.maxPending = DefaultMaxPending
	}
	if b.winEvents <= 0 {
		b.winEvents = DefaultWindowEvents
	}
	if b.winBytes <= 0 {
		b.winBytes = DefaultWindowBytes
	}
	b.watch = newMemberWatch[*kafkaSub](kafkaWatchEvery, b.checkSubs)
	return b
}

func (b *kafkaBackend) kind() string { return "kafka" }

func (b *kafkaBackend) sharesTail() {}

// close stops the watch and waits for it; every feed has stopped, so the
// tail and the catch-ups have too, and the client is shared.
func (b *kafkaBackend) close() {
	b.closeTails() // a lingering tail has no feed left to stop it
	b.watch.close()
}

// checkSubs looks up the topic's partitions and their end offsets once
// and ends every subscriber that can no longer go on from its position. A
// topic that is missing (deleted, not yet recreated) or a broker that does
// not answer ends nobody: the readers wait meanwhile, and the clients keep
// their heartbeats, since a reconnect would get 503, which ends an
// EventSource for good.
func (b *kafkaBackend) checkSubs(ctx context.Context) {
	subs := b.watch.snapshot()
	if len(subs) == 0 {
		return
	}
	// The positions are read before the ends: a reader goes on meanwhile,
	// and a record produced after the look-up would put it past the end
	// it was told, a truncation that never happened.
	seen := make([][]int64, len(subs))
	for i, s := range subs {
		seen[i] = s.cur.snapshot()
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaWatchTimeout)
	defer cancel()
	parts, err := b.partitions(ctx)
	if err == nil {
		var ends position
		if ends, err = b.offsets(ctx, parts, kafka.LastOffsetOf); err == nil {
			b.endBeyond(subs, seen, parts, ends)
			return
		}
	}
	if ctx.Err() == nil {
		b.log.Debug("Kafka topic missing or not answering; subscribers wait", "stream", b.path, "topic", b.topic, "err", err)
	}
}

// endBeyond ends the subscribers of subs, at positions seen (read before
// the look-up), that cannot go on in a topic with partitions parts
// (sorted) ending at ends.
func (b *kafkaBackend) endBeyond(subs []*kafkaSub, seen [][]int64, parts []int, ends position) {
	var ended int
	var first error
	for i, s := range subs {
		err := s.cur.check(parts, ends, seen[i])
		if err == nil {
			continue
		}
		if s.end != nil {
			s.end(err)
		} else {
			select {
			case <-s.sub.done:
				continue // already ending
			default:
			}
			s.sub.fail(err)
		}
		if ended == 0 {
			first = err
		}
		ended++
	}
	if ended > 0 {
		b.log.Warn("Kafka topic recreated or truncated? ending responses so that their clients resume at the earliest offsets",
			"stream", b.path, "topic", b.topic, "subscribers", ended, "err", first)
	}
}

func (b *kafkaBackend) subscribe(ctx context.Context, sub *subscriber, req *request) (feed, error) {
	if req.subject != "" {
		return feed{}, fmt.Errorf("%w: subject= narrows NATS streams; this is Kafka topic %q", ErrBadRequest, b.topic)
	}
	var resume position
	if req.lastEventID != "" {
		var err error
		if resume, err = decodeToken(req.lastEventID, b.tag); err != nil {
			return feed{}, err
		}
	}
	parts, err := b.partitionsSoon(ctx)
	if err != nil {
		return feed{}, err
	}
	first, err := b.offsets(ctx, parts, kafka.FirstOffsetOf)
	if err != nil {
		return feed{}, err
	}
	last, err := b.offsets(ctx, parts, kafka.LastOffsetOf)
	if err != nil {
		return feed{}, err
	}

	// Resolve a numeric start offset for every partition before answering:
	// "latest" read later would skip what is published in between.
	start := make(position, len(parts))
	switch {
	case resume != nil:
		var expired, beyond bool
		start, expired, beyond = resumeFrom(resume, parts, first, last)
		if expired || beyond {
			metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
		}
		if expired {
			b.log.Warn("resume position no longer retained, starting at the earliest retained offsets",
				"stream", b.path, "topic", b.topic)
		}
		if beyond {
			// Not a client error: a 400 would end an EventSource for
			// good, and waiting for the offset could mean forever.
			b.log.Warn("resume position beyond the end of a partition (topic recreated or truncated?), starting every partition at its earliest retained offset",
				"stream", b.path, "topic", b.topic, "last_event_id", req.lastEventID)
		}
	case !req.since.IsZero():
		at, err := b.timeOffsets(ctx, parts, req.since)
		if err != nil {
			return feed{}, err
		}
		for _, p := range parts {
			off, ok := at[p]
			if !ok || off < 0 {
				off = last[p] // nothing at or after since yet
			}
			start[p] = off
		}
	case b.start == "earliest":
		start = first
	default:
		start = last
	}

	t, err := b.acquireTail(parts, last)
	if err != nil {
		return feed{}, err
	}
	cur := newOffsetCursor(b.tag, start)
	f, err := b.place(t, sub, req, cur, start)
	if err != nil {
		t.leave(sub)
		b.release(t)
		return feed{}, err
	}
	return f, nil
}

// place puts sub on the tail t at start: at its head, inside its window,
// or behind a catch-up of its own.
func (b *kafkaBackend) place(t *kafkaTail, sub *subscriber, req *request, cur *offsetCursor, start position) (feed, error) {
	f := feed{cur: cur, tail: t.tail, kj: &kafkaJoin{}}
	// join (after a catch-up, or now) continues at the position the
	// handler holds.
	f.join = func(*message) error {
		kj, err := t.joinAt(sub, cursorPosition(cur))
		if err != nil {
			return err
		}
		if kj != nil {
			*f.kj = *kj
		}
		return nil
	}
	stopCatchUp := func() {}
	switch {
	case req.lastEventID == "" && req.since.IsZero() && b.start != "earliest":
		// Latest: the tail's head, whatever it is now; the id names it.
		id, err := t.joinHeadID(sub)
		if err != nil {
			return feed{}, fmt.Errorf("%w: kafka topic %q: %v", ErrUnavailable, b.topic, err)
		}
		f.start = id
		f.kj = nil
	case t.covers(start):
		if err := f.join(nil); err != nil {
			return feed{}, fmt.Errorf("%w: kafka topic %q: %v", ErrUnavailable, b.topic, err)
		}
	default:
		stop, err := b.catchUpKafka(t, sub, start)
		if err != nil {
			return feed{}, err
		}
		ks := &kafkaSub{sub: sub, cur: cur}
		b.watch.add(ks)
		stopCatchUp = func() {
			stop()
			b.watch.remove(ks)
		}
	}
	if f.start == "" {
		// The token of the start offsets resumes exactly there (a token
		// holds next offsets), whatever picked them: earliest, since=
		// or a resume.
		f.start = cur.id()
	}
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			stopCatchUp()
			t.leave(sub)
			b.release(t)
		})
	}
	return f, nil
}

// newReader is a reader of partition p from offset off.
func (b *kafkaBackend) newReader(p int, off int64) (*kafka.Reader, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   b.k.brokers,
		Topic:     b.topic,
		Partition: p,
		Dialer:    b.k.dialer,
		MinBytes:  1,
		MaxBytes:  10 << 20,
		MaxWait:   readerMaxWait,
		// A reader that reconnects (after the topic was deleted, say) to
		// a log that now ends before its offset reports it instead of
		// waiting until the log gets there.
		OffsetOutOfRangeError: true,
	})
	if err := r.SetOffset(off); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("%w: kafka reader for %s/%d: %v", ErrUnavailable, b.topic, p, err)
	}
	return r, nil
}

// cursorPosition is the position c holds.
func cursorPosition(c *offsetCursor) position {
	pos := make(position, len(c.parts))
	for i, p := range c.parts {
		pos[p] = c.offs[i]
	}
	return pos
}

// resumeFrom turns a resume token into a start offset per partition, given
// each partition's first retained and next (end) offset. expired reports
// that some partition had already dropped the token's position: that
// partition starts at its earliest retained offset, the others resume
// exactly. beyond reports that some partition now ends before the token's
// position, as after the topic was deleted and recreated (or truncated),
// where waiting for the position could mean waiting forever. Then every
// partition starts at its earliest retained offset: in a recreated topic
// the other partitions' positions also name messages of the old topic, and
// resuming there would skip the new topic's first messages. A truncated
// partition's neighbours are replayed instead, which repeats but loses
// nothing.
func resumeFrom(resume position, parts []int, first, last position) (start position, expired, beyond bool) {
	start = make(position, len(parts))
	for _, p := range parts {
		off, ok := resume[p]
		switch {
		case !ok:
			// A partition added after the token was issued holds only
			// messages newer than the token.
			off = first[p]
		case off > last[p]:
			beyond = true
		case off < first[p]:
			expired = true
			off = first[p]
		}
		start[p] = off
	}
	if beyond {
		for _, p := range parts {
			start[p] = first[p]
		}
	}
	return start, expired, beyond
}

// partitionsSoon is partitions, but gives a topic the client does not know
// the time its metadata cache takes to learn of it. A topic just created
// or recreated is served by the broker before the cache (refreshed every
// kafkaWatchEvery) has it, and a client whose response was ended because
// its topic was recreated reconnects right then: a 503 would end an
// EventSource for good. A topic that is really missing gets its 503 that
// much later.
func (b *kafkaBackend) partitionsSoon(ctx context.Context) ([]int, error) {
	deadline := time.Now().Add(2 * kafkaWatchEvery)
	for {
		parts, err := b.partitions(ctx)
		if !errors.Is(err, kafka.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return parts, err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

func (b *kafkaBackend) partitions(ctx context.Context) ([]int, error) {
	md, err := b.k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{b.topic}})
	if err != nil {
		return nil, fmt.Errorf("%w: kafka metadata of %q: %v", ErrUnavailable, b.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != b.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("%w: kafka topic %q: %w", ErrUnavailable, b.topic, t.Error)
		}
		parts := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
		if len(parts) == 0 {
			break
		}
		sort.Ints(parts)
		return parts, nil
	}
	return nil, fmt.Errorf("%w: kafka topic %q has no partitions", ErrUnavailable, b.topic)
}

// offsets lists one kind of offset for every partition. First and last
// offsets are asked in separate requests: a broker refuses a partition
// named twice in one ListOffsets request.
func (b *kafkaBackend) offsets(ctx context.Context, parts []int, of func(int) kafka.OffsetRequest) (position, error) {
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = of(p)
	}
	res, err := b.k.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("%w: kafka offsets of %q: %v", ErrUnavailable, b.topic, err)
	}
	out := make(position, len(parts))
	for _, po := range res.Topics[b.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("%w: kafka offsets of %s/%d: %v", ErrUnavailable, b.topic, po.Partition, po.Error)
		}
		if po.FirstOffset >= 0 {
			out[po.Partition] = po.FirstOffset
		} else {
			out[po.Partition] = po.LastOffset
		}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("%w: kafka offsets of %s/%d missing from the answer", ErrUnavailable, b.topic, p)
		}
	}
	return out, nil
}

// timeOffsets finds, per partition, the first offset whose timestamp is at
// or after t; -1 where there is none yet.
func (b *kafkaBackend) timeOffsets(ctx context.Context, parts []int, t time.Time) (position, error) {
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = kafka.TimeOffsetOf(p, t)
	}
	res, err := b.k.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("%w: kafka offsets of %q at %s: %v", ErrUnavailable, b.topic, t.Format(time.RFC3339), err)
	}
	out := make(position, len(parts))
	for _, po := range res.Topics[b.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("%w: kafka offsets of %s/%d at %s: %v", ErrUnavailable, b.topic, po.Partition, t.Format(time.RFC3339), po.Error)
		}
		out[po.Partition] = -1
		for off := range po.Offsets {
			out[po.Partition] = off
		}
	}
	return out, nil
}

// offsetCursor tracks the next offset of every partition; its id is the
// whole vector, so a resume is exact whichever partitions moved. The
// partitions of a subscription are fixed, so they are kept sorted in
// parallel slices and the token is encoded into reused buffers: with many
// partitions the id is the main per-event cost of a Kafka stream.
type offsetCursor struct {
	tag   uint32
	parts []int   // sorted
	offs  []int64 // next offset, parallel to parts
	// seen mirrors offs for the backend's watch, which reads it from
	// another goroutine than the handler's, which advances the cursor.
	seen  []atomic.Int64
	index map[int]int
	raw   []byte
	text  []byte
}

func newOffsetCursor(tag uint32, start position) *offsetCursor {
	c := &offsetCursor{tag: tag, index: make(map[int]int, len(start))}
	for p := range start {
		c.parts = append(c.parts, p)
	}
	sort.Ints(c.parts)
	c.offs = make([]int64, len(c.parts))
	c.seen = make([]atomic.Int64, len(c.parts))
	for i, p := range c.parts {
		c.offs[i] = start[p]
		c.seen[i].Store(start[p])
		c.index[p] = i
	}
	return c
}

func (c *offsetCursor) advance(m *message) {
	if i, ok := c.index[m.partition]; ok {
		c.offs[i] = m.offset + 1
		c.seen[i].Store(m.offset + 1)
	}
}

// check reports why the subscriber cannot go on from the position its
// client holds in a topic with partitions parts (sorted) ending at ends, or
// nil. It is the position sent, not the readers' one, that matters: the
// client resumes from it, so a subscriber whose readers went past an end
// is ended once what they read has been sent, and its token then lies
// beyond that end too.
func (c *offsetCursor) check(parts []int, ends position, seen []int64) error {
	if !slices.Equal(parts, c.parts) {
		return fmt.Errorf("%w: partitions %v, now %v", errPartitionsChanged, c.parts, parts)
	}
	for i, p := range c.parts {
		if off := seen[i]; off > ends[p] {
			return fmt.Errorf("%w: partition %d at offset %d, its log ends at %d", errLogBelow, p, off, ends[p])
		}
	}
	return nil
}

// snapshot returns the positions the watch checks (seen), as they are now.
func (c *offsetCursor) snapshot() []int64 {
	out := make([]int64, len(c.seen))
	for i := range c.seen {
		out[i] = c.seen[i].Load()
	}
	return out
}

func (c *offsetCursor) id() string {
	c.text, c.raw = appendToken(c.text[:0], c.raw, c.tag, c.parts, c.offs)
	return string(c.text)
}
