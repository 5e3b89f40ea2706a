package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// recreateWithin bounds how long a connected client may be left on a
// stream that was deleted and recreated. The stream watch looks every
// guardWatchEvery (2 s); the margin is for a loaded machine under -race.
const recreateWithin = 10 * time.Second

// recreateStream deletes the JetStream stream name and creates it again
// with the same subjects, as an operator or an IaC tool would: its
// sequences start again at 1.
func (e *natsEnv) recreateStream(t *testing.T, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := e.js.DeleteStream(ctx, name); err != nil {
		t.Fatalf("delete stream %s: %v", name, err)
	}
	return e.createStream(t, name, subjects...)
}

// jsIDOf is the id the server gives sequence seq of stream name as it is
// now (its current incarnation).
func (e *natsEnv) jsIDOf(t *testing.T, name string, seq uint64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := e.js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return jsID(seq, newJSTag(name, st.CachedInfo().Created))
}

// endedWithin waits for the server to end c's response and returns the
// events received before the end. The bound is generous: it tells "ended
// promptly" from "left hanging on heartbeats", it does not time the guard.
func (c *sseClient) endedWithin(t *testing.T, d time.Duration) ([]string, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case <-c.done:
	case <-time.After(d):
		var got []string
		for len(c.events) > 0 {
			ev := <-c.events
			got = append(got, fmt.Sprintf("%s(id %s)", ev.Data, ev.ID))
		}
		t.Fatalf("response still open %s after the stream was recreated; it delivered %v meanwhile", d, got)
	}
	var out []string
	for len(c.events) > 0 {
		ev := <-c.events
		out = append(out, string(ev.Data))
	}
	return out, time.Since(start)
}

// A client connected while its stream is deleted and recreated must not be
// left waiting for the old sequence in the new stream, nor be given the new
// stream's messages as if they followed the old ones: its response ends, and
// its reconnect with the last id it holds gets every message of the new
// stream, once and in order.
func TestJetStreamRecreatedStreamEndsConnectedClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		// publishFirst publishes to the new stream before waiting for
		// the end, so that the ordered consumer, recreated on the new
		// stream, may deliver its messages; otherwise the new stream
		// stays empty until the response ended.
		publishFirst bool
	}{
		{"messages published at once", true},
		{"new stream still empty", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startNATS(t)
			e.createStream(t, "RECR", "recr.>")
			_, hs := startServer(t, []Config{jsStreamCfg("/js/recr", "RECR", "recr.>")}, Deps{NATS: e.nc})

			c := subscribe(t, hs.URL+"/js/recr", nil)
			for i := 1; i <= 3; i++ {
				e.jsPublish(t, "recr.a", "tick", fmt.Sprint("old", i))
			}
			old := c.take(t, 3)
			if got := datas(old); !slices.Equal(got, []string{"old1", "old2", "old3"}) {
				t.Fatalf("before the recreation: %v", got)
			}
			last := old[2].ID

			e.recreateStream(t, "RECR", "recr.>")
			var want []string
			publish := func() {
				for i := 1; i <= 5; i++ {
					e.jsPublish(t, "recr.a", "tick", fmt.Sprint("new", i))
					want = append(want, fmt.Sprint("new", i))
				}
			}
			if tc.publishFirst {
				publish()
			}
			extra, took := c.endedWithin(t, recreateWithin)
			t.Logf("response ended %v after the recreation", took)
			if len(extra) > 0 {
				t.Fatalf("the old response delivered %v from the new stream under old-stream ids", extra)
			}
			if !tc.publishFirst {
				publish()
			}

			c2 := subscribe(t, hs.URL+"/js/recr", map[string]string{"Last-Event-ID": last})
			evs := c2.take(t, 5)
			if got := datas(evs); !slices.Equal(got, want) {
				t.Fatalf("reconnect with %q got %v, want every message of the new stream %v", last, got, want)
			}
			if id, want := evs[4].ID, e.jsIDOf(t, "RECR", 5); id != want {
				t.Errorf("id of the new stream's 5th message = %q, want %q", id, want)
			}
			// Nothing repeated: the next event is the next message.
			e.jsPublish(t, "recr.a", "tick", "new6")
			if got := string(c2.next(t).Data); got != "new6" {
				t.Fatalf("after the new stream's messages got %q, want new6", got)
			}
		})
	}
}

