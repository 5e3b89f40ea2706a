// Package kafka is the Kafka sink driver, registered as "kafka", built on
// segmentio/kafka-go's Writer.
//
// Delivery: Write hands the batch to the writer and returns when every
// partition batch is acknowledged with the configured required_acks (all
// replicas by default). kafka-go reports a result per message, so on a
// partial failure n is the exact acknowledged prefix.
//
// Ordering: without a key template every message of a pipeline is
// partitioned by the pipeline name, so the whole feed lands in one
// partition in upstream order (no key is written on the message). With a
// key template, messages are spread by kafka.Hash of the rendered key:
// consumers scale across partitions, and order holds only among events with
// the same key. A key that cannot be rendered (missing field) falls back to
// the pipeline partition rather than dropping the event.
//
// Latency and throughput: Write waits for every chunk it hands kafka-go,
// so no message can join a batch while it lingers; kafka-go's timer
// (one second by default, batch_timeout here before) only delayed the
// tail of every Write. The writer flushes each chunk at once instead
// (flushNow), whatever batch_timeout says.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/route"
)

// Kind is the driver name and the sink label of the metrics.
const Kind = "kafka"

// MaxAttempts is how often kafka-go tries one batch before Write returns
// the error; the source worker retries with its own backoff, so retrying
// long inside the writer would only hide an outage.
const MaxAttempts = 3

// MaxMessageBytes bounds one message (value, key and headers), Kafka's
// default max.message.bytes; a larger event is counted and skipped, since
// retrying it could never succeed.
const MaxMessageBytes = 1 << 20

// maxBatchBytes bounds one kafka-go batch, by kafka-go's own size estimate,
// and one message, which must fit a batch alone. A broker checks the whole
// record batch (a 61-byte header plus the records, which kafka-go's
// estimate never undercounts) against max.message.bytes, 1048588 by
// default: a larger bound let kafka-go fill a batch of small events past
// it, and the broker rejected that batch as too large on every retry.
const maxBatchBytes = MaxMessageBytes - 64

// ErrNoBrokers is returned by Open when the configuration names no Kafka
// cluster.
var ErrNoBrokers = errors.New("kafka sink: no kafka.brokers configured")

// Sink produces one pipeline's events to Kafka.
type Sink struct {
	w        *kafka.Writer
	tr       *kafka.Transport
	rt       *abortable // what w and client send through: tr, until aborted
	client   *kafka.Client
	router   *route.Router
	key      *route.Template // nil: partition by pipeline
	pipeline string
	create   *TopicOptions
	log      *slog.Logger

	mu      sync.Mutex
	created map[string]bool // topics known to exist (create_topic)

	published, failed, unroutable, tooLarge prometheus.Counter
	latency                                 prometheus.Observer

	// Scratch of Write, reused while kafka-go holds no reference to it:
	// after a Write that ended with every chunk settled.
	kms    []kafka.Message
	index  []int
	hdrs   []kafka.Header
	hbytes []byte
	pipe   []byte // pipeline name, the SSE-Source header value
}

