package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ssebridge/ssebridge/checkpoint"
)

var both = []string{sinkNATS, sinkKafka}

// rows is the table, in order.
func rows() []*row {
	return []*row{
		rowFeedDrops(), rowNATSKill(), rowNATSKillLong(), rowKafkaGone(), rowBridgeKill(), rowSigterm(),
		rowCheckpointRO(), rowBrokerDownAtStart(), rowRepeatingIDs(), rowStalledSubscribers(), rowStalledSmallPending(),
		rowHugeLine(), rowBadUTF8(), rowSlowloris(), rowHTMLPage(), rowReplicaFailover(),
	}
}

func dupsNone(res *result) []string {
	if res.broker.Dup+res.sub.Dup == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d duplicates at the broker and %d at the subscriber, where none were expected", res.broker.Dup, res.sub.Dup)}
}

func rowFeedDrops() *row {
	return &row{
		key: "feed-drops", fault: "Feed drops at random byte positions",
		checked: "the feed cuts each connection after a random number of bytes (mid-line, mid-event), half with a clean end of the response and half aborted; the source resumes with Last-Event-ID",
		sinks:   both,
		setup: func(r *rowRun) {
			for _, f := range r.feeds {
				// A cut every second or so of traffic, at least 200 bytes in.
				f.dropBudget = func(int) int { return 200 + f.rng.IntN(int(r.p.rate*150)) }
			}
		},
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.dur) {
				return nil
			}
			for s, f := range r.feeds {
				for _, t := range f.dropTimes() {
					if t.Before(r.t0.Add(r.p.dur)) {
						r.faultEnd(t, s)
					}
				}
				r.sinkNote(s, "%d cuts during the run (%d connections)", len(f.dropTimes()), f.connCount())
			}
			return nil
		},
		explain: dupsNone,
	}
}

func rowNATSKill() *row { return natsKillRow("nats-kill", 1) }

// rowNATSKillLong is the same with an outage three times as long (30 s in
// the full run).
func rowNATSKillLong() *row { return natsKillRow("nats-kill-long", 3) }

func natsKillRow(key string, factor time.Duration) *row {
	fault := "NATS SIGKILL and restart"
	if factor > 1 {
		fault = "NATS SIGKILL and restart, long outage"
	}
	return &row{
		key: key, fault: fault,
		checked: "nats-server (JetStream on disk) is SIGKILLed under load and restarted on the same port and store after the outage",
		sinks:   []string{sinkNATS},
		setup: func(r *rowRun) {
			r.p.outage *= factor
			// The outage and a tail of live traffic after it fit in the feed.
			r.p.dur = max(r.p.dur, r.p.dur/4+r.p.outage+r.p.dur/2)
			for _, f := range r.feeds {
				f.total = r.p.total()
			}
		},
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.dur/4) {
				return nil
			}
			r.logf("SIGKILL nats-server")
			r.nats.p.sig(syscall.SIGKILL)
			r.nats.p.wait(5 * time.Second)
			sleepCtx(ctx, r.p.outage)
			r.logf("restart nats-server")
			if err := r.nats.start(ctx); err != nil {
				return err
			}
			r.faultEnd(time.Now())
			r.note("down for %s", r.p.outage)
			return nil
		},
		explain: dupsNone,
	}
}

func rowKafkaGone() *row {
	return &row{
		key: "kafka-gone", fault: "Kafka gone",
		checked: "the kfake cluster is closed under load (port refused) and started again on the same port and log directory after the outage",
		sinks:   []string{sinkKafka},
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.dur/4) {
				return nil
			}
			r.logf("stop kfake")
			r.kafka.stop()
			sleepCtx(ctx, r.p.outage)
			r.logf("start kfake")
			if err := r.kafka.start(); err != nil {
				return err
			}
			r.faultEnd(time.Now())
			r.note("gone for %s", r.p.outage)
			return nil
		},
		explain: func(res *result) []string {
			if res.broker.Dup == 0 {
				return nil
			}
			return []string{"Kafka duplicates: a produce request in flight when the broker closed is written again after it returns (the writer cannot know whether it was stored); Kafka has no broker-side deduplication here (README: at-least-once)."}
		},
	}
}

