package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/natsserver"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

// benchPayload is a typical small feed event (~200 bytes of JSON).
var benchPayload = []byte(`{"type":"edit","title":"Example","user":"someone","wiki":"enwiki","bot":false,"length":{"old":1234,"new":1240},"revision":{"old":1,"new":2},"timestamp":1700000000}`)

// BenchmarkBridgeToJetStream measures the whole runtime, feed → source
// worker → JetStream sink (embedded server, file store) → checkpoint, per
// event. Compare with BenchmarkDirectJetStream, the same publishes made
// straight from a client, to see what the bridge adds.
func BenchmarkBridgeToJetStream(b *testing.B) {
	benchBridge(b, config.NewSink(natssink.Kind, natssink.Options{Subject: "bench.ev", JetStream: true,
		Stream: &natssink.StreamOptions{Name: "BENCH", Subjects: []string{"bench.>"}}}))
}

// BenchmarkBridgeToCoreNATS is the same with a core NATS sink; compare
// with BenchmarkHandWrittenCoreBridge.
func BenchmarkBridgeToCoreNATS(b *testing.B) {
	benchBridge(b, config.NewSink(natssink.Kind, natssink.Options{Subject: "bench.ev"}))
}

// benchFeed serves n events of benchPayload, in 60 KiB writes, once ready
// is closed.
func benchFeed(n int, ready <-chan struct{}) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush() // connected (and so ready) before the clock starts
		<-ready
		buf := make([]byte, 0, 64<<10)
		for i := 1; i <= n; i++ {
			buf = fmt.Appendf(buf, "id: %d\ndata: %s\n\n", i, benchPayload)
			if len(buf) > 60<<10 {
				if _, err := w.Write(buf); err != nil {
					return
				}
				buf = buf[:0]
			}
		}
		_, _ = w.Write(buf)
		_ = rc.Flush()
		<-r.Context().Done()
	}))
}

func benchBridge(b *testing.B, sink config.Sink) {
	n := b.N
	ready := make(chan struct{})
	up := benchFeed(n, ready)
	defer up.Close()
	defer up.CloseClientConnections()

	cfg := &config.Config{
		DataDir: b.TempDir(),
		NATS:    config.NATS{Embedded: true},
		Pipelines: []config.Pipeline{{
			Name:   "bench",
			Source: config.Source{URL: up.URL},
			Sink:   sink,
		}},
	}
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	br, err := bridge.New(cfg, bridge.Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- br.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			b.Error(err)
		}
	}()
	<-br.Started()
	for !br.Status().Ready {
		time.Sleep(time.Millisecond)
	}
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	close(ready)
	for {
		st := br.Status()
		if len(st.Pipelines) == 1 && st.Pipelines[0].Forwarded >= uint64(n) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
}

// benchNATS starts an embedded server (as the bridge's) and connects a
// client to it, both closed when the benchmark ends.
func benchNATS(b *testing.B) *nats.Conn {
	srv, err := natsserver.Start(natsserver.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// BenchmarkDirectJetStream is the baseline: the same events published by a
// client straight to the same kind of embedded server, async with a
// bounded window like the sink, waiting for every ack.
func BenchmarkDirectJetStream(b *testing.B) {
	nc := benchNATS(b)
	ctx := context.Background()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natssink.DefaultMaxInFlight))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		msg := nats.NewMsg("bench.ev")
		msg.Data = benchPayload
		msg.Header.Set("SSE-Id", strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not arrive")
	}
	b.StopTimer()
}

// BenchmarkHandWrittenCoreBridge is what a user would write instead of
// ssebridge for core NATS: a bufio.Scanner over the response, one
// nc.Publish per data line (no headers, no checkpoint), a flush at the end.
func BenchmarkHandWrittenCoreBridge(b *testing.B) {
	nc := benchNATS(b)
	ready := make(chan struct{})
	up := benchFeed(b.N, ready)
	defer up.Close()
	defer up.CloseClientConnections()
	resp, err := http.Get(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	close(ready)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for got := 0; got < b.N && sc.Scan(); {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("data: ")) {
			if err := nc.Publish("bench.ev", line[len("data: "):]); err != nil {
				b.Fatal(err)
			}
			got++
		}
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}
