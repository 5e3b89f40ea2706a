package bridge_test

import (
	"bufio"
	"context"
	"net/http"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// TestCorePublishesOnASubscriptionFreeConnection: core NATS publishes are
// confirmed by reading the connection's asynchronous errors after a flush;
// another asynchronous error on the same connection (a reverse stream's
// subscription turning slow consumer) could mask a refusal, which was then
// counted as delivered. Pipelines therefore publish on a connection that
// carries no subscription, while reverse streams subscribe on another.
func TestCorePublishesOnASubscriptionFreeConnection(t *testing.T) {
	ns := testbroker.StartNATS(t)
	f := newFeed(t)
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		NATS:      config.NATS{URL: ns.URL()},
		Pipelines: []config.Pipeline{pipelineCfg("p", f.url("/p"))},
		Streams:   []config.Stream{{Path: "/sse/p", NATS: &config.NATSStream{Subject: "t.p"}}},
	}
	r := start(t, cfg)
	// A reverse stream subscribes while it has a subscriber.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/sse/p", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var cz *server.Connz
	eventually(t, "events forwarded while the stream subscribes", func() bool {
		st, _ := pipelineStatus(t, r.base, "p")
		if cz, err = ns.Server().Connz(&server.ConnzOptions{Subscriptions: true}); err != nil {
			t.Fatal(err)
		}
		subs := 0
		for _, c := range cz.Conns {
			subs += int(c.NumSubs)
		}
		return st.Forwarded > 2 && subs > 0
	})
	publishers, subscribers := 0, 0
	for _, c := range cz.Conns {
		if c.InMsgs > 0 {
			publishers++
			if c.NumSubs != 0 {
				t.Errorf("connection %q publishes the pipeline's events and has %d subscriptions %v", c.Name, c.NumSubs, c.Subs)
			}
		}
		if c.NumSubs > 0 {
			subscribers++
		}
	}
	if publishers == 0 || subscribers == 0 {
		t.Fatalf("connz: %d publishing and %d subscribing connections, want both (the stream subscribes)", publishers, subscribers)
	}
}
