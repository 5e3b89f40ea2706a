// Command fanout measures how ssebridge's reverse streams serve many SSE
// subscribers of one stream, against a stock net/http streaming handler
// (one NATS subscription per request, one write and flush per event) run
// in the same way in the same run.
//
// Run it from bench/: go run ./fanout (a few minutes), or
// go run ./fanout -subs 1000 -quick. It starts nats-server in its own
// process, runs the bridge under test as a child process of its own (so
// its memory and CPU are measured alone) and the subscribers in another
// child process, on several loopback source addresses. For each case it
// reports the bridge's memory per idle subscriber, the p99 delay from
// publish to client and the bridge's CPU time per delivered event, and it
// writes them into the "Fan-out" section of BENCHMARKS.md with -out.
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/sse"
	"github.com/ssebridge/ssebridge/streams"
)

// profileDir, when set, receives a CPU profile of each server's
// publishing phase.
// coalesce is the Coalesce setting of the "coalesced" server: a core
// stream whose writes gather the events of this long.
const coalesce = 25 * time.Millisecond

var profileDir = flag.String("profile", "", "write a CPU profile of each server's publishing phase into `dir`")

const (
	subject = "fan.x"
	jsName  = "FAN"
)

func main() {
	var (
		role    = flag.String("role", "", "internal: server or client")
		natsURL = flag.String("nats", "", "internal: NATS URL (server role)")
		url     = flag.String("url", "", "internal: stream URL (client role)")
		n       = flag.Int("n", 0, "internal: subscribers (client role)")
		subsF   = flag.String("subs", "1000,10000", "comma-separated subscriber counts")
		kinds   = flag.String("kinds", "baseline,core,jetstream,coalesced", "comma-separated servers to measure")
		quick   = flag.Bool("quick", false, "short publishing phases")
		out     = flag.String("out", "", "write the Fan-out section into this BENCHMARKS.md")
	)
	flag.Parse()
	raiseFDLimit()
	var err error
	switch *role {
	case "baseline", "core", "jetstream", "coalesced":
		err = runServer(*role, *natsURL)
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
}

func selfStats() stats {
	var s stats
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				s.RSS = kb << 10
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.CPU = ru.Utime.Nano() + ru.Stime.Nano()
	}
	s.Goroutines = runtime.NumGoroutine()
	return s
}

func runServer(kind, natsURL string) error {
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	var h http.Handler
	switch kind {
	case "baseline":
		h = baselineHandler(nc)
	default:
		c := streams.Config{Path: "/s", NATS: &streams.NATSConfig{Subject: subject}}
		switch kind {
		case "jetstream":
			c.NATS.JetStream = jsName
		case "coalesced":
			c.Coalesce = coalesce
		}
		srv, err := streams.New([]streams.Config{c}, streams.Deps{NATS: nc, Logger: slog.New(slog.DiscardHandler)})
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
		}()
	}
	for len(sem) > 0 {
		time.Sleep(10 * time.Millisecond)
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
	Idle       int64 // bridge bytes per idle subscriber
	Goroutines float64
	Client     clientReport
	Published  int
	CPUPerEv   float64 // ns of bridge CPU per delivered event
}

func orchestrate(subsF, kindsF string, quick bool, out string) error {
	ns := server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: os.TempDir() + "/fanout-js", NoLog: true, NoSigs: true, MaxPayload: 1 << 20}
	_ = os.RemoveAll(ns.StoreDir)
	ns.MaxPending = 256 << 20 // the bridge reads for 10k subscribers of the baseline
	srv, err := server.NewServer(&ns)
	if err != nil {
		return err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready")
	}
	defer srv.Shutdown()
	natsURL := srv.ClientURL()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: jsName, Subjects: []string{"fan.>"}, Storage: jetstream.MemoryStorage, MaxMsgs: 100000}); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
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
			r, err := measure(self, natsURL, nc, strings.TrimSpace(kind), subs, rate, secs)
			if err != nil {
				return fmt.Errorf("%s at %d: %w", kind, subs, err)
			}
			fmt.Printf("%-9s subs=%-6d idle=%6.1f KiB/sub goroutines/sub=%.2f  %d ev/s x %ds: p50=%.1fms p99=%.1fms events=%d gaps=%d ended=%d cpu/event=%.0fns\n",
				r.Kind, r.Subs, float64(r.Idle)/1024, r.Goroutines, r.Rate, r.Seconds, r.Client.P50, r.Client.P99, r.Client.Events, r.Client.Gaps, r.Client.Ended, r.CPUPerEv)
			results = append(results, r)
		}
	}
	if out != "" {
		return writeReport(out, results)
	}
	return nil
}

