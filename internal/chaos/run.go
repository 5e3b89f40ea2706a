package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errSetup marks a row that failed before any fault was injected.
var errSetup = errors.New("set-up")

// params scale a run: -quick keeps every row to a few seconds.
type params struct {
	quick    bool
	rate     float64       // events per second per pipeline
	dur      time.Duration // how long the feed produces
	outage   time.Duration // broker outage, stall, read-only span
	kills    int           // bridge SIGKILLs
	terms    int           // bridge SIGTERMs
	bigLine  int64         // bytes of the hostile line
	settle   time.Duration // longest wait for the tail after the feed ends
	idleStop time.Duration // give up settling after this long without progress
}

func quickParams() params {
	return params{quick: true, rate: 200, dur: 4 * time.Second, outage: 2 * time.Second, kills: 3, terms: 1,
		bigLine: 64 << 20, settle: 30 * time.Second, idleStop: 6 * time.Second}
}

func fullParams() params {
	return params{rate: 400, dur: 20 * time.Second, outage: 10 * time.Second, kills: 15, terms: 2,
		bigLine: 1 << 30, settle: 60 * time.Second, idleStop: 12 * time.Second}
}

func (p params) total() int { return int(p.rate * p.dur.Seconds()) }

// A row is one fault of the table.
type row struct {
	key     string // -rows name
	fault   string // first column
	checked string // what the row checks
	sinks   []string
	// setup adjusts feeds, config and subscribers before anything starts.
	setup func(r *rowRun)
	// inject runs while the feed produces; it returns when the fault is over.
	inject func(ctx context.Context, r *rowRun) error
	// explain says where the duplicates (or other figures) come from.
	explain func(res *result) []string
}

// rowRun is the state of one row being run.
type rowRun struct {
	p      params
	row    *row
	h      *harness
	dir    string
	rng    *rand.Rand
	spec   configSpec
	nats   *natsServer
	kafka  *kafkaBroker
	br     *bridge
	feeds  map[string]*feed
	broker map[string]*tally
	subs   map[string][]*subscriber // [0] is the reader every row counts
	skip   map[string]map[int]bool  // seqs not expected at the broker (hostile)

	attempt     int       // 2 when the row is set up a second time
	brokersLate bool      // broker down at start
	brokersUp   time.Time // when they started, then
	maxDup      int       // when > 0, more duplicates at the broker fail the row
	t0          time.Time

	mu        sync.Mutex
	faultEnds map[string][]faultMark // per sink; recovery is measured from each
	notes     []string               // row notes, shared by its sinks
	problems  []string               // failed checks, shared by its sinks
	sinkNotes map[string][]string
}

func (r *rowRun) logf(format string, a ...any) {
	fmt.Fprintf(r.h.log, "  [%s +%5.1fs] %s\n", r.row.key, time.Since(r.t0).Seconds(), fmt.Sprintf(format, a...))
}

func (r *rowRun) note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
}

// problem records a failed check of the row (beyond the counts).
func (r *rowRun) problem(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, msg)
}

func (r *rowRun) sinkNote(sink, format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sinkNotes[sink] = append(r.sinkNotes[sink], fmt.Sprintf(format, a...))
}

// faultEnd records that the fault ended at t for the given sinks (all when none).
func (r *rowRun) faultEnd(t time.Time, sinks ...string) { r.addFaultEnd(faultMark{at: t}, sinks) }

// restarted records that the bridge was started again at t after a fault.
func (r *rowRun) restarted(t time.Time) { r.addFaultEnd(faultMark{at: t, restart: true}, nil) }

