package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/internal/testbin"
)

// leaseTTL of the replicas under test: short, so failovers take seconds.
const leaseTTL = 4 * time.Second

// natsProc is a nats-server process with JetStream, restartable on the
// same port and store.
type natsProc struct {
	bin, port, store string
	cmd              *exec.Cmd
	done             chan struct{}
}

func startNATSProc(t *testing.T, bin string) *natsProc {
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	n := &natsProc{bin: bin, port: port, store: t.TempDir()}
	n.start(t)
	t.Cleanup(n.stop)
	return n
}

func (n *natsProc) url() string { return "nats://127.0.0.1:" + n.port }

func (n *natsProc) start(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(n.bin, "-a", "127.0.0.1", "-p", n.port, "-js", "-sd", n.store)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(n.cmd, n.done)
	waitCond(t, "nats-server listening", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+n.port, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop ends the server as an operator would (SIGTERM: it flushes its store).
func (n *natsProc) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

// countingFeed serves /f/NAME: events 1, 2, 3... every 20 ms, resuming
// after Last-Event-ID like a well-behaved feed.
func countingFeed(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/f/")
		next := 1
		if n, err := strconv.Atoi(r.Header.Get("Last-Event-ID")); err == nil {
			next = n + 1
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ; ; next++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: {\"p\":%q,\"n\":%d}\n\n", next, name, next); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

type replicaProc struct {
	id   string
	base string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startReplicaProc(t *testing.T, bin, id, natsURL, feedURL string, pipelines []string) *replicaProc {
	t.Helper()
	dir := t.TempDir()
	addr := freePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nshutdown_timeout: 5s\nhttp: {addr: %s}\nnats: {url: %s}\n", filepath.Join(dir, "data"), addr, natsURL)
	fmt.Fprintf(&b, "cluster: {enabled: true, bucket: ssebridge, lease_ttl: %s, replica_id: %s}\npipelines:\n", leaseTTL, id)
	for _, p := range pipelines {
		fmt.Fprintf(&b, "  - name: %s\n    source: {url: %q, retry: {initial: 50ms, max: 500ms}}\n", p, feedURL+"/f/"+p)
		b.WriteString("    sink: {nats: {subject: \"e2e.{pipeline}\", jetstream: true, stream: {name: E2E, subjects: [\"e2e.>\"]}}}\n")
	}
	b.WriteString("streams:\n  - {path: /sse/feed01, nats: {subject: e2e.feed01}}\n")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replicaProc{id: id, base: "http://" + addr, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(r.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			if len(out) > 6000 {
				out = out[len(out)-6000:]
			}
			t.Logf("replica %s log (tail):\n%s", id, out)
		}
	})
	return r
}

func (r *replicaProc) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// status is the replica's /api/status; ok false while it does not answer.
func (r *replicaProc) status() (bridge.Status, bool) {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get(r.base + "/api/status")
	if err != nil {
		return bridge.Status{}, false
	}
	defer resp.Body.Close()
	var st bridge.Status
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return bridge.Status{}, false
	}
	return st, true
}

// running maps each pipeline to the replicas that run it (connected).
func running(rs []*replicaProc) map[string][]string {
	out := map[string][]string{}
	for _, r := range rs {
		if !r.alive() {
			continue
		}
		st, ok := r.status()
		if !ok {
			continue
		}
		for _, p := range st.Pipelines {
			if p.State == "connected" {
				out[p.Name] = append(out[p.Name], r.id)
			}
		}
	}
	return out
}

func waitCond(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// spread waits until every pipeline runs on exactly one replica and each
// replica runs want of them (or at most max when want < 0).
func spread(t *testing.T, what string, rs []*replicaProc, pipelines []string, want map[string]int) {
	t.Helper()
	var last map[string][]string
	waitCond(t, what, 60*time.Second, func() bool {
		last = running(rs)
		per := map[string]int{}
		for _, p := range pipelines {
			if len(last[p]) != 1 {
				return false
			}
			per[last[p][0]]++
		}
		for id, n := range want {
			if per[id] != n {
				return false
			}
		}
		return true
	})
}

func ownerOf(t *testing.T, rs []*replicaProc, p string) *replicaProc {
	t.Helper()
	run := running(rs)
	if len(run[p]) != 1 {
		t.Fatalf("%s runs on %v", p, run[p])
	}
	for _, r := range rs {
		if r.id == run[p][0] {
			return r
		}
	}
	t.Fatalf("no replica %s", run[p][0])
	return nil
}

// TestReplicas runs three, then four ssebridge processes against one
// nats-server: the pipelines spread, move on kill -9, SIGSTOP, a graceful
// stop and a NATS restart, and the JetStream stream holds every event of
// every feed once, in order.
func TestReplicas(t *testing.T) {
	bin, err := testbin.SSEBridge()
	if err != nil {
		t.Fatal(err)
	}
	natsBin, err := testbin.NATSServer()
	if err != nil {
		t.Fatal(err)
	}
	ns := startNATSProc(t, natsBin)
	feed := countingFeed(t)
	var pipelines []string
	for i := range 12 {
		pipelines = append(pipelines, fmt.Sprintf("feed%02d", i))
	}
	rs := []*replicaProc{
		startReplicaProc(t, bin, "r1", ns.url(), feed.URL, pipelines),
		startReplicaProc(t, bin, "r2", ns.url(), feed.URL, pipelines),
		startReplicaProc(t, bin, "r3", ns.url(), feed.URL, pipelines),
	}
	spread(t, "12 pipelines over 3 replicas, 4 each", rs, pipelines, map[string]int{"r1": 4, "r2": 4, "r3": 4})

	// Reverse streams need no coordination: every replica serves them,
	// whichever replica ingests the feed.
	for _, r := range rs {
		if id := firstEventID(t, r.base+"/sse/feed01"); id == "" {
			t.Fatalf("replica %s served no event on /sse/feed01", r.id)
		}
	}

	// The checkpoint of every pipeline never moves back, whatever happens.
	ckCtx, stopCk := context.WithCancel(context.Background())
	ckDone := make(chan []string)
	go func() { ckDone <- watchCheckpoints(ckCtx, ns.url(), pipelines) }()

	// kill -9 the owner of feed00: another replica takes it over after
	// the lease expires.
	victim := ownerOf(t, rs, "feed00")
	_ = victim.cmd.Process.Kill()
	took := waitCond(t, "feed00 running elsewhere after kill -9", 6*leaseTTL, func() bool {
		run := running(rs)
		return len(run["feed00"]) == 1 && run["feed00"][0] != victim.id
	})
	t.Logf("kill -9: feed00 moved from %s in %v (lease_ttl %v)", victim.id, took.Round(10*time.Millisecond), leaseTTL)
	live := []*replicaProc{}
	for _, r := range rs {
		if r != victim {
			live = append(live, r)
		}
	}
	spread(t, "12 pipelines over the 2 survivors", live, pipelines, map[string]int{live[0].id: 6, live[1].id: 6})

	// SIGSTOP an owner past its lease, then SIGCONT it: it must not
	// publish what the new owner publishes, nor move the checkpoint back.
	frozen := live[0]
	_ = frozen.cmd.Process.Signal(syscall.SIGSTOP)
	waitCond(t, "the frozen replica's pipelines taken over", 6*leaseTTL, func() bool {
		run := running(live[1:])
		return len(run) == len(pipelines)
	})
	_ = frozen.cmd.Process.Signal(syscall.SIGCONT)
	spread(t, "the thawed replica back with its share", live, pipelines, map[string]int{live[0].id: 6, live[1].id: 6})

	// A fourth replica takes a share.
	r4 := startReplicaProc(t, bin, "r4", ns.url(), feed.URL, pipelines)
	live = append(live, r4)
	spread(t, "12 pipelines over 3 replicas with r4", live, pipelines, map[string]int{live[0].id: 4, live[1].id: 4, "r4": 4})

	// A graceful stop hands over at once, well before the lease expires.
	leaving := live[1]
	_ = leaving.cmd.Process.Signal(syscall.SIGTERM)
	moved := waitCond(t, "the leaving replica's pipelines moved", 6*leaseTTL, func() bool {
		run := running([]*replicaProc{live[0], r4})
		return len(run) == len(pipelines)
	})
	t.Logf("graceful stop: pipelines moved in %v (lease_ttl %v)", moved.Round(10*time.Millisecond), leaseTTL)
	if moved >= leaseTTL {
		t.Errorf("a graceful stop took %v to hand over, not less than lease_ttl %v: it waited for expiry", moved, leaseTTL)
	}
	<-leaving.done
	live = []*replicaProc{live[0], r4}

	// nats-server restarts under the cluster: every pipeline has exactly
	// one owner afterwards.
	ns.stop()
	ns.start(t)
	spread(t, "one owner per pipeline after a NATS restart", live, pipelines, map[string]int{live[0].id: 6, "r4": 6})

	stopCk()
	if back := <-ckDone; len(back) > 0 {
		t.Errorf("checkpoints moved back: %v", back)
	}
	for _, r := range live {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		<-r.done
	}
	checkStream(t, ns.url(), pipelines)
}

// firstEventID reads a stream until its first event with a data line and
// returns the id line's value.
func firstEventID(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	id := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, "feed01") {
			return id
		}
	}
	return ""
}

// watchCheckpoints polls every pipeline's checkpoint in the bucket until
// ctx ends and returns every time one went back.
func watchCheckpoints(ctx context.Context, url string, pipelines []string) []string {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return []string{err.Error()}
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	last := map[string]int{}
	var back []string
	for ctx.Err() == nil {
		kv, err := js.KeyValue(ctx, "ssebridge")
		if err == nil {
			for _, p := range pipelines {
				e, err := kv.Get(ctx, "ckpt."+p)
				if err != nil {
					continue
				}
				var v struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(e.Value(), &v) != nil || v.ID == "" {
					continue
				}
				n, _ := strconv.Atoi(v.ID)
				if n < last[p] {
					back = append(back, fmt.Sprintf("%s: %d after %d", p, n, last[p]))
				}
				last[p] = max(last[p], n)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return back
}

// checkStream reads the whole stream: for each pipeline the SSE ids must be
// 1, 2, 3... with no gap and no repeat.
func checkStream(t *testing.T, url string, pipelines []string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "E2E")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	problems := 0
	for range info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		p := strings.TrimPrefix(m.Subject(), "e2e.")
		id, _ := strconv.Atoi(m.Headers().Get("SSE-Id"))
		if want := next[p] + 1; id != want && problems < 10 {
			problems++
			t.Errorf("%s: id %d after %d (a loss or a duplicate)", p, id, next[p])
		}
		next[p] = id
	}
	for _, p := range pipelines {
		if next[p] < 50 {
			t.Errorf("%s: only %d events stored", p, next[p])
		}
	}
	t.Logf("stream E2E: %d events over %d pipelines, each 1..n in order", info.State.Msgs, len(pipelines))
}