// New opens a Kafka sink for pipeline on the cluster cluster.
func New(ctx context.Context, cluster kafkaconn.Config, pipeline string, opts Options, log *slog.Logger) (*Sink, error) {
	if !cluster.Configured() {
		return nil, ErrNoBrokers
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sink", Kind)
	cfg := opts.withDefaults()
	r, err := route.NewTopicRouter(cfg.Topic, cfg.FallbackTopic)
	if err != nil {
		return nil, fmt.Errorf("topic: %w", err)
	}
	s := &Sink{
		router:     r,
		pipeline:   pipeline,
		create:     cfg.CreateTopic,
		log:        log,
		created:    map[string]bool{},
		published:  metrics.SinkPublished.WithLabelValues(pipeline, Kind),
		failed:     metrics.SinkFailed.WithLabelValues(pipeline, Kind),
		latency:    metrics.SinkLatency.WithLabelValues(pipeline, Kind),
		unroutable: metrics.EventsFailed.WithLabelValues(pipeline, "unroutable"),
		tooLarge:   metrics.EventsFailed.WithLabelValues(pipeline, "too_large"),
		pipe:       []byte(pipeline),
	}
	if cfg.Key != "" {
		if s.key, err = route.Compile(cfg.Key); err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
	}
	acks, err := requiredAcks(cfg.RequiredAcks)
	if err != nil {
		return nil, err
	}
	codec, err := compression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if s.tr, err = kafkaconn.Transport(cluster); err != nil {
		return nil, err
	}
	s.rt = newAbortable(s.tr)
	s.tr.Dial = s.rt.dialer(s.tr.Dial)
	addr := kafka.TCP(cluster.Brokers...)
	s.client = &kafka.Client{Addr: addr, Transport: s.rt}
	s.w = &kafka.Writer{
		Addr:                   addr,
		Balancer:               &balancer{pipeline: []byte(pipeline)},
		MaxAttempts:            MaxAttempts,
		WriteBackoffMin:        20 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             maxBatchBytes,
		BatchTimeout:           flushNow,
		RequiredAcks:           acks,
		Compression:            codec,
		AllowAutoTopicCreation: cfg.CreateTopic != nil,
		Transport:              s.rt,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka writer: " + fmt.Sprintf(msg, args...))
		}),
	}
	if t := route.MustCompile(cfg.Topic); t.Static() && cfg.CreateTopic != nil {
		if err := s.ensureTopic(ctx, cfg.Topic); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func requiredAcks(s string) (kafka.RequiredAcks, error) {
	switch s {
	case "", RequiredAcksAll:
		return kafka.RequireAll, nil
	case RequiredAcksOne:
		return kafka.RequireOne, nil
	case RequiredAcksNone:
		return kafka.RequireNone, nil
	}
	return 0, fmt.Errorf("required_acks %q: want all, one or none", s)
}

func compression(s string) (compress.Compression, error) {
	switch s {
	case "", CompressionNone:
		return 0, nil
	case CompressionGzip:
		return kafka.Gzip, nil
	case CompressionSnappy:
		return kafka.Snappy, nil
	case CompressionLZ4:
		return kafka.Lz4, nil
	case CompressionZstd:
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", s)
}

// balancer partitions by the message key, or by the pipeline name when the
// message has none, so a keyless pipeline stays in one partition.
type balancer struct {
	pipeline []byte
	hash     kafka.Hash
}

// Balance implements kafka.Balancer.
func (b *balancer) Balance(m kafka.Message, partitions ...int) int {
	if m.Key == nil {
		m.Key = b.pipeline
	}
	return b.hash.Balance(m, partitions...)
}

// ensureTopic creates topic with create_topic's partitions and replication
// factor unless it is known to exist. Unset values (0) ask for the broker's
// defaults.
func (s *Sink) ensureTopic(ctx context.Context, topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created[topic] {
		return nil
	}
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: -1, ReplicationFactor: -1}
	if s.create.Partitions > 0 {
		tc.NumPartitions = s.create.Partitions
	}
	if s.create.ReplicationFactor > 0 {
		tc.ReplicationFactor = s.create.ReplicationFactor
	}
	resp, err := s.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return s.classify(fmt.Sprintf("create topic %q", topic), err)
	}
	s.created[topic] = true
	return nil
}

// CloseTimeout bounds Close: the longest the sink waits for batches
// kafka-go still holds before it abandons them.
const CloseTimeout = 10 * time.Second

// ErrCloseAborted is returned (wrapped) by CloseContext when ctx ended
// before kafka-go had settled every batch it held: those batches were
// abandoned, unacknowledged (their events were never counted by Write, so
// they are fetched again after a restart).
var ErrCloseAborted = errors.New("kafka sink: close aborted, pending batches abandoned")

// Close is CloseContext bounded by CloseTimeout.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
	defer cancel()
	return s.CloseContext(ctx)
}

