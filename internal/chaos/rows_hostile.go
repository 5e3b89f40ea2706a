package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The rows whose fault is on the reading side (stalled subscribers) or in
// what the feed sends (hostile feeds).

func rowStalledSubscribers() *row { return stalledRow("stalled-subscribers", 0) }

// rowStalledSmallPending is the same with a small max_pending: the
// broker's delivery bursts (a JetStream pull batch, a Kafka fetch) are then
// larger than max_pending, and only the subscribers whose connections stop
// taking data may be cut, never the one reading at full speed.
func rowStalledSmallPending() *row { return stalledRow("stalled-subscribers-pending-64", 64) }

func stalledRow(key string, maxPending int) *row {
	mp := "the default max_pending (1024)"
	fault := "Stalled reverse subscribers"
	if maxPending > 0 {
		mp = fmt.Sprintf("max_pending %d", maxPending)
		fault = fmt.Sprintf("Stalled reverse subscribers, max_pending %d", maxPending)
	}
	return &row{
		key: key, fault: fault,
		checked: "three subscribers per stream (4 KiB events; 4 KiB receive buffer on the stalled connection) stop reading after their first event for the outage, with " + mp + ", beside one that reads; the reader must get everything without stalling, the stalled ones, cut off, must resume with Last-Event-ID and catch up with nothing lost",
		sinks:   both,
		setup: func(r *rowRun) {
			r.spec.maxPending = maxPending
			big := strings.Repeat("s", 4096)
			for _, f := range r.feeds {
				// 4 KiB events, so that a stalled reader overflows the
				// socket buffers and then max_pending.
				f.dataOf = func(seq int) []byte { return fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, seq, big) }
			}
			for _, s := range r.row.sinks {
				for i := 1; i <= 3; i++ {
					sub := newSubscriber(fmt.Sprintf("stalled-%d", i), "http://"+r.spec.httpAddr+"/sse/"+s)
					sub.rcv = 4096
					sub.stall = r.p.outage
					r.subs[s] = append(r.subs[s], sub)
				}
			}
			r.row.explain = func(res *result) []string {
				out := append(dupsNone(res), lagNote(r, res.sink))
				if lag := worstLag(r, res.sink); lag > readerMaxLag {
					res.problems = append(res.problems, "reader lag")
					out = append(out, fmt.Sprintf("FAILED CHECK: the reader, which never stopped reading, fell %s behind the broker (more than %s)", fmtDur(lag.Round(time.Millisecond)), fmtDur(readerMaxLag)))
				}
				return out
			}
		},
	}
}

// lagNote says how far the reader subscriber lagged behind the broker.
func lagNote(r *rowRun, sink string) string {
	return fmt.Sprintf("reader subscriber's worst lag behind the broker read-back: %s; reader: %s",
		fmtDur(worstLag(r, sink).Round(time.Millisecond)), r.subs[sink][0].summary())
}

// readerMaxLag is how far the reading subscriber may fall behind the
// broker while others stall: generous for a loaded 2-core machine, far
// below a subscriber cut off and catching up.
const readerMaxLag = 5 * time.Second

// worstLag is how much later than the broker read-back the reader got an
// event, at worst.
func worstLag(r *rowRun, sink string) time.Duration {
	b := r.broker[sink].arrivalsBySeq()
	s := r.subs[sink][0].t.arrivalsBySeq()
	var worst time.Duration
	for q, tb := range b {
		if ts, ok := s[q]; ok {
			worst = max(worst, ts.Sub(tb))
		}
	}
	return worst
}

func rowHugeLine() *row {
	return &row{
		key: "hostile-huge-line", fault: "Hostile feed: huge line",
		checked: "in the middle of the stream the feed sends one event whose data line is 1 GiB (64 MiB with -quick), streamed in 64 KiB writes and never held whole; it must be skipped (max_event_size 4 MiB), every other event delivered, memory bounded",
		sinks:   []string{sinkNATS},
		setup: func(r *rowRun) {
			f := r.feeds[sinkNATS]
			mid := f.total / 2
			var count atomic.Int32
			f.after = func(ctx context.Context, w *bufio.Writer, flush func() error, seq, conn int) error {
				if seq != mid || count.Load() >= 2 {
					return nil
				}
				sent := count.Add(1)
				r.logf("huge line #%d on connection %d", sent, conn)
				t := time.Now()
				chunk := bytes.Repeat([]byte("x"), 64<<10)
				if _, err := w.WriteString("data: "); err != nil {
					return err
				}
				for n := int64(0); n < r.p.bigLine; n += int64(len(chunk)) {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if _, err := w.Write(chunk); err != nil {
						return err
					}
				}
				_, err := w.WriteString("\n\n")
				r.note("huge line #%d (%d MiB) written in %s", sent, r.p.bigLine>>20, time.Since(t).Round(time.Millisecond))
				return err
			}
		},
		explain: dupsNone,
	}
}

// badBytes are invalid UTF-8 (each byte one maximal subpart, replaced by one
// U+FFFD) and NULs.
const badBytes = "\xff\xfe nul:\x00 lone:\x80 trunc:\xc3( end\x00"