// A client that reconnects with an id of a stream's earlier incarnation is
// not at fault: every message of the new incarnation is newer than its
// position, so it starts at the first one, counted and logged like an
// expired position, whether the old sequence lies beyond the new stream's
// end (once a 400, which ends an EventSource for good) or within it (once a
// silent skip of the new stream's first messages).
func TestJetStreamResumeFromEarlierIncarnation(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "INC", "inc.>")
	for i := 1; i <= 10; i++ {
		e.jsPublish(t, "inc.a", "tick", fmt.Sprint("old", i))
	}
	// Ids as a client holds them: read back through the server.
	log := &recordedLog{}
	_, hs := startServer(t, []Config{jsStreamCfg("/js/inc", "INC", "inc.>")}, Deps{NATS: e.nc, Logger: slog.New(log)})
	replay := subscribe(t, hs.URL+"/js/inc?since=2000-01-01T00:00:00Z", nil)
	oldEvs := replay.take(t, 10)
	replay.close()
	within, beyond := oldEvs[1].ID, oldEvs[9].ID // sequences 2 and 10

	e.recreateStream(t, "INC", "inc.>")
	var want []string
	for i := 1; i <= 5; i++ {
		e.jsPublish(t, "inc.a", "tick", fmt.Sprint("new", i))
		want = append(want, fmt.Sprint("new", i))
	}
	before := metricValue(t, metrics.ResumeTooOld.WithLabelValues("/js/inc"))
	for _, id := range []string{beyond, within} {
		c := subscribe(t, hs.URL+"/js/inc", map[string]string{"Last-Event-ID": id})
		if got := datas(c.take(t, 5)); !slices.Equal(got, want) {
			t.Errorf("Last-Event-ID %q of the old stream: got %v, want %v", id, got, want)
		}
		c.close()
	}
	if d := metricValue(t, metrics.ResumeTooOld.WithLabelValues("/js/inc")) - before; d != 2 {
		t.Errorf("stream_resume_expired_total grew by %v, want 2", d)
	}
	var logged int
	for _, l := range log.lines() {
		if strings.Contains(l, "earlier incarnation") {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d log records about an earlier incarnation, want 2: %q", logged, log.lines())
	}
}

// A client that connected without Last-Event-ID and dropped before its
// first event holds only the start id; after a recreation it too gets the
// new stream from its first message.
func TestJetStreamStartIDAcrossRecreation(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "SRC", "src.>")
	e.jsPublish(t, "src.a", "tick", "old1")
	e.jsPublish(t, "src.a", "tick", "old2")
	cfg := jsStreamCfg("/js/src", "SRC", "src.>")
	cfg.Heartbeat = time.Duration(50 * time.Millisecond)
	_, hs := startServer(t, []Config{cfg}, Deps{NATS: e.nc})

	id := startID(t, hs.URL+"/js/src")
	if want := e.jsIDOf(t, "SRC", 2); id != want {
		t.Fatalf("start id = %q, want %q", id, want)
	}
	// The server must have seen that client leave, so that the tail
	// lingers without members and is looked at again when the next one
	// arrives. A tail that still has a member when a recreated stream's
	// next subscriber joins it ends that subscriber with the others once
	// its watch sees the recreation, and the client resumes then: that
	// race is the reconnection a real EventSource makes, not what this
	// test is about.
	waitFor(t, "the start-id client gone", func() bool {
		return metricValue(t, metrics.Subscribers.WithLabelValues("/js/src")) == 0
	})
	e.recreateStream(t, "SRC", "src.>")
	for i := 1; i <= 3; i++ {
		e.jsPublish(t, "src.a", "tick", fmt.Sprint("new", i))
	}
	c := subscribe(t, hs.URL+"/js/src", map[string]string{"Last-Event-ID": id})
	if got := datas(c.take(t, 3)); !slices.Equal(got, []string{"new1", "new2", "new3"}) {
		t.Fatalf("resumed from the old start id: %v, want new1 new2 new3", got)
	}
}

