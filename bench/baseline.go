package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/ssebridge/ssebridge/message"
)

// The hand-written bridges, run as separate processes (bench -role ROLE)
// so that they are measured exactly like ssebridge: the obvious code, a
// bufio.Scanner parser and one client call per event, no headers, except
// the "-hdr" roles, which set ssebridge's four SSE headers (and in
// JetStream a Nats-Msg-Id of the same shape as ssebridge's) the way a user
// would: a fresh nats.Msg and header map per event, the receive time
// formatted per event.
const (
	roleCore       = "core"         // nc.Publish per event
	roleCoreHdr    = "core-hdr"     // nc.PublishMsg per event, with the SSE headers
	roleJSSync     = "js-sync"      // js.Publish per event, waiting for each ack
	roleJSAsync    = "js-async"     // js.PublishAsync, up to 4096 acks pending
	roleJSAsyncHdr = "js-async-hdr" // js.PublishMsgAsync with the SSE headers and a Nats-Msg-Id, up to 4096 acks pending
	roleKafkaGo    = "kafka-go"     // kafka-go Writer, defaults but acks=all, 100-event WriteMessages
)

// benchPipeline is the pipeline name ssebridge runs under (its
// SSE-Source header and the first part of its Nats-Msg-Id).
const benchPipeline = "bench"

// sseEvent is one event the hand-written parser dispatched.
type sseEvent struct {
	id, typ string
	data    []byte
}

// headerMsg is the message the "-hdr" roles publish for ev: the headers
// ssebridge sets (sinks/nats Headers), built as a user would.
func headerMsg(ev sseEvent) *nats.Msg {
	m := nats.NewMsg(benchSubject)
	m.Data = ev.data
	if ev.id != "" {
		m.Header.Set(message.HeaderID, ev.id)
	}
	m.Header.Set(message.HeaderEvent, ev.typ)
	m.Header.Set(message.HeaderSource, benchPipeline)
	m.Header.Set(message.HeaderReceivedAt, time.Now().Format(time.RFC3339Nano))
	return m
}

// msgID is a Nats-Msg-Id of ssebridge's shape ("pipeline:id:hash", FNV-1a
// 64 over type, a 0 and data), computed with hash/fnv as a user would.
func msgID(ev sseEvent) string {
	h := fnv.New64a()
	h.Write([]byte(ev.typ))
	h.Write([]byte{0})
	h.Write(ev.data)
	return fmt.Sprintf("%s:%s:%016x", benchPipeline, ev.id, h.Sum64())
}

// runRole runs one hand-written bridge until SIGTERM.
func runRole(role, feedURL, natsURL, kafkaAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var publish func(ev sseEvent) error
	var flush func() error
	switch role {
	case roleCore, roleCoreHdr, roleJSSync, roleJSAsync, roleJSAsyncHdr:
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		switch role {
		case roleCore:
			publish = func(ev sseEvent) error { return nc.Publish(benchSubject, ev.data) }
		case roleCoreHdr:
			publish = func(ev sseEvent) error { return nc.PublishMsg(headerMsg(ev)) }
		case roleJSSync:
			js, err := nc.JetStream()
			if err != nil {
				return err
			}
			publish = func(ev sseEvent) error { _, err := js.Publish(benchSubject, ev.data); return err }
		case roleJSAsync, roleJSAsyncHdr:
			js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096), nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, err error) {
				fmt.Fprintln(os.Stderr, "publish:", err)
			}))
			if err != nil {
				return err
			}
			publish = func(ev sseEvent) error { _, err := js.PublishAsync(benchSubject, ev.data); return err }
			if role == roleJSAsyncHdr {
				publish = func(ev sseEvent) error {
					m := headerMsg(ev)
					if ev.id != "" {
						m.Header.Set(nats.MsgIdHdr, msgID(ev))
					}
					_, err := js.PublishMsgAsync(m)
					return err
				}
			}
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
		publish = func(ev sseEvent) error {
			batch = append(batch, kafka.Message{Value: bytes.Clone(ev.data)})
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
	// Only the "-hdr" roles parse id and event: the others stay the
	// baselines they were.
	meta := role == roleCoreHdr || role == roleJSAsyncHdr
	var ev sseEvent // the id stays from one event to the next, as SSE says
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if ev.data != nil {
				if meta && ev.typ == "" {
					ev.typ = "message"
				}
				if err := publish(ev); err != nil {
					return err
				}
				ev.typ, ev.data = "", nil
			}
		case bytes.HasPrefix(line, []byte("data: ")):
			ev.data = append([]byte(nil), line[6:]...)
		case !meta:
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.id = string(line[4:])
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.typ = string(line[7:])
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
