// Package testbroker starts real message brokers inside a test process: a
// nats-server with JetStream and a kfake Kafka cluster, both listening on
// loopback TCP so that the code under test reaches them exactly as it would
// reach production brokers.
//
// Each broker can be stopped and restarted on the same port, which is what
// reconnection and "no event lost" tests need. Everything started here is
// stopped by t.Cleanup.
package testbroker

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"
)

// readyTimeout bounds how long a freshly started broker may take to accept
// connections; a slow CI machine under -race needs generous headroom.
const readyTimeout = 20 * time.Second

// NATSOption adjusts the server options before the server starts, e.g. to
// require a token or to raise max_payload.
type NATSOption func(*server.Options)

// NATS is an in-process nats-server with JetStream enabled.
type NATS struct {
	mu   sync.Mutex
	opts server.Options // template, Port fixed after the first start
	srv  *server.Server
}

// StartNATS starts a nats-server on 127.0.0.1 on a free port with JetStream
// storing in a per-test temporary directory. It fails the test if the
// server cannot start and shuts it down when the test ends.
func StartNATS(t testing.TB, opts ...NATSOption) *NATS {
	t.Helper()
	o := server.Options{
		Host:      "127.0.0.1",
		Port:      -1, // random free port; pinned after the first start
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
		// The HTTP monitor and cluster ports stay off: only clients matter.
	}
	for _, fn := range opts {
		fn(&o)
	}
	n := &NATS{opts: o}
	if err := n.start(); err != nil {
		t.Fatalf("testbroker: start nats-server: %v", err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.opts // server.NewServer keeps and mutates its *Options
	srv, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("not ready for connections within %s", readyTimeout)
	}
	if n.opts.Port <= 0 {
		// Remember the port so that Restart comes back where clients
		// expect it and their reconnect logic is what gets tested.
		n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	}
	n.srv = srv
	return nil
}

// URL is the client URL, nats://127.0.0.1:PORT. It stays valid across
// Restart.
func (n *NATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "nats://" + net.JoinHostPort(n.opts.Host, strconv.Itoa(n.opts.Port))
}

// Port is the TCP port the server listens on.
func (n *NATS) Port() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opts.Port
}

// StoreDir is the JetStream storage directory, shared by every restart.
func (n *NATS) StoreDir() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opts.StoreDir
}

// Server is the running server, nil after Shutdown. A Restart replaces it,
// so do not keep it across one.
func (n *NATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Shutdown stops the server and waits until it has released its port and
// store. It is idempotent.
func (n *NATS) Shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart stops the server if it runs and starts a new one on the same port
// with the same JetStream store directory, so streams and their messages
// survive the restart as they would on a real server's disk.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	var err error
	// The port was just released; retry briefly in case the kernel has not
	// made it bindable yet.
	for i := 0; i < 50; i++ {
		if err = n.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testbroker: restart nats-server on port %d: %v", n.Port(), err)
}

// Kafka is an in-process kfake cluster of one broker on 127.0.0.1.
//
// kfake persists to a per-test data directory, so topics and records
// survive Restart (kfake's DataDir option). Records that were produced but
// not yet written to disk when Close ran may still be lost, as on a real
// broker without fsync; tests that need a strict guarantee should assert on
// what was acknowledged after the restart.
type Kafka struct {
	mu      sync.Mutex
	port    int
	dataDir string
	topics  map[string]int32
	extra   []kfake.Opt
	cluster *kfake.Cluster
}

// StartKafka starts a one-broker kfake cluster on 127.0.0.1 on a free port,
// with topics created up front (name → partitions). extra options (SASL
// users, TLS) apply to every start. It is closed when the test ends.
func StartKafka(t testing.TB, topics map[string]int32, extra ...kfake.Opt) *Kafka {
	t.Helper()
	k := &Kafka{dataDir: t.TempDir(), topics: map[string]int32{}, extra: extra}
	for name, p := range topics {
		k.topics[name] = p
	}
	if err := k.start(); err != nil {
		t.Fatalf("testbroker: start kfake: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

func (k *Kafka) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	opts := []kfake.Opt{
		kfake.Ports(k.port), // 0 on the first start: the kernel picks
		kfake.DataDir(k.dataDir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
	}
	byParts := map[int32][]string{}
	for name, p := range k.topics {
		byParts[p] = append(byParts[p], name)
	}
	for p, names := range byParts {
		opts = append(opts, kfake.SeedTopics(p, names...))
	}
	opts = append(opts, k.extra...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("new cluster on port %d: %w", k.port, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return fmt.Errorf("want one broker, listening on %v", addrs)
	}
	_, ps, err := net.SplitHostPort(addrs[0])
	if err != nil {
		c.Close()
		return fmt.Errorf("listen address %q: %w", addrs[0], err)
	}
	k.port, _ = strconv.Atoi(ps)
	k.cluster = c
	return nil
}

// Addr is the bootstrap address, 127.0.0.1:PORT; it stays valid across
// Restart.
func (k *Kafka) Addr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port))
}

// Cluster is the running kfake cluster, nil after Close; Restart replaces it.
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}

// Close stops the cluster; it is idempotent.
func (k *Kafka) Close() {
	k.mu.Lock()
	c := k.cluster
	k.cluster = nil
	k.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Restart closes the cluster and creates a new one on the same port from
// the same data directory.
func (k *Kafka) Restart(t testing.TB) {
	t.Helper()
	k.Close()
	var err error
	for i := 0; i < 50; i++ {
		if err = k.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testbroker: restart kfake on %s: %v", k.Addr(), err)
}
