package sources

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

// benchFeed serves the same 10,000 small (~100 B) events on every request.
func benchFeed(b *testing.B) (url string, size int) {
	var sb strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sb, "id: %d\nevent: edit\ndata: {\"page\":\"Some_Page_%06d\",\"user\":\"someone\",\"delta\":%d}\n\n", i, i, i%977)
	}
	feed := sb.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, feed)
	}))
	b.Cleanup(srv.Close)
	return srv.URL, len(feed)
}

type discardSink struct{ n int }

func (d *discardSink) Write(_ context.Context, msgs []sinks.Message) (int, error) {
	d.n += len(msgs)
	return len(msgs), nil
}
func (d *discardSink) Close() error { return nil }

// BenchmarkDecoderOverHTTP is the baseline: the same feed read by the bare
// decoder, no queue, no sink, no checkpoint.
func BenchmarkDecoderOverHTTP(b *testing.B) {
	url, size := benchFeed(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		d := sse.NewDecoder(resp.Body)
		n := 0
		for {
			if _, err := d.Next(); err != nil {
				break
			}
			n++
		}
		resp.Body.Close()
		if n != 10000 {
			b.Fatalf("%d events", n)
		}
	}
}

// BenchmarkWorker runs the same feed through a Worker (queue, batching,
// status, metrics, in-memory checkpoint) into a sink that discards.
func BenchmarkWorker(b *testing.B) {
	url, size := benchFeed(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		sink := &discardSink{}
		w, err := New(Config{Name: "bench", URL: url, Once: true}, sink, &memStore{})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		if sink.n != 10000 {
			b.Fatalf("%d events", sink.n)
		}
	}
}