// CloseContext stops the writer and closes the sink's connections. It
// waits for the batches kafka-go still holds (a Write that timed out
// leaves its batch retrying inside the writer: up to MaxAttempts times
// kafka-go's ten-second write timeout against a broker that stopped
// answering) only until ctx is done; then it aborts every request in
// flight, so kafka-go gives the batches up at once, and returns with
// ErrCloseAborted. Either way no goroutine of the sink is left behind.
func (s *Sink) CloseContext(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.w.Close() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		s.log.Warn("kafka writer did not settle its pending batches in time, abandoning them", "pipeline", s.pipeline)
		s.rt.abort()
		// Every request now fails at once with a non-retriable error:
		// the writer only finishes a retry backoff (WriteBackoffMax).
		err = <-done
		err = errors.Join(ErrCloseAborted, err)
	}
	s.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("kafka sink %q: close: %w", s.pipeline, err)
	}
	return nil
}

// abortable is the kafka.RoundTripper of a sink: its transport, plus a way
// to end every request in flight and refuse new ones. kafka-go's writer
// sends a batch with a context of its own (its write timeout) and retries,
// so closing the transport's connections alone would not stop it (the
// next attempt dials again); and a cancelled context alone would not free
// the connection goroutine, which reads the response until the write
// timeout's deadline. abort does both: cancel and close every connection.
type abortable struct {
	rt      kafka.RoundTripper
	aborted context.Context
	cancel  context.CancelCauseFunc

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // open connections, nil once aborted
}

func newAbortable(rt kafka.RoundTripper) *abortable {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &abortable{rt: rt, aborted: ctx, cancel: cancel, conns: map[*trackedConn]struct{}{}}
}

// abort ends the requests in flight, closes every connection and fails
// all later requests and dials.
func (a *abortable) abort() {
	a.cancel(ErrCloseAborted)
	a.mu.Lock()
	conns := a.conns
	a.conns = nil
	a.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// dialer wraps dial (kafka-go's default when nil) to track connections
// for abort.
func (a *abortable) dialer(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	if dial == nil {
		d := &net.Dialer{Timeout: 3 * time.Second} // kafka-go's default dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if a.aborted.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", address, context.Cause(a.aborted))
		}
		nc, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		c := &trackedConn{Conn: nc, a: a}
		a.mu.Lock()
		if a.conns == nil { // aborted while dialling
			a.mu.Unlock()
			nc.Close()
			return nil, fmt.Errorf("dial %s: %w", address, context.Cause(a.aborted))
		}
		a.conns[c] = struct{}{}
		a.mu.Unlock()
		return c, nil
	}
}

// RoundTrip implements kafka.RoundTripper.
func (a *abortable) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if a.aborted.Err() != nil {
		// context.Canceled: kafka-go does not retry it.
		return nil, fmt.Errorf("%w: %w", context.Canceled, context.Cause(a.aborted))
	}
	if _, ok := req.(*metadata.Request); ok {
		// kafka-go's Writer asks for the topic's partitions once per
		// message, and the transport answers from its cache: wiring a
		// cancellation to each would cost more than the produce itself.
		// A metadata request that does reach a broker still ends at
		// abort, which closes its connection and refuses new ones.
		return a.rt.RoundTrip(ctx, addr, req)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(a.aborted, func() { cancel(ErrCloseAborted) })
	defer stop()
	return a.rt.RoundTrip(ctx, addr, req)
}

// trackedConn is a connection abort can close.
type trackedConn struct {
	net.Conn
	a *abortable
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	c.a.mu.Lock()
	delete(c.a.conns, c) // no-op on a nil map (aborted)
	c.a.mu.Unlock()
	return c.Conn.Close()
}

// Headers are the SSE headers of m.
func Headers(m *sinks.Message, at time.Time) []kafka.Header {
	h, _ := appendHeaders(nil, nil, m, []byte(m.Pipeline), at)
	return h
}

