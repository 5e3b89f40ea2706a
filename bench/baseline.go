package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"
)

// The hand-written bridges, run as separate processes (bench -role ROLE)
// so that they are measured exactly like ssebridge: the obvious code, a
// bufio.Scanner parser and one client call per event, no headers.
const (
	roleCore    = "core"     // nc.Publish per event
	roleJSSync  = "js-sync"  // js.Publish per event, waiting for each ack
	roleJSAsync = "js-async" // js.PublishAsync, up to 4096 acks pending
	roleKafkaGo = "kafka-go" // kafka-go Writer, defaults but acks=all, 100-event WriteMessages
)

// runRole runs one hand-written bridge until SIGTERM.
func runRole(role, feedURL, natsURL, kafkaAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var publish func(data []byte) error
	var flush func() error
	switch role {
	case roleCore, roleJSSync, roleJSAsync:
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		switch role {
		case roleCore:
			publish = func(data []byte) error { return nc.Publish(benchSubject, data) }
		case roleJSSync:
			js, err := nc.JetStream()
			if err != nil {
				return err
			}
			publish = func(data []byte) error { _, err := js.Publish(benchSubject, data); return err }
		case roleJSAsync:
			js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096), nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, err error) {
				fmt.Fprintln(os.Stderr, "publish:", err)
			}))
			if err != nil {
				return err
			}
			publish = func(data []byte) error { _, err := js.PublishAsync(benchSubject, data); return err }
		}
	case roleKafkaGo:
		w := &kafka.Writer{Addr: kafka.TCP(kafkaAddr), Topic: benchTopic, RequiredAcks: kafka.RequireAll}
		defer w.Close()
		batch := make([]kafka.Message, 0, 100) // the Writer's default BatchSize
		flush = func() error {
			err := w.WriteMessages(ctx, batch...)
			batch = batch[:0]
			return err
		}
		publish = func(data []byte) error {
			batch = append(batch, kafka.Message{Value: bytes.Clone(data)})
			if len(batch) == cap(batch) {
				return flush()
			}
			return nil
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	_ = flush
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, feedURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if data != nil {
				if err := publish(data); err != nil {
					return err
				}
				data = nil
			}
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append([]byte(nil), line[6:]...)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
