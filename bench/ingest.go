package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// Scenarios: where the events go.
const (
	scCore  = "core NATS"
	scJS    = "JetStream (acked)"
	scKafka = "Kafka (kfake)"
)

// contestant is one bridge of a scenario: ssebridge or a hand-written
// baseline (a role of this binary).
type contestant struct {
	name     string
	scenario string
	role     string // "" for ssebridge
}

func contestants() []contestant {
	return []contestant{
		{"ssebridge", scCore, ""},
		{"hand-written (nc.Publish)", scCore, roleCore},
		{"hand-written, same headers (nc.PublishMsg)", scCore, roleCoreHdr},
		{"ssebridge", scJS, ""},
		{"hand-written sync (js.Publish)", scJS, roleJSSync},
		{"hand-written async (js.PublishAsync)", scJS, roleJSAsync},
		{"hand-written async, same headers (js.PublishMsgAsync)", scJS, roleJSAsyncHdr},
		{"ssebridge", scKafka, ""},
		{"kafka-go Writer (100-event batches)", scKafka, roleKafkaGo},
	}
}

// ingestResult is one bridge process forwarding one run's events.
type ingestResult struct {
	c       contestant
	events  int
	elapsed time.Duration // from the feed connection to the last event stored
	cpu     time.Duration // the bridge process's CPU time over elapsed
	hwm     int64         // the bridge process's peak RSS, bytes
	note    string        // e.g. the order check
	err     error
}

func (r ingestResult) eps() float64 { return float64(r.events) / r.elapsed.Seconds() }

// cpuPerM is CPU seconds per million events.
func (r ingestResult) cpuPerM() float64 { return r.cpu.Seconds() / float64(r.events) * 1e6 }

// latencyResult is a steady-rate run: feed-to-stored latencies.
type latencyResult struct {
	c        contestant
	rate     float64
	events   int
	p50, p99 time.Duration
	max      time.Duration
	err      error
}

// harness runs bridge processes against the feed and the brokers.
type harness struct {
	feed      *feed
	br        *brokers
	dir       string
	ssebridge string // binary built from ../cmd/ssebridge
	self      string // this binary, for the hand-written roles
	logf      func(string, ...any)
	run       int
	perfDir   string // if set, ssebridge runs are profiled with perf into it
	match     string // if set, only contestants whose scenario/name contain it
}

func (h *harness) selected(c contestant) bool {
	return h.match == "" || strings.Contains(c.scenario+"/"+c.name, h.match)
}