// appendHeaders appends the SSE headers of m to h, their values to buf,
// and returns both. The values are slices of buf, so buf must not grow
// while they are in use: the caller sizes it with headerBytes.
func appendHeaders(h []kafka.Header, buf []byte, m *sinks.Message, pipeline []byte, at time.Time) ([]kafka.Header, []byte) {
	val := func(start int) []byte { return buf[start:len(buf):len(buf)] }
	if m.Event.ID != "" {
		start := len(buf)
		buf = append(buf, m.Event.ID...)
		h = append(h, kafka.Header{Key: sinks.HeaderID, Value: val(start)})
	}
	start := len(buf)
	buf = append(buf, m.Event.Type...)
	h = append(h, kafka.Header{Key: sinks.HeaderEvent, Value: val(start)},
		kafka.Header{Key: sinks.HeaderSource, Value: pipeline})
	start = len(buf)
	buf = at.AppendFormat(buf, time.RFC3339Nano)
	h = append(h, kafka.Header{Key: sinks.HeaderReceivedAt, Value: val(start)})
	return h, buf
}

// maxTimeBytes bounds an RFC 3339 time with nanoseconds and a zone offset.
const maxTimeBytes = len("2006-01-02T15:04:05.999999999-07:00") + 8

// headerBytes is the room appendHeaders needs for the values of msgs.
func headerBytes(msgs []sinks.Message) int {
	n := 0
	for i := range msgs {
		n += len(msgs[i].Event.ID) + len(msgs[i].Event.Type) + maxTimeBytes
	}
	return n
}

