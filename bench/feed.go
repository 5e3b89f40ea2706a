package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// eventPad fills an event to about 200 bytes on the wire.
var eventPad = strings.Repeat("x", 62)

// appendEvent appends event seq: id, type and a JSON data line carrying
// the time it was sent (t, Unix nanoseconds; 0 in firehose runs), about
// 200 bytes in all.
func appendEvent(b []byte, seq int, t int64) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, "\nevent: edit\ndata: {\"seq\":"...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"wiki":"enwiki","title":"Main_Page","user":"someone","delta":42,"pad":"`...)
	b = append(b, eventPad...)
	b = append(b, "\"}\n\n"...)
	return b
}

// field returns the integer after `"name":` in a data JSON, -1 if none.
func field(data []byte, name string) int64 {
	i := bytes.Index(data, []byte(`"`+name+`":`))
	if i < 0 {
		return -1
	}
	var v int64
	for _, c := range data[i+len(name)+3:] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

// feedPlan is what the feed serves in one run.
type feedPlan struct {
	events int     // events to send, then hold the connection open
	rate   float64 // events per second; 0 sends as fast as the client reads
}

// feed is the loopback SSE server of every run: a firehose or a steady
// rate of ~200 B events, resuming after Last-Event-ID.
type feed struct {
	srv *http.Server
	url string

	mu        sync.Mutex
	plan      feedPlan
	connected chan time.Time // the first connection of the run
	stop      chan struct{}  // closed at the end of the run
}

func startFeed() (*feed, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &feed{url: "http://" + ln.Addr().String() + "/feed"}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *feed) close() { _ = f.srv.Close() }

// begin sets the plan of the next run; the returned channel receives the
// time the bridge connected.
func (f *feed) begin(p feedPlan) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plan = p
	f.connected = make(chan time.Time, 1)
	f.stop = make(chan struct{})
	return f.connected
}

// end releases the connections of the run.
func (f *feed) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
}

func (f *feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	plan, connected, stop := f.plan, f.connected, f.stop
	f.mu.Unlock()
	if stop == nil {
		http.Error(w, "no run", http.StatusServiceUnavailable)
		return
	}
	seq := 0
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.Atoi(id); err == nil {
			seq = n + 1
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	select {
	case connected <- time.Now():
	default:
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 512)
	if plan.rate <= 0 {
		for ; seq < plan.events; seq++ {
			buf = appendEvent(buf[:0], seq, 0)
			if _, err := bw.Write(buf); err != nil {
				return
			}
		}
	} else {
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq < plan.events {
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case now := <-tick.C:
				due := min(plan.events, int(now.Sub(start).Seconds()*plan.rate))
				for ; seq < due; seq++ {
					buf = appendEvent(buf[:0], seq, time.Now().UnixNano())
					if _, err := bw.Write(buf); err != nil {
						return
					}
				}
				if bw.Flush() != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}
	if bw.Flush() != nil || rc.Flush() != nil {
		return
	}
	// Hold the stream open, as a live feed does, until the run ends.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	select {
	case <-ctx.Done():
	case <-stop:
	}
}
