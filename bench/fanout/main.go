// Command fanout measures how ssebridge's reverse streams serve many SSE
// subscribers of one stream, against a stock net/http streaming handler
// (one NATS subscription per request, one write and flush per event) and
// a "floor" server (one write per subscriber per event and nothing else,
// floor.go) run in the same way in the same run.
//
// Run it from bench/: go run ./fanout (a few minutes), or
// go run ./fanout -quick (1,000 subscribers, short phases). For each case
// it starts a fresh nats-server in a process of its own (built from the
// module's dependency, or taken from $SSEBRIDGE_TEST_BIN), or a kfake
// Kafka broker in this process for the "kafka" case, runs the bridge
// under test as a child process of its own (so its memory and CPU are
// measured alone) and the subscribers in another child process, on several
// loopback source addresses. For each case it reports the bridge's and
// nats-server's memory per idle subscriber, the p99 delay from publish to
// client and the bridge's CPU time per delivered event, and it writes them
// into the "Fan-out" section of BENCHMARKS.md with -out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ssebridge/ssebridge/sse"
	"github.com/ssebridge/ssebridge/streams"
)

// coalesce is the Coalesce setting of the "coalesced" server: a core
// stream whose writes gather the events of this long.
const coalesce = 25 * time.Millisecond

// profileDir, when set, receives a CPU profile of each server's
// publishing phase.
var profileDir = flag.String("profile", "", "write a CPU profile of each server's publishing phase into `dir`")

// h2, when set, serves HTTPS and subscribes over HTTP/2 (h2.go).
var h2 = flag.Bool("h2", false, "serve HTTPS and subscribe over HTTP/2, 250 subscribers per connection: counts past the open-file limit")

// perfDir, when set, receives a `perf record -g` of each server process
// over its publishing phase (kernel and user stacks).
var perfDir = flag.String("perf", "", "write a perf record -g of each server's publishing phase into `dir`")

const (
	subject = "fan.x"
	jsName  = "FAN"
	topic   = "fan"
)