// buildSSEBridge builds the product's binary from the repository.
func buildSSEBridge(repo, dir string) (string, error) {
	out := filepath.Join(dir, "ssebridge")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/ssebridge")...)
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build ssebridge: %w", err)
	}
	return out, nil
}

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ssebridgeConfig is the YAML of one ssebridge run.
func (h *harness) ssebridgeConfig(c contestant, runDir string) (string, error) {
	addr, err := freePort()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nshutdown_timeout: 5s\nhttp:\n  addr: %s\nlog:\n  level: warn\nnats:\n  url: %s\n", filepath.Join(runDir, "data"), addr, h.br.nats.ClientURL())
	if c.scenario == scKafka {
		fmt.Fprintf(&b, "kafka:\n  brokers: [%q]\n", h.br.kaddr)
	}
	fmt.Fprintf(&b, "pipelines:\n  - name: bench\n    source:\n      url: %s\n    sink:\n", h.feed.url)
	switch c.scenario {
	case scCore:
		fmt.Fprintf(&b, "      nats:\n        subject: %s\n", benchSubject)
	case scJS:
		fmt.Fprintf(&b, "      nats:\n        subject: %s\n        jetstream: true\n", benchSubject)
	case scKafka:
		fmt.Fprintf(&b, "      kafka:\n        topic: %s\n", benchTopic)
	}
	path := filepath.Join(runDir, "ssebridge.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// proc is a started bridge process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
}

// start starts c's bridge process, its output going to runDir/log.
func (h *harness) start(c contestant, runDir string) (*proc, error) {
	var cmd *exec.Cmd
	if c.role == "" {
		cfg, err := h.ssebridgeConfig(c, runDir)
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(h.ssebridge, "run", "-config", cfg)
	} else {
		cmd = exec.Command(h.self, "-role", c.role, "-feed", h.feed.url, "-nats", h.br.nats.ClientURL(), "-kafka", h.br.kaddr)
	}
	if raceEnabled {
		// The race detector sleeps a second at exit by default.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	log, err := os.Create(filepath.Join(runDir, "log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	return p, nil
}

// stop ends a bridge process: SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procCPU is the user+system CPU time of process pid, from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields from the state (field 3): utime is field 14, stime 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// procHWM is the peak resident set size of process pid, in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// counter returns how many events of the run reached the broker.
func (h *harness) counter(c contestant) (func() (int64, error), error) {
	switch c.scenario {
	case scCore:
		base, err := h.br.natsIn()
		if err != nil {
			return nil, err
		}
		return func() (int64, error) {
			n, err := h.br.natsIn()
			return n - base, err
		}, nil
	case scJS:
		if err := h.br.freshStream(); err != nil {
			return nil, err
		}
		return h.br.streamMsgs, nil
	default:
		base, err := h.br.kafkaEnd(context.Background())
		if err != nil {
			return nil, err
		}
		return func() (int64, error) {
			n, err := h.br.kafkaEnd(context.Background())
			return n - base, err
		}, nil
	}
}

// runOnce runs c's bridge until events of plan are stored and measures
// the process from the moment the feed accepted its connection.
func (h *harness) runOnce(c contestant, plan feedPlan, onStart func() error) (r ingestResult, cpu0 time.Duration, err error) {
	r.c, r.events = c, plan.events
	h.run++
	runDir := filepath.Join(h.dir, fmt.Sprintf("run%03d", h.run))
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return r, 0, err
	}
	defer removeAll(filepath.Join(runDir, "data"))
	count, err := h.counter(c)
	if err != nil {
		return r, 0, err
	}
	kafkaBase := int64(0)
	if c.scenario == scKafka {
		if kafkaBase, err = h.br.kafkaEnd(context.Background()); err != nil {
			return r, 0, err
		}
	}
	if onStart != nil {
		if err := onStart(); err != nil {
			return r, 0, err
		}
	}
	connected := h.feed.begin(plan)
	defer h.feed.end()
	p, err := h.start(c, runDir)
	if err != nil {
		return r, 0, err
	}
	defer p.stop()
	pid := p.cmd.Process.Pid
	var t0 time.Time
	select {
	case t0 = <-connected:
	case <-p.done:
		return r, 0, fmt.Errorf("%s exited (log: %s)", c.name, filepath.Join(runDir, "log"))
	case <-time.After(30 * time.Second):
		return r, 0, fmt.Errorf("%s did not connect to the feed (log: %s)", c.name, filepath.Join(runDir, "log"))
	}
	if cpu0, err = procCPU(pid); err != nil {
		return r, 0, err
	}
	if h.perfDir != "" && c.role == "" {
		name := strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(fmt.Sprintf("%s-%d-%d.perf", c.scenario, plan.events, h.run))
		perf := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", filepath.Join(h.perfDir, name))
		if err := perf.Start(); err != nil {
			return r, 0, fmt.Errorf("perf: %w", err)
		}
		defer func() {
			_ = perf.Process.Signal(syscall.SIGINT)
			_ = perf.Wait()
		}()
	}
	limit := 60*time.Second + time.Duration(plan.events)*time.Second/2000
	if plan.rate > 0 {
		limit += time.Duration(float64(plan.events)/plan.rate*float64(time.Second)) * 2
	}
	deadline := t0.Add(limit)
	for {
		n, err := count()
		if err != nil {
			return r, 0, fmt.Errorf("count: %w", err)
		}
		if n >= int64(plan.events) {
			if n > int64(plan.events) {
				// Only events should reach the broker: a bridge sending
				// anything else would end the run early.
				h.logf("note: %s counted %d messages for %d events", c.name, n, plan.events)
			}
			break
		}
		if time.Now().After(deadline) {
			return r, 0, fmt.Errorf("%s: %d of %d events after %v (log: %s)", c.name, n, plan.events, limit, filepath.Join(runDir, "log"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.elapsed = time.Since(t0)
	cpu1, err := procCPU(pid)
	if err != nil {
		return r, 0, err
	}
	r.cpu = cpu1 - cpu0
	if r.hwm, err = procHWM(pid); err != nil {
		return r, 0, err
	}
	if c.scenario == scKafka {
		if err := h.br.checkKafkaOrder(context.Background(), kafkaBase, plan.events); err != nil {
			r.err = fmt.Errorf("order check: %w", err)
		} else {
			r.note = "order kept"
		}
	}
	return r, cpu0, nil
}

// throughput runs every contestant at every size.
func (h *harness) throughput(sizes []int) []ingestResult {
	var out []ingestResult
	for _, sc := range []string{scCore, scJS, scKafka} {
		for _, n := range sizes {
			for _, c := range contestants() {
				if c.scenario != sc || !h.selected(c) {
					continue
				}
				r, _, err := h.runOnce(c, feedPlan{events: n}, nil)
				if err != nil {
					r.err = err
				}
				if r.err != nil {
					h.logf("%-18s %-54s %7d events: %v", sc, c.name, n, r.err)
				} else {
					h.logf("%-18s %-54s %7d events: %8.0f events/s  %5.2f CPU s/M  %4d MiB peak RSS %s", sc, c.name, n, r.eps(), r.cpuPerM(), r.hwm>>20, r.note)
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// latency runs the contestants that can keep up with a steady rate and
// measures feed-to-stored latency: for core NATS, until a subscriber of
// the harness receives the message; for JetStream, until the server
// stored it (the stored message's timestamp); for Kafka, until a
// consumer of the harness fetched the record.
func (h *harness) latency(rate float64, dur time.Duration) []latencyResult {
	var out []latencyResult
	n := int(rate * dur.Seconds())
	for _, c := range contestants() {
		if c.role == roleJSSync || !h.selected(c) {
			continue // sync JetStream cannot keep this rate
		}
		lr := latencyResult{c: c, rate: rate, events: n}
		var lat []time.Duration
		var mu sync.Mutex
		var sub *nats.Subscription
		var kafkaLat chan []time.Duration
		var kafkaErr error
		ctx, cancel := context.WithCancel(context.Background())
		onStart := func() error {
			if c.scenario == scKafka {
				from, err := h.br.kafkaEnd(ctx)
				if err != nil {
					return err
				}
				kafkaLat = make(chan []time.Duration, 1)
				go func() {
					l, err := h.br.consumeLatencies(ctx, from, n)
					kafkaErr = err
					kafkaLat <- l
				}()
				return nil
			}
			if c.scenario != scCore {
				return nil
			}
			var err error
			sub, err = h.br.nc.Subscribe("bench.>", func(m *nats.Msg) {
				now := time.Now()
				if t := field(m.Data, "t"); t > 0 {
					mu.Lock()
					lat = append(lat, now.Sub(time.Unix(0, t)))
					mu.Unlock()
				}
			})
			if err == nil {
				err = h.br.nc.Flush()
			}
			return err
		}
		_, _, err := h.runOnce(c, feedPlan{events: n, rate: rate}, onStart)
		if sub != nil {
			// Let the last messages arrive before counting.
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				got := len(lat)
				mu.Unlock()
				if got >= n || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			_ = sub.Unsubscribe()
		}
		if err == nil && c.scenario == scJS {
			lat, err = h.br.storedLatencies(n)
		}
		if kafkaLat != nil {
			if err != nil {
				cancel()
			}
			select {
			case l := <-kafkaLat:
				lat = l
				if err == nil {
					err = kafkaErr
				}
			case <-time.After(10 * time.Second):
				cancel()
				lat = <-kafkaLat
				if err == nil {
					err = fmt.Errorf("consumer: %d of %d records", len(lat), n)
				}
			}
		}
		cancel()
		mu.Lock()
		if err == nil && len(lat) < n {
			err = fmt.Errorf("%d latencies of %d events", len(lat), n)
		}
		if err == nil {
			slices.Sort(lat)
			lr.p50, lr.p99, lr.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
		}
		mu.Unlock()
		lr.err = err
		if err != nil {
			h.logf("latency %-18s %-54s: %v", c.scenario, c.name, err)
		} else {
			h.logf("latency %-18s %-54s %5.0f/s: p50 %v p99 %v max %v", c.scenario, c.name, rate, lr.p50.Round(10*time.Microsecond), lr.p99.Round(10*time.Microsecond), lr.max.Round(10*time.Microsecond))
		}
		out = append(out, lr)
	}
	return out
}
