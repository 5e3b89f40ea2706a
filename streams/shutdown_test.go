package streams

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/sse"
)

// gatedBackend is a unit-test stand-in for a broker (the end-to-end tests
// use real ones): it hands over messages at subscribe time and more while
// its feed stops, as a broker delivers what was in flight, and holds the
// subscription until gate opens so the test controls the interleaving.
type gatedBackend struct {
	first, inFlight []string
	entered         chan struct{}
	gate            chan struct{}
}

func (g *gatedBackend) kind() string { return "test" }
func (g *gatedBackend) close()       {}

func (g *gatedBackend) subscribe(_ context.Context, sub *subscriber, _ *request) (feed, error) {
	for _, d := range g.first {
		sub.offer(message{data: []byte(d)})
	}
	close(g.entered)
	<-g.gate
	return newFeed(&counterCursor{}, func() {
		for _, d := range g.inFlight {
			sub.offer(message{data: []byte(d)})
		}
	}), nil
}

func TestShutdownFlushesEveryDeliveredEvent(t *testing.T) {
	srv, err := New([]Config{coreCfg("/gated", "x")}, Deps{NATS: &nats.Conn{}})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedBackend{
		first:    []string{"a", "b", "c"},
		inFlight: []string{"d", "e"},
		entered:  make(chan struct{}),
		gate:     make(chan struct{}),
	}
	srv.streams["/gated"].backend = g
	hs := httptest.NewServer(srv)
	defer hs.Close()

	type result struct {
		evs []sse.Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(hs.URL + "/gated")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		dec := sse.NewDecoder(resp.Body)
		var evs []sse.Event
		for {
			ev, err := dec.Next()
			if err != nil {
				done <- result{evs: evs}
				return
			}
			evs = append(evs, ev)
		}
	}()
	<-g.entered // the subscriber is registered and has buffered events
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	<-srv.stopping
	close(g.gate) // now the handler starts, with shutdown already begun

	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if got := datas(res.evs); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("client got %v before the stream closed, want every delivered event a..e", got)
	}
}
