package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	benchSubject = "bench.events"
	benchStream  = "BENCH"
	benchTopic   = "bench"
)

// brokers are the in-process brokers of every run: a nats-server with
// JetStream on disk and a kfake Kafka broker, both on loopback.
type brokers struct {
	nats  *server.Server
	nc    *nats.Conn
	js    nats.JetStreamContext
	kfake *kfake.Cluster
	kaddr string
	dir   string
}

func startBrokers(dir string) (*brokers, error) {
	b := &brokers{dir: dir}
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir + "/jetstream",
		JetStreamMaxStore: 8 << 30, JetStreamMaxMemory: 256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats-server not ready")
	}
	b.nats = srv
	if b.nc, err = nats.Connect(srv.ClientURL()); err != nil {
		b.close()
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	if b.js, err = b.nc.JetStream(); err != nil {
		b.close()
		return nil, err
	}
	if b.kfake, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, benchTopic)); err != nil {
		b.close()
		return nil, fmt.Errorf("kfake: %w", err)
	}
	b.kaddr = b.kfake.ListenAddrs()[0]
	return b, nil
}

func (b *brokers) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.nats != nil {
		b.nats.Shutdown()
		b.nats.WaitForShutdown()
	}
	if b.kfake != nil {
		b.kfake.Close()
	}
}

// natsIn is the number of messages the NATS server received so far.
func (b *brokers) natsIn() (int64, error) {
	v, err := b.nats.Varz(nil)
	if err != nil {
		return 0, err
	}
	return v.InMsgs, nil
}

// freshStream deletes and recreates the stream, so a run starts empty.
func (b *brokers) freshStream() error {
	if err := b.js.DeleteStream(benchStream); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("delete stream: %w", err)
	}
	_, err := b.js.AddStream(&nats.StreamConfig{Name: benchStream, Subjects: []string{"bench.>"}, Storage: nats.FileStorage})
	if err != nil {
		return fmt.Errorf("add stream: %w", err)
	}
	return nil
}

// streamMsgs is the number of messages stored in the stream.
func (b *brokers) streamMsgs() (int64, error) {
	si, err := b.js.StreamInfo(benchStream)
	if err != nil {
		return 0, err
	}
	return int64(si.State.Msgs), nil
}

// storedLatencies reads the whole stream back and returns, per message,
// the time from the feed sending the event to JetStream storing it.
func (b *brokers) storedLatencies(n int) ([]time.Duration, error) {
	sub, err := b.js.SubscribeSync("bench.>", nats.OrderedConsumer())
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	lat := make([]time.Duration, 0, n)
	for len(lat) < n {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("read back message %d of %d: %w", len(lat), n, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		if t := field(m.Data, "t"); t > 0 {
			lat = append(lat, meta.Timestamp.Sub(time.Unix(0, t)))
		}
	}
	return lat, nil
}

// kafkaEnd is the end offset of the bench topic's partition.
func (b *brokers) kafkaEnd(ctx context.Context) (int64, error) {
	c := &kafka.Client{Addr: kafka.TCP(b.kaddr), Timeout: 5 * time.Second}
	resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{benchTopic: {kafka.LastOffsetOf(0)}},
	})
	if err != nil {
		return 0, err
	}
	ps := resp.Topics[benchTopic]
	if len(ps) == 0 {
		return 0, errors.New("no partition in ListOffsets response")
	}
	if ps[0].Error != nil {
		return 0, ps[0].Error
	}
	return ps[0].LastOffset, nil
}

// checkKafkaOrder reads offsets [from, from+n) back and checks that they
// hold events 0..n-1, each once, in feed order.
func (b *brokers) checkKafkaOrder(ctx context.Context, from int64, n int) error {
	conn, err := kafka.DialLeader(ctx, "tcp", b.kaddr, benchTopic, 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Seek(from, kafka.SeekAbsolute); err != nil {
		return err
	}
	want := int64(0)
	for want < int64(n) {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		batch := conn.ReadBatch(1, 16<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if seq := field(m.Value, "seq"); seq != want {
				batch.Close()
				return fmt.Errorf("offset %d holds event %d, want %d", m.Offset, seq, want)
			}
			want++
		}
		if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read back after event %d: %w", want, err)
		}
	}
	return nil
}

// consumeLatencies reads the bench topic from offset from as records
// arrive until it has n of them or ctx ends, and returns, per record, the
// time from the feed sending the event to this consumer receiving it: an
// upper bound of the time to store it, since kfake keeps no append time.
func (b *brokers) consumeLatencies(ctx context.Context, from int64, n int) ([]time.Duration, error) {
	conn, err := kafka.DialLeader(ctx, "tcp", b.kaddr, benchTopic, 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Seek(from, kafka.SeekAbsolute); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, n)
	for len(lat) < n && ctx.Err() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			now := time.Now()
			if t := field(m.Value, "t"); t > 0 {
				lat = append(lat, now.Sub(time.Unix(0, t)))
			}
		}
		_ = batch.Close() // a fetch that timed out empty is retried
	}
	if len(lat) < n {
		return lat, fmt.Errorf("consumed %d of %d records", len(lat), n)
	}
	return lat, nil
}

// removeAll is os.RemoveAll for run directories, ignoring errors.
func removeAll(dir string) { _ = os.RemoveAll(dir) }