func measure(self, natsURL string, nc *nats.Conn, kind string, subs, rate, secs int) (result, error) {
	res := result{Kind: kind, Subs: subs, Rate: rate, Seconds: secs}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, self, "-role", kind, "-nats", natsURL)
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
	base := "http://" + strings.TrimSpace(addr)
	getStats := func() (stats, error) {
		var s stats
		resp, err := http.Get(base + "/stats")
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

	cl := exec.CommandContext(ctx, self, "-role", "client", "-url", base+"/s", "-n", strconv.Itoa(subs))
	cl.Stderr = os.Stderr
	cin, _ := cl.StdinPipe()
	cout, _ := cl.StdoutPipe()
	if err := cl.Start(); err != nil {
		return res, err
	}
	defer cl.Wait()
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
	if *profileDir != "" {
		go func() {
			resp, err := http.Get(base + "/debug/pprof/profile?seconds=" + strconv.Itoa(max(secs-1, 1)))
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
	if err != nil {
		return res, err
	}
	res.Idle = (idle.RSS - before.RSS) / int64(connected)
	res.Goroutines = float64(idle.Goroutines-before.Goroutines) / float64(connected)

	// Publish at rate events/s for secs seconds; the data carries its
	// sequence and the publish time.
	total := rate * secs
	tick := time.NewTicker(time.Second / time.Duration(rate))
	pad := strings.Repeat("x", 100)
	var js jetstream.JetStream
	if kind == "jetstream" {
		js, _ = jetstream.New(nc)
	}
	for i := 1; i <= total; i++ {
		<-tick.C
		data := []byte(fmt.Sprintf("%d %d %s", i, time.Now().UnixNano(), pad))
		if js != nil {
			if _, err := js.PublishAsync(subject, data); err != nil {
				return res, err
			}
		} else if err := nc.Publish(subject, data); err != nil {
			return res, err
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
	}
	return res, nil
}

// writeReport replaces the Fan-out section of the BENCHMARKS.md at path
// (or appends it), leaving every other section as it is.
func writeReport(path string, rs []result) error {
	var b strings.Builder
	b.WriteString("## Fan-out\n\n")
	fmt.Fprintf(&b, "`cd bench && go run ./fanout -out ../BENCHMARKS.md`, %s, %d cores (%s). One stream, subscribers in a separate process on 50 loopback source addresses, nats-server in the orchestrating process, the server under test alone in its own process. Idle: bridge RSS growth per connected subscriber (and goroutines per subscriber) 2 s after all connected. Then events of ~130 bytes are published at the rate shown for the time shown; p50/p99 are publish-to-client delays over a 10%% sample of subscribers; CPU/event is the server's user+system CPU per delivered event. \"baseline\" is a stock net/http streaming handler over core NATS (one NATS subscription per request, one write and flush per event); \"core\" and \"jetstream\" are ssebridge's reverse streams, and \"coalesced\" the core stream with Coalesce %v (a subscriber's write waits that long for more events).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), coalesce)
	b.WriteString("| server | subscribers | idle KiB/sub | goroutines/sub | rate × s | delivered / expected | gaps | cut | p50 ms | p99 ms | CPU µs/event | CPU vs baseline |\n")
	b.WriteString("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	baseCPU := map[int]float64{}
	for _, r := range rs {
		if r.Kind == "baseline" {
			baseCPU[r.Subs] = r.CPUPerEv
		}
	}
	for _, r := range rs {
		ratio := "—"
		if bc := baseCPU[r.Subs]; bc > 0 && r.Kind != "baseline" {
			ratio = fmt.Sprintf("%.2fx", r.CPUPerEv/bc)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.2f | %d/s × %d | %d / %d | %d | %d | %.1f | %.1f | %.2f | %s |\n",
			r.Kind, r.Subs, float64(r.Idle)/1024, r.Goroutines, r.Rate, r.Seconds,
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