func (r *rowRun) addFaultEnd(m faultMark, sinks []string) {
	if len(sinks) == 0 {
		sinks = r.row.sinks
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sinks {
		r.faultEnds[s] = append(r.faultEnds[s], m)
	}
}

// faultMark is the end of one fault, which recovery is measured from.
type faultMark struct {
	at      time.Time
	restart bool // the bridge process was started again
}

// at sleeps until t0+d; false when ctx ended first.
func (r *rowRun) at(ctx context.Context, d time.Duration) bool {
	sleepCtx(ctx, time.Until(r.t0.Add(d)))
	return ctx.Err() == nil
}

// result is one line of the table: a row on one sink.
type result struct {
	row        *row
	sink       string
	sent       int
	broker     counts
	sub        counts
	recovery   time.Duration
	recovered  int // fault ends followed by a new event
	faults     int
	rss        int64
	notes      []string
	err        error
	extraLoss  int // losses of other subscribers (stalled ones)
	maxDup     int // > 0: the most duplicates the row allows at the broker
	problems   []string
	bridgeLogs string
}

func (res *result) lost() int { return res.broker.Lost + res.sub.Lost + res.extraLoss }

func (res *result) ok() bool {
	return res.err == nil && res.lost() == 0 && res.broker.Foreign == 0 && res.sub.Foreign == 0 &&
		res.broker.Corrupt == 0 && res.sub.Corrupt == 0 && res.recovered == res.faults &&
		(res.maxDup <= 0 || res.broker.Dup <= res.maxDup) && len(res.problems) == 0
}

// harness holds what every row shares.
type harness struct {
	bins binaries
	work string
	log  *os.File
	cred *syscall.Credential
	seed uint64
}

func (h *harness) runRow(ctx context.Context, rw *row, p params) []*result {
	r := &rowRun{p: p, row: rw, h: h, rng: rand.New(rand.NewPCG(h.seed, uint64(len(rw.key)))),
		feeds: map[string]*feed{}, broker: map[string]*tally{}, subs: map[string][]*subscriber{},
		skip: map[string]map[int]bool{}, faultEnds: map[string][]faultMark{}, sinkNotes: map[string][]string{},
		t0: time.Now()}
	results, err := r.execute(ctx)
	if errors.Is(err, errSetup) && ctx.Err() == nil {
		// A loopback port picked free may have been taken by another
		// program in the meantime: set the row up once more, on new ports.
		fmt.Fprintf(h.log, "  [%s] set-up failed (%v); once more on new ports\n", rw.key, err)
		first := err
		r = &rowRun{p: p, row: rw, h: h, rng: rand.New(rand.NewPCG(h.seed+1, uint64(len(rw.key)))),
			feeds: map[string]*feed{}, broker: map[string]*tally{}, subs: map[string][]*subscriber{},
			skip: map[string]map[int]bool{}, faultEnds: map[string][]faultMark{}, sinkNotes: map[string][]string{},
			t0: time.Now(), attempt: 2}
		r.note("set up a second time after: %v", first)
		results, err = r.execute(ctx)
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if err != nil {
		res := make([]*result, 0, len(rw.sinks))
		for _, s := range rw.sinks {
			res = append(res, &result{row: rw, sink: s, err: err, sent: p.total()})
		}
		results = res
	}
	for _, res := range results {
		if r.br != nil {
			res.bridgeLogs = r.br.logPath
		}
	}
	return results
}

func (r *rowRun) execute(ctx context.Context) ([]*result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.dir = filepath.Join(r.h.work, r.row.key)
	if r.attempt > 1 {
		r.dir += fmt.Sprintf("-%d", r.attempt)
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("row dir: %w", err)
	}
	ports := make([]int, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	r.nats = &natsServer{bin: r.h.bins.nats, dir: filepath.Join(r.dir, "nats"), logPath: filepath.Join(r.dir, "nats.log"), port: ports[0]}
	r.kafka = &kafkaBroker{dir: filepath.Join(r.dir, "kafka"), port: ports[1]}
	defer r.nats.stop()
	defer r.kafka.stop()

	// The feed server.
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("feed listen: %w", err)
	}
	mux := http.NewServeMux()
	for i, s := range r.row.sinks {
		f := newFeed(s, r.p.total(), r.p.rate, r.h.seed+uint64(i))
		r.feeds[s] = f
		mux.Handle("/feed/"+s, f)
		r.broker[s] = newTally()
		r.skip[s] = map[int]bool{}
	}
	fsrv := &http.Server{Handler: mux, ErrorLog: nil}
	fsrv.SetKeepAlivesEnabled(false)
	go fsrv.Serve(fl)
	defer fsrv.Close()

	dataDir := filepath.Join(r.dir, "data")
	if err := mkdirFor(dataDir, r.h.cred); err != nil {
		return nil, err
	}
	r.spec = configSpec{dataDir: dataDir, httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[2]), natsURL: r.nats.url(),
		kafkaAddr: r.kafka.addr(), sinks: r.row.sinks,
		feedURL: func(s string) string { return "http://" + fl.Addr().String() + "/feed/" + s }}
	for _, s := range r.row.sinks {
		r.subs[s] = []*subscriber{newSubscriber("reader", "http://"+r.spec.httpAddr+"/sse/"+s)}
	}
	if r.row.setup != nil {
		r.row.setup(r)
	}
	// Unless the row checks the data its own way, every record must carry
	// exactly the data the feed sent (no truncated or merged event).
	for _, s := range r.row.sinks {
		f := r.feeds[s]
		same := func(seq int, got []byte) bool { return bytes.Equal(got, f.data(seq)) }
		for _, t := range append([]*tally{r.broker[s]}, tallies(r.subs[s])...) {
			if t.check == nil {
				t.check = same
			}
		}
	}
	cfg := filepath.Join(r.dir, "ssebridge.yaml")
	if err := os.WriteFile(cfg, []byte(r.spec.yaml()), 0o644); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	r.br = &bridge{bin: r.h.bins.bridge, cfgPath: cfg, dataDir: dataDir, logPath: filepath.Join(r.dir, "ssebridge.log"),
		addr: r.spec.httpAddr, cred: r.h.cred}
	defer func() {
		if p := r.br.cur(); p != nil {
			p.kill()
		}
	}()

	if !r.brokersLate {
		if err := r.startBrokers(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", errSetup, err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	for _, s := range r.row.sinks {
		t := r.broker[s]
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch s {
			case sinkNATS:
				readJetStream(readCtx, r.nats.url(), jsStream, t)
			case sinkKafka:
				readKafka(readCtx, r.kafka.addr(), kafkaTopic, t)
			}
		}()
	}
	r.t0 = time.Now()
	if err := r.br.start(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errSetup, err)
	}
	for _, s := range r.row.sinks {
		for _, sub := range r.subs[s] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sub.run(readCtx)
			}()
		}
	}
	r.t0 = time.Now()
	for _, f := range r.feeds {
		f.start(r.t0)
	}
	r.logf("feeds started: %d events per pipeline at %.0f/s", r.p.total(), r.p.rate)
	if r.row.inject != nil {
		if err := r.row.inject(ctx, r); err != nil {
			return nil, fmt.Errorf("inject: %w", err)
		}
	}
	sleepCtx(ctx, time.Until(r.t0.Add(r.p.dur)))
	r.settle(ctx)
	r.scrape(ctx)
	stopReaders()
	wg.Wait()
	// A clean stop at the end: it must drain and exit 0.
	if p := r.br.cur(); p != nil && p.alive() {
		p.sig(syscall.SIGTERM)
		if code, sig, ok := p.wait(20 * time.Second); !ok {
			r.problem("final SIGTERM: bridge still running after 20 s, killed")
		} else if code != 0 {
			r.problem(fmt.Sprintf("final SIGTERM: bridge exited with code %d %s", code, sig))
		}
	}
	return r.results(), nil
}