func main() {
	var (
		role    = flag.String("role", "", "internal: server or client")
		natsURL = flag.String("nats", "", "internal: NATS URL (server role)")
		kafkaAt = flag.String("kafka", "", "internal: Kafka broker address (kafka server role)")
		url     = flag.String("url", "", "internal: stream URL (client role)")
		n       = flag.Int("n", 0, "internal: subscribers (client role)")
		subsF   = flag.String("subs", "1000,10000,19000", "comma-separated subscriber counts (1000 with -quick)")
		kinds   = flag.String("kinds", "baseline,floor,core,jetstream,coalesced,kafka", "comma-separated servers to measure")
		quick   = flag.Bool("quick", false, "a smoke run: short publishing phases, 1000 subscribers unless -subs is set")
		out     = flag.String("out", "", "write the Fan-out section into this BENCHMARKS.md")
	)
	flag.Parse()
	raiseFDLimit()
	subsSet := false
	flag.Visit(func(f *flag.Flag) { subsSet = subsSet || f.Name == "subs" })
	if *quick && !subsSet {
		*subsF = "1000"
	}
	var err error
	switch *role {
	case "baseline", "floor", "core", "jetstream", "coalesced", "kafka":
		err = runServer(*role, *natsURL, *kafkaAt)
	case "client":
		err = runClient(*url, *n)
	default:
		err = orchestrate(*subsF, *kinds, *quick, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// raiseFDLimit lifts the soft limit on open files to the hard one.
func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// ---- server role: the process under measurement ----

// stats is what a server reports of itself.
type stats struct {
	RSS        int64 `json:"rss"`    // bytes
	CPU        int64 `json:"cpu_ns"` // user+system
	Goroutines int   `json:"goroutines"`
	Writes     int64 `json:"writes"` // write system calls (syscw of /proc/self/io)
}

func selfStats() stats {
	s := stats{RSS: procRSS("self")}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.CPU = ru.Utime.Nano() + ru.Stime.Nano()
	}
	s.Goroutines = runtime.NumGoroutine()
	if b, err := os.ReadFile("/proc/self/io"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "syscw:"); ok {
				s.Writes, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return s
}

// procRSS is the resident set size in bytes of process pid ("self" for
// this one), or 0 if it cannot be read.
func procRSS(pid string) int64 {
	var rss int64
	if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	return rss
}

func runServer(kind, natsURL, kafkaAddr string) error {
	var h http.Handler
	if kind == "baseline" || kind == "floor" {
		nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect nats: %w", err)
		}
		defer nc.Close()
		if kind == "floor" {
			if h, err = floorHandler(nc); err != nil {
				return err
			}
		} else {
			h = baselineHandler(nc)
		}
	} else {
		c := streams.Config{Path: "/s"}
		var deps streams.Deps
		switch kind {
		case "kafka":
			c.Kafka = &streams.KafkaConfig{Topic: topic}
			deps.Kafka = streams.KafkaCluster{Brokers: []string{kafkaAddr}}
		default:
			nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
			if err != nil {
				return fmt.Errorf("connect nats: %w", err)
			}
			defer nc.Close()
			deps.NATS = nc
			c.NATS = &streams.NATSConfig{Subject: subject}
			switch kind {
			case "jetstream":
				c.NATS.JetStream = jsName
			case "coalesced":
				c.Coalesce = coalesce
			}
		}
		// Warnings (why subscribers were cut, a broker side that failed)
		// go to stderr, so a run that lost subscribers says why.
		deps.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		srv, err := streams.New([]streams.Config{c}, deps)
		if err != nil {
			return err
		}
		defer srv.Shutdown(context.Background())
		h = srv
	}
	mux := http.DefaultServeMux // with net/http/pprof, for -profile
	mux.Handle("/s", h)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(selfStats())
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String()) // the orchestrator waits for this line
	if *h2 {
		return serveHTTPS(ln, mux)
	}
	return http.Serve(ln, mux)
}

// baselineHandler is the stock way to stream a subject with net/http:
// a NATS subscription per request, one write and one flush per event.
func baselineHandler(nc *nats.Conn) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan *nats.Msg, 1024)
		sub, err := nc.ChanSubscribe(subject, ch)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer sub.Unsubscribe()
		if err := nc.Flush(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fl := w.(http.Flusher)
		fl.Flush()
		hb := time.NewTicker(15 * time.Second)
		defer hb.Stop()
		var id uint64
		for {
			select {
			case m := <-ch:
				id++
				if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", id, m.Data); err != nil {
					return
				}
				fl.Flush()
			case <-hb.C:
				if _, err := io.WriteString(w, ":\n"); err != nil {
					return
				}
				fl.Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
}

// ---- client role: the subscribers, in a process of their own ----

// clientReport is what the client process prints when told to stop.
type clientReport struct {
	Connected int     `json:"connected"`
	Failed    int     `json:"failed"`
	Events    int64   `json:"events"`
	Gaps      int64   `json:"gaps"`
	Ended     int64   `json:"ended"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

func runClient(url string, n int) error {
	// Spread the connections over loopback source addresses, so that
	// ephemeral ports do not run out.
	var next atomic.Uint64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		i := next.Add(1)
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%50))}
		d := net.Dialer{LocalAddr: src}
		return d.DialContext(ctx, network, addr)
	}
	tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: -1, ReadBufferSize: 4096, WriteBufferSize: 1024}
	hc := &http.Client{Transport: tr}

	var (
		mu        sync.Mutex
		lat       []int64 // ns, sampled
		events    atomic.Int64
		gaps      atomic.Int64
		ended     atomic.Int64
		connected atomic.Int64
		failed    atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// read reads subscriber i's stream until it ends or the run does.
	read := func(i int, resp *http.Response) {
		connected.Add(1)
		defer resp.Body.Close()
		dec := sse.NewDecoder(resp.Body)
		var last int64 = -1
		var local []int64
		for {
			ev, err := dec.Next()
			if err != nil {
				if ctx.Err() == nil {
					ended.Add(1)
				}
				break
			}
			now := time.Now().UnixNano()
			seqS, tsS, _ := strings.Cut(string(ev.Data), " ")
			seq, _ := strconv.ParseInt(seqS, 10, 64)
			ts, _ := strconv.ParseInt(strings.SplitN(tsS, " ", 2)[0], 10, 64)
			if last >= 0 && seq != last+1 {
				gaps.Add(1)
			}
			last = seq
			events.Add(1)
			if i%10 == 0 { // a sample of subscribers keeps memory flat
				local = append(local, now-ts)
			}
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	}
	if *h2 {
		subscribeH2(ctx, url, n, func(i int, resp *http.Response) {
			wg.Add(1)
			go func() { defer wg.Done(); read(i, resp) }()
		}, func() { failed.Add(1) })
	} else {
		sem := make(chan struct{}, 64) // connect at most 64 at a time
		for i := range n {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := hc.Do(req)
				<-sem
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					if err == nil {
						resp.Body.Close()
					}
					return
				}
				read(i, resp)
			}()
		}
		for len(sem) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Printf("ready %d %d\n", connected.Load(), failed.Load())
	// Stop on a line or EOF on stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	cancel()
	wg.Wait()
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	rep := clientReport{
		Connected: int(connected.Load()), Failed: int(failed.Load()),
		Events: events.Load(), Gaps: gaps.Load(), Ended: ended.Load(),
		P50: q(0.50), P99: q(0.99), Max: q(1),
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// ---- orchestrator ----

// result is one measured case.
type result struct {
	Kind       string
	Subs       int
	Rate       int // events per second
	Seconds    int
	Idle       int64    // bridge bytes per idle subscriber
	NATSIdle   int64    // nats-server bytes per idle subscriber
	NATSRSS    [2]int64 // nats-server RSS before the subscribers and idle after
	HasNATS    bool     // NATSIdle was measured (not the kafka case)
	Goroutines float64
	Client     clientReport
	Published  int
	CPUPerEv   float64 // ns of bridge CPU per delivered event
	// WritesPerEv is the server's write system calls per delivered event
	// (under 1: events leave several to a write).
	WritesPerEv float64
}

func orchestrate(subsF, kindsF string, quick bool, out string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	natsBin, cleanup, err := natsServerBinary()
	if err != nil {
		return err
	}
	defer cleanup()
	var results []result
	for _, f := range strings.Split(subsF, ",") {
		subs, _ := strconv.Atoi(strings.TrimSpace(f))
		if subs <= 0 {
			continue
		}
		// The load: 1,000 x 100 events/s and 10,000 x 10 events/s.
		rate := max(100000/subs, 1)
		if rate > 100 {
			rate = 100
		}
		secs := 10
		if quick {
			secs = 3
		}
		for _, kind := range strings.Split(kindsF, ",") {
			kind = strings.TrimSpace(kind)
			r, err := measure(self, natsBin, kind, subs, rate, secs)
			if err != nil {
				return fmt.Errorf("%s at %d: %w", kind, subs, err)
			}
			natsIdle := "-"
			if r.HasNATS {
				natsIdle = fmt.Sprintf("%.2f KiB/sub (%.1f->%.1f MiB)", float64(r.NATSIdle)/1024, float64(r.NATSRSS[0])/(1<<20), float64(r.NATSRSS[1])/(1<<20))
			}
			fmt.Printf("%-9s subs=%-6d idle=%6.1f KiB/sub nats-server=%s goroutines/sub=%.2f  %d ev/s x %ds: p50=%.1fms p99=%.1fms events=%d/%d gaps=%d ended=%d cpu/event=%.0fns writes/event=%.3f cpu/write=%.0fns\n",
				r.Kind, r.Subs, float64(r.Idle)/1024, natsIdle, r.Goroutines, r.Rate, r.Seconds, r.Client.P50, r.Client.P99,
				r.Client.Events, int64(r.Published)*int64(r.Client.Connected), r.Client.Gaps, r.Client.Ended, r.CPUPerEv,
				r.WritesPerEv, r.CPUPerEv/max(r.WritesPerEv, 1e-9))
			results = append(results, r)
		}
	}
	if out != "" {
		return writeReport(out, results)
	}
	return nil
}

// natsServerBinary returns the path of a nats-server binary: the one in
// $SSEBRIDGE_TEST_BIN (which .ci/run fills), or one built from the
// module's dependency into a temporary directory that cleanup removes.
func natsServerBinary() (path string, cleanup func(), err error) {
	if d := os.Getenv("SSEBRIDGE_TEST_BIN"); d != "" {
		p := filepath.Join(d, "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p, func() {}, nil
		}
	}
	dir, err := os.MkdirTemp("", "fanout-nats")
	if err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", p, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build nats-server (run from bench/): %v\n%s", err, out)
	}
	return p, func() { _ = os.RemoveAll(dir) }, nil
}

// natsProc is a nats-server with JetStream in a process of its own, so
// that its memory is measured alone.
type natsProc struct {
	cmd *exec.Cmd
	dir string
	url string
}

// startNATS starts a fresh nats-server from bin on a free loopback port
// and waits until it accepts connections.
func startNATS(bin string) (*natsProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "fanout-nats-run")
	if err != nil {
		return nil, err
	}
	// max_pending: the bridge's one connection reads for 10k+ subscribers
	// of the baseline.
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nmax_payload: 1048576\nmax_pending: 268435456\njetstream {\n  store_dir: %q\n}\n", port, filepath.Join(dir, "js"))
	cf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p := &natsProc{dir: dir, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	p.cmd = exec.Command(bin, "-c", cf) // its log (to stderr) is dropped
	if err := p.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("nats-server not ready on port %d: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rss is the nats-server's resident set size in bytes.
func (p *natsProc) rss() int64 { return procRSS(strconv.Itoa(p.cmd.Process.Pid)) }

func (p *natsProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(p.dir)
}

// publisher publishes one event of the case's broker.
type publisher func(data []byte) error

// broker starts the case's broker: a fresh nats-server (and the JetStream
// stream for "jetstream"), or a kfake cluster with the topic for "kafka".
// It returns the server role's flags, the publisher, the nats-server
// process (nil for kafka) and a function that stops it all.
func broker(natsBin, kind string) (args []string, pub publisher, np *natsProc, stop func(), err error) {
	if kind == "kafka" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("kfake: %w", err)
		}
		addr := c.ListenAddrs()[0]
		tr := &kafka.Transport{}
		w := &kafka.Writer{
			Addr: kafka.TCP(addr), Topic: topic, Transport: tr,
			RequiredAcks: kafka.RequireOne, BatchSize: 1, BatchTimeout: time.Millisecond,
		}
		pub = func(data []byte) error { return w.WriteMessages(context.Background(), kafka.Message{Value: data}) }
		stop = func() {
			_ = w.Close()
			tr.CloseIdleConnections()
			c.Close()
		}
		return []string{"-kafka", addr}, pub, nil, stop, nil
	}
	np, err = startNATS(natsBin)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	nc, err := nats.Connect(np.url)
	if err != nil {
		np.stop()
		return nil, nil, nil, nil, fmt.Errorf("connect nats: %w", err)
	}
	stop = func() {
		nc.Close()
		np.stop()
	}
	pub = func(data []byte) error { return nc.Publish(subject, data) }
	if kind == "jetstream" {
		js, err := jetstream.New(nc)
		if err == nil {
			_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: jsName, Subjects: []string{"fan.>"}, Storage: jetstream.MemoryStorage, MaxMsgs: 100000})
		}
		if err != nil {
			stop()
			return nil, nil, nil, nil, fmt.Errorf("jetstream stream: %w", err)
		}
		pub = func(data []byte) error {
			_, err := js.PublishAsync(subject, data)
			return err
		}
	}
	return []string{"-nats", np.url}, pub, np, stop, nil
}

func measure(self, natsBin, kind string, subs, rate, secs int) (result, error) {
	res := result{Kind: kind, Subs: subs, Rate: rate, Seconds: secs}
	args, publish, np, stopBroker, err := broker(natsBin, kind)
	if err != nil {
		return res, err
	}
	defer stopBroker()
	res.HasNATS = np != nil
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h2Arg := "-h2=" + strconv.FormatBool(*h2)
	srv := exec.CommandContext(ctx, self, append([]string{"-role", kind, h2Arg}, args...)...)
	srv.Stderr = os.Stderr
	so, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	addr, err := bufio.NewReader(so).ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("server: %w", err)
	}
	base, hc := "http://"+strings.TrimSpace(addr), http.DefaultClient
	if *h2 {
		base, hc = "https://"+strings.TrimSpace(addr), &http.Client{Transport: insecureTransport()}
		res.Kind += " (HTTP/2)"
	}
	getStats := func() (stats, error) {
		var s stats
		resp, err := hc.Get(base + "/stats")
		if err != nil {
			return s, err
		}
		defer resp.Body.Close()
		return s, json.NewDecoder(resp.Body).Decode(&s)
	}
	time.Sleep(500 * time.Millisecond)
	before, err := getStats()
	if err != nil {
		return res, err
	}
	var natsBefore int64
	if np != nil {
		natsBefore = np.rss()
	}

	cl := exec.CommandContext(ctx, self, "-role", "client", h2Arg, "-url", base+"/s", "-n", strconv.Itoa(subs))
	cl.Stderr = os.Stderr
	cin, _ := cl.StdinPipe()
	cout, _ := cl.StdoutPipe()
	if err := cl.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = cin.Close() // the client stops at EOF too, on an error path
		_ = cl.Wait()
	}()
	rd := bufio.NewReader(cout)
	line, err := rd.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("client: %w", err)
	}
	var connected, failed int
	fmt.Sscanf(line, "ready %d %d", &connected, &failed)
	if connected == 0 {
		return res, fmt.Errorf("no subscriber connected (%d failed)", failed)
	}
	time.Sleep(2 * time.Second) // let the connections settle
	idle, err := getStats()
	if err != nil {
		return res, err
	}
	if np != nil {
		res.NATSRSS = [2]int64{natsBefore, np.rss()}
		res.NATSIdle = (res.NATSRSS[1] - natsBefore) / int64(connected)
	}
	if *profileDir != "" {
		go func() {
			resp, err := hc.Get(base + "/debug/pprof/profile?seconds=" + strconv.Itoa(max(secs-1, 1)))
			if err == nil {
				defer resp.Body.Close()
				f, err := os.Create(fmt.Sprintf("%s/%s-%d.pprof", *profileDir, kind, subs))
				if err == nil {
					_, _ = io.Copy(f, resp.Body)
					f.Close()
				}
			}
		}()
	}
	if *perfDir != "" {
		out := fmt.Sprintf("%s/%s-%d.perf", *perfDir, kind, subs)
		rec := exec.CommandContext(ctx, "perf", "record", "-g", "-o", out, "-p", strconv.Itoa(srv.Process.Pid), "--", "sleep", strconv.Itoa(max(secs-1, 1)))
		rec.Stdout, rec.Stderr = io.Discard, io.Discard
		if err := rec.Start(); err != nil {
			return res, fmt.Errorf("perf: %w", err)
		}
		defer rec.Wait()
	}
	res.Idle = (idle.RSS - before.RSS) / int64(connected)
	res.Goroutines = float64(idle.Goroutines-before.Goroutines) / float64(connected)

	// Publish at rate events/s for secs seconds; the data carries its
	// sequence and the publish time.
	total := rate * secs
	tick := time.NewTicker(time.Second / time.Duration(rate))
	pad := strings.Repeat("x", 100)
	for i := 1; i <= total; i++ {
		<-tick.C
		data := []byte(fmt.Sprintf("%d %d %s", i, time.Now().UnixNano(), pad))
		if err := publish(data); err != nil {
			tick.Stop()
			return res, fmt.Errorf("publish event %d: %w", i, err)
		}
	}
	tick.Stop()
	res.Published = total
	time.Sleep(2 * time.Second) // let the last events arrive
	after, err := getStats()
	if err != nil {
		return res, err
	}
	_, _ = io.WriteString(cin, "stop\n")
	if err := json.NewDecoder(rd).Decode(&res.Client); err != nil {
		return res, fmt.Errorf("client report: %w", err)
	}
	if res.Client.Events > 0 {
		res.CPUPerEv = float64(after.CPU-idle.CPU) / float64(res.Client.Events)
		res.WritesPerEv = float64(after.Writes-idle.Writes) / float64(res.Client.Events)
	}
	return res, nil
}

// writeReport replaces the Fan-out section of the BENCHMARKS.md at path
// (or appends it), leaving every other section as it is.
func writeReport(path string, rs []result) error {
	var b strings.Builder
	b.WriteString("## Fan-out\n\n")
	fmt.Fprintf(&b, "`cd bench && go run ./fanout -out ../BENCHMARKS.md`, %s, %d cores (%s). One stream, subscribers in a separate process on 50 loopback source addresses, the server under test alone in its own process, and for each case a fresh nats-server (JetStream on) in a process of its own, or for \"kafka\" a kfake broker (one partition) in the orchestrating process. Idle: RSS growth per connected subscriber of the server under test (and its goroutines per subscriber) and of nats-server, from just before the subscribers connect to 2 s after all connected. Then events of ~130 bytes are published at the rate shown for the time shown; p50/p99 are publish-to-client delays over a 10%% sample of subscribers; CPU/event is the server's user+system CPU per delivered event. \"baseline\" is a stock net/http streaming handler over core NATS (one NATS subscription per request, one write and flush per event); \"floor\" is the least a server can do (one core NATS subscription, the response head written once, then each event's bytes, encoded once, written to every connection in a tight loop on one goroutine per core: one write per subscriber per event and nothing else), the floor for that way of writing; \"core\", \"jetstream\" and \"kafka\" are ssebridge's reverse streams (kafka published with kafka-go, one synchronous write per event), and \"coalesced\" the core stream with `coalesce: %v` (a subscriber's write waits that long for more events).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), coalesce)
	b.WriteString("| server | subscribers | idle KiB/sub | nats-server KiB/sub | goroutines/sub | rate × s | delivered / expected | gaps | cut | p50 ms | p99 ms | CPU µs/event | CPU vs baseline |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	baseCPU := map[int]float64{}
	for _, r := range rs {
		if strings.HasPrefix(r.Kind, "baseline") {
			baseCPU[r.Subs] = r.CPUPerEv
		}
	}
	for _, r := range rs {
		ratio := "—"
		if bc := baseCPU[r.Subs]; bc > 0 && !strings.HasPrefix(r.Kind, "baseline") {
			ratio = fmt.Sprintf("%.2fx", r.CPUPerEv/bc)
		}
		natsIdle := "—"
		if r.HasNATS {
			natsIdle = fmt.Sprintf("%.2f", float64(r.NATSIdle)/1024)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %s | %.2f | %d/s × %d | %d / %d | %d | %d | %.1f | %.1f | %.2f | %s |\n",
			r.Kind, r.Subs, float64(r.Idle)/1024, natsIdle, r.Goroutines, r.Rate, r.Seconds,
			r.Client.Events, int64(r.Published)*int64(r.Client.Connected), r.Client.Gaps, r.Client.Ended,
			r.Client.P50, r.Client.P99, r.CPUPerEv/1000, ratio)
	}
	b.WriteString("\n")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	section := b.String()
	if i := strings.Index(text, "## Fan-out\n"); i >= 0 {
		end := len(text)
		if j := strings.Index(text[i+len("## Fan-out\n"):], "\n## "); j >= 0 {
			end = i + len("## Fan-out\n") + j + 1
		}
		text = text[:i] + section + text[end:]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n\n") {
			text += "\n"
		}
		text += section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