func rowBridgeKill() *row {
	return &row{
		key: "bridge-kill", fault: "Bridge SIGKILL at random moments",
		checked: "ssebridge is SIGKILLed at random moments under load and restarted at once; it resumes from its checkpoint",
		sinks:   both,
		inject: func(ctx context.Context, r *rowRun) error {
			times := make([]time.Duration, r.p.kills)
			for i := range times {
				times[i] = r.p.dur/10 + time.Duration(r.rng.Int64N(int64(r.p.dur*8/10)))
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			for _, d := range times {
				if !r.at(ctx, d) {
					return nil
				}
				r.logf("SIGKILL ssebridge")
				r.br.cur().kill()
				sleepCtx(ctx, time.Duration(r.rng.IntN(300))*time.Millisecond)
				if err := r.br.start(ctx); err != nil {
					return err
				}
				r.restarted(r.br.started)
			}
			r.note("%d kills; recovery is counted from each restart (process start)", len(times))
			return nil
		},
		explain: func(res *result) []string {
			switch {
			case res.sink == sinkKafka && res.broker.Dup > 0:
				return []string{fmt.Sprintf("Kafka duplicates (%.1f per kill): after a crash the source resumes from its last checkpoint, so the events stored after the last save (checkpoints are saved every 100 ms or 1000 events) and any batch written but not yet acknowledged when the process died are fetched and written again; Kafka keeps both copies (at-least-once, as the README states)", float64(res.broker.Dup)/float64(max(res.faults, 1)))}
			case res.sink == sinkNATS && res.broker.Dup == 0:
				return []string{"JetStream: the replayed tail after each crash is dropped by the stream's duplicate window (same Nats-Msg-Id for the same event)."}
			}
			return dupsNone(res)
		},
	}
}

func rowSigterm() *row {
	return &row{
		key: "sigterm", fault: "SIGTERM under load",
		checked: "ssebridge gets SIGTERM under load, must drain, save its checkpoint and exit 0 within shutdown_timeout; then it is started again",
		sinks:   both,
		inject: func(ctx context.Context, r *rowRun) error {
			for i := 1; i <= r.p.terms; i++ {
				if !r.at(ctx, r.p.dur*time.Duration(i)/time.Duration(r.p.terms+1)) {
					return nil
				}
				p := r.br.cur()
				t := time.Now()
				p.sig(syscall.SIGTERM)
				code, sig, ok := p.wait(20 * time.Second)
				if !ok {
					r.problem(fmt.Sprintf("SIGTERM %d: still running after 20 s", i))
					p.kill()
				} else {
					r.note("SIGTERM %d: exit code %d%s after %s", i, code, sig, time.Since(t).Round(time.Millisecond))
					if code != 0 {
						r.problem(fmt.Sprintf("SIGTERM %d: exit code %d, not 0", i, code))
					}
				}
				if err := r.br.start(ctx); err != nil {
					return err
				}
				r.restarted(r.br.started)
			}
			return nil
		},
		explain: dupsNone,
	}
}

// checkpointDir is where the bridge keeps its checkpoint files.
func (r *rowRun) checkpointDir() string { return filepath.Join(r.spec.dataDir, "checkpoints") }

func (r *rowRun) checkpoints() string {
	var parts []string
	ents, _ := os.ReadDir(r.checkpointDir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(r.checkpointDir(), e.Name())
		if pipeline, id, err := checkpoint.Inspect(path); err == nil && pipeline != "" {
			parts = append(parts, fmt.Sprintf("%s at id %s", pipeline, id))
		} else {
			b, _ := os.ReadFile(path)
			parts = append(parts, fmt.Sprintf("%s=%.60s", e.Name(), strings.TrimSpace(string(b))))
		}
	}
	return strings.Join(parts, " ")
}

// watchReady polls /readyz and /api/status until ctx ends and says what it saw.
func (r *rowRun) watchReady(ctx context.Context) (string, map[int]int) {
	codes := map[int]int{}
	states := map[string]bool{}
	firstVal := map[string]string{}
	for ctx.Err() == nil {
		code, _ := httpGet(context.Background(), "http://"+r.spec.httpAddr+"/readyz")
		codes[code]++
		_, st := httpGet(context.Background(), "http://"+r.spec.httpAddr+"/api/status")
		var doc struct {
			Pipelines []map[string]any `json:"pipelines"`
		}
		if json.Unmarshal([]byte(st), &doc) == nil {
			for _, p := range doc.Pipelines {
				states[fmt.Sprintf("state=%v", p["state"])] = true
				for k, v := range p {
					if k == "name" || k == "url" {
						continue
					}
					lk := strings.ToLower(k)
					if strings.Contains(lk, "checkpoint") || strings.Contains(lk, "unsaved") {
						states[k] = true
						if _, ok := firstVal[k]; !ok && (strings.Contains(lk, "error") || strings.Contains(lk, "unsaved")) && !strings.Contains(lk, "since") {
							firstVal[k] = fmt.Sprintf("%.80v", v)
						}
					}
				}
			}
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	var ks []string
	for k, v := range codes {
		ks = append(ks, fmt.Sprintf("%d×%d", k, v))
	}
	sort.Strings(ks)
	var ss []string
	for k := range states {
		ss = append(ss, k)
	}
	sort.Strings(ss)
	var vs []string
	for k, v := range firstVal {
		vs = append(vs, fmt.Sprintf("%s first read %q", k, v))
	}
	sort.Strings(vs)
	out := fmt.Sprintf("/readyz answered %s; /api/status pipelines showed %s", strings.Join(ks, " "), strings.Join(ss, ", "))
	if len(vs) > 0 {
		out += " (" + strings.Join(vs, "; ") + ")"
	}
	return out, codes
}

func countLogLines(path, substr string, since time.Time) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(substr)) && bytes.Contains(sc.Bytes(), []byte(`"level":"WARN"`)) {
			n++
		}
	}
	return n
}