func (r *rowRun) startBrokers(ctx context.Context) error {
	for _, s := range r.row.sinks {
		switch s {
		case sinkNATS:
			if err := r.nats.start(ctx); err != nil {
				return fmt.Errorf("nats-server: %w", err)
			}
		case sinkKafka:
			if err := r.kafka.start(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *rowRun) expected(sink string) []int {
	var e []int
	for s := 1; s <= r.feeds[sink].total; s++ {
		if !r.skip[sink][s] {
			e = append(e, s)
		}
	}
	return e
}

func (r *rowRun) complete() bool {
	for _, s := range r.row.sinks {
		exp := r.expected(s)
		for _, t := range append([]*tally{r.broker[s]}, tallies(r.subs[s])...) {
			for _, q := range exp {
				if !t.has(q) {
					return false
				}
			}
		}
	}
	return true
}

func tallies(subs []*subscriber) []*tally {
	ts := make([]*tally, len(subs))
	for i, s := range subs {
		ts[i] = s.t
	}
	return ts
}

// settle waits for the tail: until every observer has every event, or no
// progress for idleStop, or settle passed.
func (r *rowRun) settle(ctx context.Context) {
	deadline := time.Now().Add(r.p.settle)
	lastTotal, lastChange := -1, time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if r.complete() {
			r.logf("all events seen by every observer")
			return
		}
		tot := 0
		for _, s := range r.row.sinks {
			tot += r.broker[s].total()
			for _, sub := range r.subs[s] {
				tot += sub.t.total()
			}
		}
		if tot != lastTotal {
			lastTotal, lastChange = tot, time.Now()
		} else if time.Since(lastChange) > r.p.idleStop {
			r.logf("no progress for %s: giving up the tail", r.p.idleStop)
			return
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	r.logf("settle timeout")
}

// scrape keeps the bridge's own figures for the notes.
func (r *rowRun) scrape(ctx context.Context) {
	code, body := httpGet(ctx, "http://"+r.spec.httpAddr+"/metrics")
	if code != http.StatusOK {
		return
	}
	for _, s := range r.row.sinks {
		pl := fmt.Sprintf(`pipeline="%s"`, pipelineName(s))
		var parts []string
		add := func(label string, v float64) {
			if v > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", label, v))
			}
		}
		add("sink duplicates (broker dedup)", metric(body, "ssebridge_sink_duplicates_total", pl))
		add("events failed", metric(body, "ssebridge_pipeline_events_failed_total", pl))
		add("reconnects", metric(body, "ssebridge_pipeline_reconnects_total", pl))
		add("slow subscribers disconnected", metric(body, "ssebridge_stream_slow_subscriber_disconnects_total", fmt.Sprintf(`stream="/sse/%s"`, s)))
		add("subscriber resumes from an expired position", metric(body, "ssebridge_stream_resume_expired_total", fmt.Sprintf(`stream="/sse/%s"`, s)))
		if len(parts) > 0 {
			r.sinkNote(s, "last bridge process's metrics: %s", strings.Join(parts, ", "))
		}
		for _, reason := range []string{"too_large", "decode", "unroutable"} {
			if v := metric(body, "ssebridge_pipeline_events_failed_total", pl, `reason="`+reason+`"`); v > 0 {
				r.sinkNote(s, "events_failed{reason=%q} = %.0f", reason, v)
			}
		}
	}
}

func (r *rowRun) results() []*result {
	var out []*result
	for _, s := range r.row.sinks {
		exp := r.expected(s)
		res := &result{row: r.row, sink: s, sent: r.feeds[s].total, rss: r.br.peakRSS(), maxDup: r.maxDup}
		res.broker = r.broker[s].counts(exp)
		subs := r.subs[s]
		res.sub = subs[0].t.counts(exp)
		res.sub.Received = subs[0].t.total()
		if len(subs) > 1 {
			var parts []string
			for _, sub := range subs[1:] {
				c := sub.t.counts(exp)
				res.extraLoss += c.Lost
				parts = append(parts, fmt.Sprintf("%s %d / %d / %d / %s", sub.name, c.Lost, c.Dup, c.OOO, sub.summary()))
			}
			res.notes = append(res.notes, "other subscribers (never received by the end of the row / duplicated / out of order / connections): "+strings.Join(parts, "; "))
		}
		r.mu.Lock()
		ends := append([]faultMark(nil), r.faultEnds[s]...)
		res.notes = append(res.notes, r.notes...)
		res.problems = append(res.problems, r.problems...)
		for _, p := range r.problems {
			res.notes = append(res.notes, "FAILED CHECK: "+p)
		}
		res.notes = append(res.notes, r.sinkNotes[s]...)
		r.mu.Unlock()
		sort.Slice(ends, func(i, j int) bool { return ends[i].at.Before(ends[j].at) })
		for _, m := range ends {
			d, ok, done := r.broker[s].recovery(m.at, len(exp), m.restart)
			if done {
				continue // everything was delivered before: nothing to recover
			}
			res.faults++
			if ok {
				res.recovered++
				res.recovery = max(res.recovery, d)
			}
		}
		if res.broker.Gaps > 0 {
			res.notes = append(res.notes, fmt.Sprintf("the JetStream read-back found %d stream sequences missing", res.broker.Gaps))
		}
		if res.broker.Lost > 0 {
			res.notes = append(res.notes, fmt.Sprintf("broker is missing seq %v…", res.broker.LostSample))
		}
		if res.sub.Lost > 0 {
			res.notes = append(res.notes, fmt.Sprintf("reader subscriber is missing seq %v… (%s)", res.sub.LostSample, subs[0].summary()))
		}
		if res.broker.Dup > 0 && res.sink == sinkNATS {
			res.notes = append(res.notes, fmt.Sprintf("seqs stored more than once in the stream: %v", res.broker.DupSample))
		}
		if res.broker.Foreign+res.sub.Foreign > 0 {
			res.notes = append(res.notes, fmt.Sprintf("%d broker / %d subscriber records carry no seq (not from the feed's events)", res.broker.Foreign, res.sub.Foreign))
		}
		if res.broker.Corrupt+res.sub.Corrupt > 0 {
			res.notes = append(res.notes, fmt.Sprintf("%d broker / %d subscriber records differ from the data sent", res.broker.Corrupt, res.sub.Corrupt))
		}
		if res.maxDup > 0 && res.broker.Dup > res.maxDup {
			res.notes = append(res.notes, fmt.Sprintf("%d duplicates exceed the bound of %d", res.broker.Dup, res.maxDup))
		}
		if res.recovered < res.faults {
			res.notes = append(res.notes, fmt.Sprintf("%d of %d faults were never followed by a new event", res.faults-res.recovered, res.faults))
		}
		if r.row.explain != nil {
			res.notes = append(res.notes, r.row.explain(res)...)
		}
		out = append(out, res)
	}
	return out
}