// A consumer error that is not a recreation, here an operator deleting the
// subscriber's consumer, must not end the response: the ordered consumer
// recreates itself on the same stream, which the guard confirms, and the
// same response goes on with no gap.
func TestJetStreamConsumerDeletedKeepsResponse(t *testing.T) {
	e := startNATS(t)
	st := e.createStream(t, "CDEL", "cdel.>")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/cdel", "CDEL", "cdel.>")}, Deps{NATS: e.nc})
	c := subscribe(t, hs.URL+"/js/cdel", nil)
	e.jsPublish(t, "cdel.a", "", "e1")
	if got := string(c.next(t).Data); got != "e1" {
		t.Fatalf("got %q, want e1", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	names := st.ConsumerNames(ctx)
	var deleted int
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil {
			t.Fatalf("delete consumer %s: %v", name, err)
		}
		deleted++
	}
	if err := names.Err(); err != nil || deleted != 1 {
		t.Fatalf("deleted %d consumers (%v), want the subscriber's one", deleted, err)
	}
	for i := 2; i <= 4; i++ {
		e.jsPublish(t, "cdel.a", "", fmt.Sprint("e", i))
	}
	evs := c.take(t, 3)
	if got := datas(evs); !slices.Equal(got, []string{"e2", "e3", "e4"}) {
		t.Fatalf("after the consumer was deleted the response delivered %v, want e2 e3 e4", got)
	}
	if want := e.jsIDOf(t, "CDEL", 4); evs[2].ID != want {
		t.Errorf("id %q, want %q", evs[2].ID, want)
	}
}

// The guard against a real server: the first message of a server-side
// consumer passes only if the stream is still the incarnation the
// subscriber started in. (The stream watch, tested below, ends the
// subscription when no message comes; end to end, which of the two notices
// a recreation first is a race, so each must hold alone.)
func TestJetStreamGuard(t *testing.T) {
	e := startNATS(t)
	st := e.createStream(t, "GRD", "grd.>")
	b, err := newJetStreamBackend(e.nc, jsStreamCfg("/js/grd", "GRD", ""), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(1, nil)
	g := newJSGuard(b, newJSTag("GRD", st.CachedInfo().Created), sub)
	t.Cleanup(g.stop)
	// Admitted, and admitted again (a consumer's messages come one by one).
	for i := range 2 {
		if !g.admit("c1") {
			t.Fatalf("admit %d: a consumer of the subscriber's own incarnation refused: %v", i, sub.reason())
		}
	}
	e.recreateStream(t, "GRD", "grd.>")
	if g.admit("c2") {
		t.Fatal("a consumer on the recreated stream was admitted")
	}
	if err := sub.reason(); !errors.Is(err, errRecreated) {
		t.Errorf("admit ended the subscription with %v, want errRecreated", err)
	}
}

// The stream watch on its own: one look-up ends the subscribers that
// started in another incarnation of the stream, even with no consumer
// error and no message (the ordered consumer may recreate itself on a new
// stream without reporting anything, and then waits for the old sequence),
// and leaves the others; a missing stream ends nobody.
func TestJetStreamWatchEndsOtherIncarnations(t *testing.T) {
	e := startNATS(t)
	st := e.createStream(t, "WCH", "wch.>")
	b, err := newJetStreamBackend(e.nc, jsStreamCfg("/js/wch", "WCH", ""), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.watch.every = time.Hour // only the explicit look-ups below
	t.Cleanup(b.close)
	member := func(tag jsTag) *subscriber {
		sub := newSubscriber(1, nil)
		g := newJSGuard(b, tag, sub)
		b.watch.add(g)
		t.Cleanup(func() { b.watch.remove(g); g.stop() })
		return sub
	}
	oldTag := newJSTag("WCH", st.CachedInfo().Created)
	old := member(oldTag)
	b.checkGuards(context.Background())
	if err := old.reason(); err != nil {
		t.Fatalf("a subscriber of the current incarnation was ended: %v", err)
	}

	newer := e.recreateStream(t, "WCH", "wch.>")
	current := member(newJSTag("WCH", newer.CachedInfo().Created))
	b.checkGuards(context.Background())
	if err := old.reason(); !errors.Is(err, errRecreated) {
		t.Errorf("subscriber of the old incarnation ended with %v, want errRecreated", err)
	}
	if err := current.reason(); err != nil {
		t.Errorf("subscriber of the new incarnation was ended: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := e.js.DeleteStream(ctx, "WCH"); err != nil {
		t.Fatal(err)
	}
	missing := member(oldTag)
	b.checkGuards(context.Background())
	if err := missing.reason(); err != nil {
		t.Errorf("a subscriber of a missing stream was ended: %v", err)
	}
}