func rowCheckpointRO() *row {
	return &row{
		key: "checkpoint-readonly", fault: "Checkpoint store read-only, and back",
		checked: "the checkpoint directory is made unwritable (chmod 0555, with the bridge running as an unprivileged user so the permission holds) twice: once it is made writable again while running, once the bridge is SIGKILLed while it is unwritable and restarted after it is writable",
		sinks:   both,
		setup: func(r *rowRun) {
			// Both read-only spans and the pause between them fit in the feed.
			r.p.dur = max(r.p.dur, 2*r.p.outage+4*time.Second)
			for _, f := range r.feeds {
				f.total = r.p.total()
			}
			// A bound the read-only span exceeds: forwarding must pause at
			// it, and the crash must replay at most that many.
			r.spec.checkpointMaxUnsaved = int(r.p.rate * r.p.outage.Seconds() / 4)
			r.maxDup = r.spec.checkpointMaxUnsaved
			r.note("configured checkpoint_max_unsaved: %d (a quarter of the events of one read-only span)", r.spec.checkpointMaxUnsaved)
		},
		inject: func(ctx context.Context, r *rowRun) error {
			ck := r.checkpointDir()
			ro := r.p.outage
			// Phase A: read-only, then writable again while running.
			if !r.at(ctx, r.p.dur/10) {
				return nil
			}
			before := r.checkpoints()
			warns0 := countLogLines(r.br.logPath, "checkpoint", time.Time{})
			if err := os.Chmod(ck, 0o555); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
			r.logf("checkpoints read-only")
			wctx, stop := context.WithTimeout(ctx, ro)
			seen, codes := r.watchReady(wctx)
			stop()
			during := r.checkpoints()
			warns := countLogLines(r.br.logPath, "checkpoint", time.Time{}) - warns0
			if err := os.Chmod(ck, 0o755); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
			r.faultEnd(time.Now())
			r.logf("checkpoints writable")
			r.note("phase A (read-only %s while running): %s; %d WARN lines mentioning checkpoint; checkpoints before [%s], at the end of the read-only span [%s]", ro, seen, warns, before, during)
			sleepCtx(ctx, 1500*time.Millisecond)
			after := r.checkpoints()
			r.note("phase A: 1.5 s after writable again, checkpoints [%s]", after)
			if codes[http.StatusServiceUnavailable] == 0 {
				r.problem("/readyz never answered 503 while the checkpoint store failed")
			}
			if maxWarn := 2 * (int(ro/time.Second) + 1); warns > maxWarn {
				r.problem(fmt.Sprintf("%d WARN lines about checkpoints in %s, more than one per second per pipeline", warns, ro))
			}
			if after == during {
				r.problem("the checkpoints did not advance within 1.5 s of the store being writable again")
			}
			// Phase B: read-only, crash, writable, restart.
			if err := os.Chmod(ck, 0o555); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
			r.logf("checkpoints read-only, then SIGKILL")
			sleepCtx(ctx, ro)
			r.note("phase B: SIGKILL after %s read-only, checkpoints [%s]", ro, r.checkpoints())
			r.br.cur().kill()
			if err := os.Chmod(ck, 0o755); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
			if err := r.br.start(ctx); err != nil {
				return err
			}
			r.restarted(r.br.started)
			return nil
		},
		explain: func(res *result) []string {
			if res.broker.Dup == 0 {
				return nil
			}
			return []string{fmt.Sprintf("%d duplicates: after the crash in phase B the source replays from the last checkpoint it could save, so the events acknowledged while the store was unwritable are fetched again (Kafka keeps both copies; JetStream's duplicate window drops them). checkpoint_max_unsaved bounds that replay: the row fails if it exceeds it", res.broker.Dup)}
		},
	}
}

