package main

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestFeedSendsEveryEvent reads a firehose and a steady-rate run of the
// feed and checks every event arrives once, in order.
func TestFeedSendsEveryEvent(t *testing.T) {
	f, err := startFeed()
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for _, plan := range []feedPlan{{events: 5000}, {events: 3000, rate: 10000}} {
		connected := f.begin(plan)
		resp, err := http.Get(f.url)
		if err != nil {
			t.Fatal(err)
		}
		<-connected
		want := 0
		var buf []byte
		chunk := make([]byte, 32<<10)
		deadline := time.Now().Add(20 * time.Second)
		for want < plan.events && time.Now().Before(deadline) {
			n, err := resp.Body.Read(chunk)
			buf = append(buf, chunk[:n]...)
			for {
				i := bytes.Index(buf, []byte("\n\n"))
				if i < 0 {
					break
				}
				if seq := field(buf[:i], "seq"); seq != int64(want) {
					t.Fatalf("rate %v: event %d, want %d", plan.rate, seq, want)
				}
				want++
				buf = buf[i+2:]
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		f.end()
		resp.Body.Close()
		if want != plan.events {
			t.Fatalf("rate %v: %d events, want %d", plan.rate, want, plan.events)
		}
	}
}
