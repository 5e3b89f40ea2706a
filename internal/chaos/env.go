package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Sink names, as in the table.
const (
	sinkNATS  = "jetstream"
	sinkKafka = "kafka"
)

const (
	jsStream   = "CHAOS"
	kafkaTopic = "chaos"
)

// unprivileged is the user the bridge runs as when the harness is root, so
// that a chmod of its checkpoint directory really makes writes fail (root
// ignores permission bits). nobody:nogroup on Debian.
const unprivileged = 65534

// natsServer is a nats-server process with JetStream on disk; it can be
// SIGKILLed and restarted on the same port and store.
type natsServer struct {
	bin, dir, logPath string
	port              int
	p                 *proc
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsServer) start(ctx context.Context) error {
	p, err := startProc("nats-server", n.logPath, nil, nil, n.bin,
		"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", n.dir, "--http_port", "0")
	if err != nil {
		return err
	}
	n.p = p
	return waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", n.port), 15*time.Second)
}

func (n *natsServer) stop() {
	if n.p != nil {
		n.p.kill()
	}
}

// kafkaBroker is a kfake cluster in this process, persisted to dir so that
// a stop and a start on the same port keep the topic.
type kafkaBroker struct {
	dir  string
	port int
	mu   sync.Mutex
	c    *kfake.Cluster
}

func (k *kafkaBroker) addr() string { return fmt.Sprintf("127.0.0.1:%d", k.port) }

func (k *kafkaBroker) start() error {
	var c *kfake.Cluster
	var err error
	// The port may linger for a moment after a stop: retry a few times.
	for i := 0; i < 50; i++ {
		c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("kfake on %d: %w", k.port, err)
	}
	k.mu.Lock()
	k.c = c
	k.mu.Unlock()
	return nil
}

func (k *kafkaBroker) stop() {
	k.mu.Lock()
	c := k.c
	k.c = nil
	k.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// bridge runs `ssebridge run` as a separate process.
type bridge struct {
	bin, cfgPath, dataDir, logPath, addr string
	cred                                 *syscall.Credential
	mu                                   sync.Mutex
	p                                    *proc
	started                              time.Time // when the last process was started
	all                                  []*proc
}

func (b *bridge) start(ctx context.Context) error {
	p, err := startProc("ssebridge", b.logPath, b.cred, nil, b.bin, "run", "-config", b.cfgPath)
	if err != nil {
		return err
	}
	b.started = p.start
	b.mu.Lock()
	b.p = p
	b.all = append(b.all, p)
	b.mu.Unlock()
	// Ready to be counted once its HTTP server answers.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !p.alive() {
			code, sig, _ := p.wait(0)
			return fmt.Errorf("ssebridge exited at start (code %d %s); see %s", code, sig, b.logPath)
		}
		if code, _ := httpGet(ctx, "http://"+b.addr+"/healthz"); code == http.StatusOK {
			return nil
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	return fmt.Errorf("ssebridge not serving /healthz within 20s; see %s", b.logPath)
}

func (b *bridge) cur() *proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.p
}

// peakRSS is the largest VmHWM over every bridge process of the row.
func (b *bridge) peakRSS() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var m int64
	for _, p := range b.all {
		m = max(m, p.peakRSS())
	}
	return m
}

// probeClient keeps no idle connection, so nothing outlives a row.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(ctx context.Context, url string) (int, string) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, url, nil)
	if err != nil {
		return 0, ""
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// metric sums the samples of a Prometheus text exposition whose name is
// name and whose labels contain every one of labels.
func metric(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || len(line) == len(name) {
			continue
		}
		if c := line[len(name)]; c != '{' && c != ' ' {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// configYAML is the bridge config of a row.
type configSpec struct {
	dataDir, httpAddr, natsURL, kafkaAddr string
	feedURL                               func(sink string) string
	sinks                                 []string
	maxPending                            int
	idleTimeout                           time.Duration
	maxEventSize                          int
	checkpointMaxUnsaved                  int
	// cluster, when set, is the replica id of a cluster block (JetStream
	// KV leases in bucket "chaos").
	cluster string
}

func pipelineName(sink string) string { return "chaos-" + sink }

func (s configSpec) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nshutdown_timeout: 10s\n", s.dataDir)
	fmt.Fprintf(&b, "http:\n  addr: %s\n", s.httpAddr)
	b.WriteString("log:\n  format: json\n  level: info\n")
	has := func(k string) bool {
		for _, x := range s.sinks {
			if x == k {
				return true
			}
		}
		return false
	}
	if has(sinkNATS) {
		fmt.Fprintf(&b, "nats:\n  url: %s\n", s.natsURL)
	}
	if has(sinkKafka) {
		fmt.Fprintf(&b, "kafka:\n  brokers: [%q]\n", s.kafkaAddr)
	}
	if s.cluster != "" {
		fmt.Fprintf(&b, "cluster:\n  enabled: true\n  bucket: chaos\n  lease_ttl: %s\n  replica_id: %s\n", clusterLeaseTTL, s.cluster)
	}
	idle := s.idleTimeout
	if idle == 0 {
		idle = 5 * time.Second
	}
	b.WriteString("pipelines:\n")
	for _, k := range s.sinks {
		fmt.Fprintf(&b, "  - name: %s\n    source:\n      url: %s\n", pipelineName(k), s.feedURL(k))
		fmt.Fprintf(&b, "      retry: {initial: 100ms, max: 1s}\n      idle_timeout: %s\n", idle)
		if s.maxEventSize > 0 {
			fmt.Fprintf(&b, "      max_event_size: %d\n", s.maxEventSize)
		}
		if s.checkpointMaxUnsaved > 0 {
			fmt.Fprintf(&b, "      checkpoint_max_unsaved: %d\n", s.checkpointMaxUnsaved)
		}
		b.WriteString("    sink:\n")
		switch k {
		case sinkNATS:
			fmt.Fprintf(&b, "      nats:\n        subject: chaos.events\n        jetstream: true\n        stream: {name: %s, subjects: [\"chaos.>\"]}\n", jsStream)
		case sinkKafka:
			fmt.Fprintf(&b, "      kafka:\n        topic: %s\n        create_topic: {partitions: 1, replication_factor: 1}\n", kafkaTopic)
		}
	}
	b.WriteString("streams:\n")
	mp := s.maxPending
	if mp == 0 {
		mp = 1024
	}
	for _, k := range s.sinks {
		fmt.Fprintf(&b, "  - path: /sse/%s\n    max_pending: %d\n    heartbeat: 1s\n", k, mp)
		switch k {
		case sinkNATS:
			fmt.Fprintf(&b, "    nats:\n      subject: \"chaos.>\"\n      jetstream: {stream: %s}\n", jsStream)
		case sinkKafka:
			fmt.Fprintf(&b, "    kafka:\n      topic: %s\n      start: earliest\n", kafkaTopic)
		}
	}
	return b.String()
}

// mkdirFor creates dir owned by the bridge's user.
func mkdirFor(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if cred != nil {
		return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(cred.Uid), int(cred.Gid))
		})
	}
	return nil
}