func rowBrokerDownAtStart() *row {
	rw := &row{
		key: "broker-down-at-start", fault: "Broker down at start",
		checked: "ssebridge starts while nats-server and Kafka are not running; they start after the outage; recovery is from the broker's start to the first event stored",
		sinks:   both,
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.outage) {
				return nil
			}
			r.logf("start brokers")
			if err := r.startBrokers(ctx); err != nil {
				return err
			}
			r.brokersUp = time.Now()
			r.faultEnd(r.brokersUp)
			r.note("brokers started %s after the bridge", r.p.outage)
			return nil
		},
	}
	rw.setup = func(r *rowRun) {
		r.brokersLate = true
		rw.explain = func(res *result) []string {
			fails, started := pipelineLog(r.br.logPath, pipelineName(res.sink))
			msg := fmt.Sprintf("the bridge's log: %d pipeline set-up failures", fails)
			if !started.IsZero() && !r.brokersUp.IsZero() {
				msg += fmt.Sprintf(", then \"pipeline started\" %s after the broker started", fmtDur(started.Sub(r.brokersUp).Round(time.Millisecond)))
			}
			return append(dupsNone(res), msg)
		}
	}
	return rw
}

// pipelineLog reads the bridge's JSON log: how many times the pipeline's
// set-up failed, and when it last started.
func pipelineLog(path, pipeline string) (fails int, started time.Time) {
	f, err := os.Open(path)
	if err != nil {
		return 0, time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Pipeline string    `json:"pipeline"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Pipeline != pipeline {
			continue
		}
		switch l.Msg {
		case "pipeline failed, retrying":
			fails++
		case "pipeline started":
			started = l.Time
		}
	}
	return fails, started
}

var symbols = []string{"BTC", "ETH", "SOL"}

func rowRepeatingIDs() *row {
	return &row{
		key: "repeating-ids", fault: "Repeating event ids",
		checked: "the feed's ids repeat (BTC, ETH, SOL, BTC, … each with different data, as per-symbol tickers do); every distinct event must be stored; halfway the bridge is SIGKILLed and, as such an id names no position, the feed replays from its start: JetStream must drop the replayed copies and only those",
		sinks:   both,
		setup: func(r *rowRun) {
			for _, f := range r.feeds {
				f.idOf = func(seq int) string { return symbols[seq%len(symbols)] }
				f.dataOf = func(seq int) []byte {
					return fmt.Appendf(nil, `{"seq":%d,"sym":%q,"price":%d.%02d}`, seq, symbols[seq%len(symbols)], 1000+seq%97, seq%100)
				}
				// The id names no position: a reconnection replays from the start.
				f.resume = func(string) int { return 1 }
			}
		},
		inject: func(ctx context.Context, r *rowRun) error {
			if !r.at(ctx, r.p.dur/2) {
				return nil
			}
			r.logf("SIGKILL ssebridge")
			r.br.cur().kill()
			if err := r.br.start(ctx); err != nil {
				return err
			}
			r.restarted(r.br.started)
			return nil
		},
		explain: func(res *result) []string {
			if res.broker.Dup == 0 {
				return nil
			}
			out := []string{"duplicates: an id such as BTC names no position, so after the kill the feed replays from its start; Kafka keeps every copy, JetStream drops the copies of the same event (same id, type and data) in its duplicate window"}
			if res.sink == sinkNATS && len(res.broker.DupSample) > 0 && res.broker.DupSample[0] == 1 {
				out = append(out, "JetStream stored seq 1 twice: after the kill the first replayed event's id equalled the checkpoint's id (the last acknowledged event's, one chance in three here), and the source takes an id equal to the previous one for an inherited id, which gets no Nats-Msg-Id: the residual case the sink documents (repeated, never lost)")
			}
			return out
		},
	}
}