// Write produces msgs and waits for their acknowledgement.
func (s *Sink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("kafka sink: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	start := time.Now()
	kms, index := s.kms[:0], s.index[:0] // kms[j] is msgs[index[j]]
	// Header values and slices for all msgs, allocated at most once per
	// Write (and reused by the next): kafka-go keeps only references.
	hdrs := s.hdrs[:0]
	if cap(hdrs) < 4*len(msgs) {
		hdrs = make([]kafka.Header, 0, 4*len(msgs))
	}
	hbuf := s.hbytes[:0]
	if need := headerBytes(msgs); cap(hbuf) < need {
		hbuf = make([]byte, 0, need)
	}
	// Give the scratch back for the next Write only if kafka-go settled
	// every chunk: after a cancelled Write it may still be sending them.
	defer func() {
		if ctx.Err() == nil {
			clear(kms)
			s.kms, s.index, s.hdrs, s.hbytes = kms[:0], index[:0], hdrs[:0], hbuf[:0]
		} else {
			s.kms, s.index, s.hdrs, s.hbytes = nil, nil, nil, nil
		}
	}()
	env := route.NewEnv(nil)
	for i := range msgs {
		m := &msgs[i]
		env.Reset(m)
		d, err := s.router.Route(env)
		if err != nil {
			s.unroutable.Add(1)
			s.log.Warn("event unroutable, dropped", "pipeline", s.pipeline, "id", m.Event.ID, "event", m.Event.Type, "err", err)
			continue
		}
		if d.FellBack != nil {
			s.log.Debug("event routed to fallback topic", "pipeline", s.pipeline, "id", m.Event.ID, "topic", d.Dest, "reason", d.FellBack)
		}
		at := m.ReceivedAt
		if at.IsZero() {
			at = time.Now()
		}
		h0 := len(hdrs)
		hdrs, hbuf = appendHeaders(hdrs, hbuf, m, s.pipe, at)
		km := kafka.Message{Topic: d.Dest, Value: m.Event.Data, Headers: hdrs[h0:len(hdrs):len(hdrs)], Time: at}
		if s.key != nil {
			k, err := s.key.RenderEnv(env)
			if err != nil {
				s.log.Debug("key not rendered, using the pipeline partition", "pipeline", s.pipeline, "id", m.Event.ID, "err", err)
			} else {
				km.Key = []byte(k)
			}
		}
		if km.Value == nil {
			km.Value = []byte{} // an empty event stays an empty value, not a null (tombstone)
		}
		if size := messageSize(&km); size > maxBatchBytes {
			s.tooLarge.Add(1)
			s.log.Warn("event larger than the maximum Kafka message, dropped", "pipeline", s.pipeline, "id", m.Event.ID, "bytes", size, "max", MaxMessageBytes)
			continue
		}
		if s.create != nil {
			if err := s.ensureTopic(ctx, d.Dest); err != nil {
				s.failed.Add(1)
				// Nothing was produced yet: only skipped messages before
				// the first pending one are done.
				if len(index) > 0 {
					return index[0], err
				}
				return i, err
			}
		}
		kms = append(kms, km)
		index = append(index, i)
	}
	if len(kms) == 0 {
		return len(msgs), nil
	}
	// One WriteMessages per kafka-go batch, stopping at the first failure:
	// kafka-go writes a partition's batches one after the other and goes
	// on after a failed one, so a single call could store later events
	// ahead of the failed ones, which the caller then retries: upstream
	// order broken.
	ok := 0 // kms[:ok] acknowledged
	var err error
	for ok < len(kms) {
		end := s.chunkEnd(kms, ok)
		if err = s.w.WriteMessages(ctx, kms[ok:end]...); err != nil {
			// A per-message result tells exactly which prefix landed.
			var werrs kafka.WriteErrors
			if errors.As(err, &werrs) && len(werrs) == end-ok {
				i := 0
				for i < len(werrs) && werrs[i] == nil {
					i++
				}
				if i < len(werrs) {
					err = werrs[i]
				}
				ok += i
			}
			break
		}
		ok = end
	}
	if ok > 0 {
		s.published.Add(float64(ok))
	}
	if err == nil {
		s.latency.Observe(time.Since(start).Seconds())
		return len(msgs), nil
	}
	s.failed.Add(1)
	if ctx.Err() != nil {
		return s.prefix(index, ok, len(msgs)), fmt.Errorf("kafka sink %q: %w", s.pipeline, ctx.Err())
	}
	topic := kms[min(ok, len(kms)-1)].Topic
	return s.prefix(index, ok, len(msgs)), s.classify(fmt.Sprintf("produce to %q", topic), err)
}

// chunkEnd returns the end of the chunk of kms starting at from that
// kafka-go puts in one batch per partition: at most the writer's batch
// size, and at most maxBatchBytes by messageSize, which is never below
// kafka-go's own estimate.
func (s *Sink) chunkEnd(kms []kafka.Message, from int) int {
	end, bytes := from, 0
	for end < len(kms) && end-from < s.w.BatchSize {
		size := messageSize(&kms[end])
		if end > from && bytes+size > maxBatchBytes {
			break
		}
		bytes += size
		end++
	}
	return end
}

// prefix converts "ok leading Kafka messages acknowledged" into the number
// of leading input messages done, counting skipped (unroutable) messages
// that precede the first unacknowledged one.
func (s *Sink) prefix(index []int, ok, total int) int {
	if ok < len(index) {
		return index[ok]
	}
	return total
}

func messageSize(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 64
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// classify wraps err with sinks.ErrNotConnected when it is the kind of
// failure a broker outage causes (network, leader election, timeouts), so
// the caller backs off and retries.
func (s *Sink) classify(what string, err error) error {
	var ne net.Error
	var ke kafka.Error
	temporary := false
	switch {
	case errors.As(err, &ke):
		// kafka.Error also satisfies net.Error: ask it first. A broker
		// that is starting (kfake, a KRaft node before it has a
		// controller) answers BrokerNotAvailable, which kafka-go does not
		// call temporary: the pipeline must start as soon as it is up.
		temporary = ke.Temporary() || ke == kafka.BrokerNotAvailable
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded):
		temporary = true
	}
	if temporary {
		return fmt.Errorf("%w: kafka sink %q: %s: %w", sinks.ErrNotConnected, s.pipeline, what, err)
	}
	return fmt.Errorf("kafka sink %q: %s: %w", s.pipeline, what, err)
}

// flushNow is the writer's BatchTimeout. Write hands kafka-go one chunk at
// a time and waits for it, so no other message can join a batch while it
// lingers: a chunk smaller than the batch size (the tail of every Write)
// waited out the whole timeout for nothing. kafka-go adds a call's
// messages to a partition's batch under one lock, and a batch whose timer
// fired meanwhile is sent as soon as that lock is released, so with a
// timeout this short every chunk leaves whole, at once.
const flushNow = time.Nanosecond