func rowBadUTF8() *row {
	return &row{
		key: "hostile-utf8-nul", fault: "Hostile feed: invalid UTF-8 and NUL",
		checked: "every other event carries invalid UTF-8 bytes and NULs in its data, and every third an id ending in an invalid byte; the feed also cuts connections at random bytes, so the source resumes after such ids; each event must arrive, with the invalid bytes replaced by U+FFFD (the SSE standard) and the NULs kept, at the broker and at the subscriber",
		sinks:   both,
		setup: func(r *rowRun) {
			for _, f := range r.feeds {
				f.idOf = func(seq int) string {
					if seq%3 == 0 {
						return strconv.Itoa(seq) + "\xff"
					}
					return strconv.Itoa(seq)
				}
				// The id's leading digits: "12\xff" comes back as "12\uFFFD".
				f.resume = func(id string) int {
					j := 0
					for j < len(id) && id[j] >= '0' && id[j] <= '9' {
						j++
					}
					n, err := strconv.Atoi(id[:j])
					if err != nil {
						return 1
					}
					return n + 1
				}
				f.dropBudget = func(int) int { return 200 + f.rng.IntN(int(r.p.rate*40)) }
			}
			data := func(seq int) []byte {
				if seq%2 == 0 {
					return fmt.Appendf(nil, `{"seq":%d,"bad":"%s"}`, seq, badBytes)
				}
				return defaultData("utf8", seq)
			}
			for _, f := range r.feeds {
				f.dataOf = data
			}
			var exact, replaced atomic.Int64
			check := func(seq int, got []byte) bool {
				want := data(seq)
				if bytes.Equal(got, want) {
					if seq%2 == 0 {
						exact.Add(1)
					}
					return true
				}
				if bytes.Equal(got, []byte(string([]rune(string(want))))) {
					replaced.Add(1)
					return true
				}
				return false
			}
			for _, s := range r.row.sinks {
				r.broker[s].check = check
				r.subs[s][0].t.check = check
			}
			r.row.explain = func(res *result) []string {
				out := dupsNone(res)
				out = append(out, fmt.Sprintf("records with invalid bytes seen (all observers): %d as U+FFFD replacements, %d byte for byte", replaced.Load(), exact.Load()))
				f := r.feeds[res.sink]
				f.mu.Lock()
				defer f.mu.Unlock()
				var raw, repl, other int
				for _, id := range f.lastIDs[1:] {
					switch {
					case strings.HasSuffix(id, "\xff"):
						raw++
					case strings.HasSuffix(id, "\uFFFD"):
						repl++
					case id != "":
						other++
					}
				}
				return append(out, fmt.Sprintf("%d reconnections: %d sent Last-Event-ID with the invalid byte replaced by U+FFFD, %d with the raw byte, %d a plain id", len(f.lastIDs)-1, repl, raw, other))
			}
		},
	}
}

func rowSlowloris() *row {
	return &row{
		key: "hostile-slowloris", fault: "Hostile feed: slowloris",
		checked: "the feed trickles a never-ending line one byte per 100 ms for the outage, and later stops sending anything (headers sent, socket open) until the source's idle_timeout (2 s) recycles the connection",
		sinks:   both,
		setup: func(r *rowRun) {
			r.spec.idleTimeout = 2 * time.Second
			for s, f := range r.feeds {
				var trickled, stalled atomic.Bool
				third := f.total / 3
				f.after = func(ctx context.Context, w *bufio.Writer, flush func() error, seq, conn int) error {
					switch {
					case seq == third && trickled.CompareAndSwap(false, true):
						t := time.Now()
						if _, err := w.WriteString(": "); err != nil {
							return err
						}
						for time.Since(t) < r.p.outage && ctx.Err() == nil {
							if _, err := w.WriteString("z"); err != nil {
								return err
							}
							if err := flush(); err != nil {
								return err
							}
							sleepCtx(ctx, 100*time.Millisecond)
						}
						_, err := w.WriteString("\n")
						r.faultEnd(time.Now(), s)
						return err
					case seq == 2*third && stalled.CompareAndSwap(false, true):
						if err := flush(); err != nil {
							return err
						}
						t := time.Now()
						<-ctx.Done() // until the source gives up on this connection
						r.faultEnd(time.Now(), s)
						r.sinkNote(s, "silent connection closed by the source after %s (idle_timeout 2 s); recovery counts from that close", time.Since(t).Round(time.Millisecond))
						return ctx.Err()
					}
					return nil
				}
			}
		},
		explain: dupsNone,
	}
}

const htmlPage = `<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1><p>The upstream server is unavailable.</p>
</body></html>
`

func rowHTMLPage() *row {
	return &row{
		key: "hostile-html", fault: "Hostile feed: HTML error page with 200",
		checked: "for the outage every connection is answered 200 with an HTML error page (text/html, then text/event-stream with an HTML body); nothing from the page may be published, and the source must pick the real stream up when it returns",
		sinks:   both,
		setup: func(r *rowRun) {
			for _, f := range r.feeds {
				f.before = func(ctx context.Context, w http.ResponseWriter, _ *http.Request, conn int) bool {
					if time.Since(r.t0) >= r.p.outage {
						return false
					}
					ct := "text/html; charset=utf-8"
					if conn%2 == 0 {
						ct = "text/event-stream"
					}
					w.Header().Set("Content-Type", ct)
					w.WriteHeader(http.StatusOK)
					w.Write([]byte(htmlPage))
					return true
				}
			}
		},
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.outage) {
				return nil
			}
			r.faultEnd(time.Now())
			for s, f := range r.feeds {
				r.sinkNote(s, "%d connections answered with the HTML page", f.connCount())
			}
			return nil
		},
		explain: dupsNone,
	}
}
