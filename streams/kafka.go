package streams

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/bridge/config"
	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
)

// readerMaxWait bounds one fetch long-poll. A partition's reader returns as
// soon as it has data; this only caps how long an idle fetch holds a broker
// connection before it is renewed.
const readerMaxWait = 2 * time.Second

// kafkaShared is the cluster access shared by every Kafka stream: a client
// for metadata and offsets, and the dialer the partition readers use.
type kafkaShared struct {
	brokers   []string
	client    *kafka.Client
	transport *kafka.Transport
	dialer    *kafka.Dialer
}

func newKafkaShared(c config.Kafka) (*kafkaShared, error) {
	// kafkaconn applies client_id, SASL and TLS exactly as the sinks do.
	tr, err := kafkaconn.Transport(c)
	if err != nil {
		return nil, err
	}
	d, err := kafkaconn.Dialer(c)
	if err != nil {
		return nil, err
	}
	return &kafkaShared{
		brokers:   c.Brokers,
		transport: tr,
		client:    &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: 10 * time.Second},
		dialer:    d,
	}, nil
}

// close drops the pooled connections of the metadata client.
func (k *kafkaShared) close() { k.transport.CloseIdleConnections() }

// kafkaBackend serves a Kafka topic. Each subscriber reads every partition
// with its own partition reader, never a consumer group: a group would
// share the partitions out between subscribers instead of giving each all
// of them, and would commit offsets nobody needs.
type kafkaBackend struct {
	k     *kafkaShared
	topic string
	tag   uint32
	start string
	path  string
	log   *slog.Logger
}

func newKafkaBackend(k *kafkaShared, c config.Stream, log *slog.Logger) *kafkaBackend {
	return &kafkaBackend{k: k, topic: c.Kafka.Topic, tag: topicTag(c.Kafka.Topic), start: c.Kafka.Start, path: c.Path, log: log}
}

func (b *kafkaBackend) kind() string { return "kafka" }

// close is a no-op: the readers are per subscriber, the client is shared.
func (b *kafkaBackend) close() {}

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
	parts, err := b.partitions(ctx)
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
		var expired bool
		start, expired, err = resumeFrom(resume, parts, first, last)
		if err != nil {
			return feed{}, fmt.Errorf("%w; was topic %q recreated?", err, b.topic)
		}
		if expired {
			metrics.ResumeTooOld.WithLabelValues(b.path).Inc()
			b.log.Warn("resume position no longer retained, starting at the earliest retained offsets",
				"stream", b.path, "topic", b.topic)
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

	cur := newOffsetCursor(b.tag, start)
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   b.k.brokers,
			Topic:     b.topic,
			Partition: p,
			Dialer:    b.k.dialer,
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   readerMaxWait,
		})
		if err := r.SetOffset(start[p]); err != nil {
			_ = r.Close()
			cancel()
			wg.Wait()
			return feed{}, fmt.Errorf("%w: kafka reader for %s/%d: %v", ErrUnavailable, b.topic, p, err)
		}
		wg.Add(1)
		// One goroutine per partition, so the stream sends as soon as any
		// partition has data and never waits for the others.
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				km, err := r.ReadMessage(rctx)
				if err != nil {
					if rctx.Err() == nil {
						sub.fail(fmt.Errorf("kafka %s/%d: %w", b.topic, p, err))
					}
					return
				}
				m := message{subject: km.Topic, data: km.Value, partition: km.Partition, offset: km.Offset}
				for _, h := range km.Headers {
					if h.Key == sinks.HeaderEvent {
						m.typ = string(h.Value)
					}
				}
				sub.offer(m)
			}
		}()
	}
	f := newFeed(cur, func() {
		cancel()
		wg.Wait()
	})
	// The token of the start offsets resumes exactly there (a token holds
	// next offsets), whatever picked them: latest, earliest or since=.
	f.start = cur.id()
	return f, nil
}

// resumeFrom turns a resume token into a start offset per partition, given
// each partition's first retained and next (end) offset. expired reports
// that some partition had already dropped the token's position, so it
// starts at its earliest retained offset; a position beyond the end is an
// error, since waiting for it could mean waiting forever.
func resumeFrom(resume position, parts []int, first, last position) (start position, expired bool, err error) {
	start = make(position, len(parts))
	for _, p := range parts {
		off, ok := resume[p]
		switch {
		case !ok:
			// A partition added after the token was issued holds only
			// messages newer than the token.
			off = first[p]
		case off > last[p]:
			return nil, false, fmt.Errorf("%w: offset %d of partition %d is beyond its end (%d)", ErrInvalidLastEventID, off, p, last[p])
		case off < first[p]:
			expired = true
			off = first[p]
		}
		start[p] = off
	}
	return start, expired, nil
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
			return nil, fmt.Errorf("%w: kafka topic %q: %v", ErrUnavailable, b.topic, t.Error)
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
	for i, p := range c.parts {
		c.offs[i] = start[p]
		c.index[p] = i
	}
	return c
}

func (c *offsetCursor) advance(m *message) {
	if i, ok := c.index[m.partition]; ok {
		c.offs[i] = m.offset + 1
	}
}

func (c *offsetCursor) id() string {
	c.text, c.raw = appendToken(c.text[:0], c.raw, c.tag, c.parts, c.offs)
	return string(c.text)
}
