package bridge_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/syncbuf"
)

// slowReleaseLeaser grants every Acquire but blocks the first release until
// unblock is closed: a run whose wind-down outlasts shutdown_timeout. It
// records an Acquire made while an earlier holder has not released.
type slowReleaseLeaser struct {
	unblock chan struct{}

	mu       sync.Mutex
	held     int
	acquires int
	overlap  bool
}

func (l *slowReleaseLeaser) Acquire(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held > 0 {
		l.overlap = true
	}
	l.held++
	l.acquires++
	first := l.acquires == 1
	return nil, func() {
		if first {
			<-l.unblock
		}
		l.mu.Lock()
		l.held--
		l.mu.Unlock()
	}, nil
}

func (l *slowReleaseLeaser) state() (acquires int, overlap bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acquires, l.overlap
}

// TestReloadNeverRunsAPipelineTwice: when a changed pipeline's old run did
// not stop within shutdown_timeout, the reload used to start the new run
// anyway, so both read the feed and the old one's late checkpoint save
// could move the checkpoint back. The new run must wait for the old one.
func TestReloadNeverRunsAPipelineTwice(t *testing.T) {
	f := newFeed(t)
	l := &slowReleaseLeaser{unblock: make(chan struct{})}
	cfg := &config.Config{DataDir: t.TempDir(), NATS: config.NATS{Embedded: true},
		ShutdownTimeout: config.Duration(300 * time.Millisecond),
		Pipelines:       []config.Pipeline{pipelineCfg("p", f.url("/p"))}}
	cfg.SetDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	b, err := bridge.New(cfg, bridge.Options{Listener: ln, Leaser: l, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	<-b.Started()
	base := "http://" + ln.Addr().String()
	eventually(t, "connected", func() bool { p, _ := pipelineStatus(t, base, "p"); return p.State == "connected" })

	changed := *cfg
	changed.Pipelines = []config.Pipeline{pipelineCfg("p", f.url("/p2"))}
	if err := b.Reload(&changed); err != nil {
		t.Fatal(err)
	}
	// Reload gave up waiting after shutdown_timeout. Either the new run
	// waits (and says so) or it already acquired the lease.
	eventually(t, "the new run waiting or started", func() bool {
		n, _ := l.state()
		return n > 1 || strings.Contains(logs.String(), "waiting for the previous run")
	})
	if n, overlap := l.state(); n != 1 || overlap {
		t.Fatalf("the new run started while the old one was still stopping (%d acquires, overlap %v)", n, overlap)
	}
	if f.connections("/p2") != 0 {
		t.Fatal("the new run connected to the feed while the old one was still stopping")
	}

	close(l.unblock)
	eventually(t, "the new run connected once the old one stopped", func() bool { return f.connections("/p2") > 0 })
	if _, overlap := l.state(); overlap {
		t.Fatal("two runs held the pipeline at once")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}
