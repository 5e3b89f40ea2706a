package nats_test

// A publish the server refuses for lack of permission must never be
// counted as delivered: core NATS answers it only with an asynchronous
// -ERR, which the sink must notice before it reports the batch acked.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/testbroker"
	"github.com/ssebridge/ssebridge/sinks"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
	"github.com/ssebridge/ssebridge/sources"
)

// permUsers: "bridge" may publish to allow (plus the JetStream API) only;
// "admin" may do anything and is what the tests read with.
func permUsers(allow ...string) []*server.User {
	return []*server.User{
		{Username: "bridge", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: append([]string{"$JS.API.>"}, allow...)},
		}},
		{Username: "admin", Password: "pw"},
	}
}

func permBroker(t *testing.T) *testbroker.NATS {
	return testbroker.StartNATS(t, func(o *server.Options) { o.Users = permUsers("ok.>") })
}

// bridgeConn is the bridge's connection as the bridge builds it.
func bridgeConn(t *testing.T, b *testbroker.NATS) *gonats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(natsconn.Config{URL: b.URL(), User: "bridge", Password: "pw"}, "test", nil,
		gonats.ReconnectWait(25*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// watcher subscribes as admin to every two-token subject (ok.N, denied.N)
// with one subscription, so messages arrive in the order the server
// handled them.
func watcher(t *testing.T, b *testbroker.NATS) *gonats.Subscription {
	t.Helper()
	nc, err := gonats.Connect(b.URL(), gonats.UserInfo("admin", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("*.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// expectSubjects reads the next len(want) messages of sub.
func expectSubjects(t *testing.T, sub *gonats.Subscription, want ...string) {
	t.Helper()
	for i, w := range want {
		m, err := sub.NextMsg(sinktest.Timeout)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.Subject != w {
			t.Fatalf("message %d on %q, want %q", i, m.Subject, w)
		}
	}
}

// routed is a batch routed by {data.s}, one message per subject.
func routed(pipeline string, subjects ...string) []sinks.Message {
	var out []sinks.Message
	for i, s := range subjects {
		out = append(out, sinktest.Msg(pipeline, fmt.Sprint(i+1), "message", []byte(`{"s":"`+s+`"}`)))
	}
	return out
}

func openSink(t *testing.T, nc *gonats.Conn, pipeline string, cfg natssink.Options) *natssink.Sink {
	t.Helper()
	s, err := natssink.New(context.Background(), nc, pipeline, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func write(s sinks.Sink, m []sinks.Message) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
	defer cancel()
	return s.Write(ctx, m)
}

func failedCount(pipeline string) float64 {
	return sinktest.CounterValue(metrics.SinkFailed.WithLabelValues(pipeline, natssink.Kind))
}

// TestCoreRefusedNotCounted: every message of the batch goes to a subject
// the user may not publish to; none is counted, the error says why and
// where, and the sink (and its connection) still work for allowed
// subjects.
func TestCoreRefusedNotCounted(t *testing.T) {
	b := permBroker(t)
	sub := watcher(t, b)
	nc := bridgeConn(t, b)
	s := openSink(t, nc, "perm-all", natssink.Options{Subject: "{data.s}"})
	before := failedCount("perm-all")
	n, err := write(s, routed("perm-all", "denied.1", "denied.1", "denied.1"))
	if n != 0 || !errors.Is(err, natssink.ErrPermissionDenied) {
		t.Fatalf("Write = %d, %v; want 0 and ErrPermissionDenied", n, err)
	}
	if !strings.Contains(err.Error(), `"denied.1"`) {
		t.Errorf("error %q does not name the subject", err)
	}
	if d := failedCount("perm-all") - before; d != 3 {
		t.Errorf("sink_failed_total grew by %v, want the 3 refused messages", d)
	}
	if !nc.IsConnected() {
		t.Fatalf("connection %v after a refusal", nc.Status())
	}
	if n, err := write(s, routed("perm-all", "ok.1")); n != 1 || err != nil {
		t.Fatalf("allowed write after a refusal: %d, %v", n, err)
	}
	// The server handles one connection's messages in order: had a
	// refused one been delivered, it would arrive before ok.1.
	expectSubjects(t, sub, "ok.1")
}

// TestCoreRefusedMidBatch: n is the prefix before the first refused
// message; the ones before it are delivered and stay counted.
func TestCoreRefusedMidBatch(t *testing.T) {
	b := permBroker(t)
	sub := watcher(t, b)
	s := openSink(t, bridgeConn(t, b), "perm-mid", natssink.Options{Subject: "{data.s}"})
	published := metrics.SinkPublished.WithLabelValues("perm-mid", natssink.Kind)
	before := sinktest.CounterValue(published)
	n, err := write(s, routed("perm-mid", "ok.1", "ok.2", "denied.3", "ok.4"))
	if n != 2 || !errors.Is(err, natssink.ErrPermissionDenied) || !strings.Contains(err.Error(), "denied.3") {
		t.Fatalf("Write = %d, %v; want 2 and ErrPermissionDenied naming denied.3", n, err)
	}
	if d := sinktest.CounterValue(published) - before; d != 2 {
		t.Errorf("sink_published_total grew by %v, want 2", d)
	}
	// ok.4 went out too; the caller's retry of msgs[2:] repeats it
	// (core NATS is at least once across a failed batch).
	expectSubjects(t, sub, "ok.1", "ok.2", "ok.4")
}

// TestCoreRefusalIsPerPipeline: pipelines share the bridge's connection.
// Pipeline A's refusals, concurrent with B's writes or just before them,
// must not fail B.
func TestCoreRefusalIsPerPipeline(t *testing.T) {
	b := permBroker(t)
	nc := bridgeConn(t, b)
	a := openSink(t, nc, "perm-a", natssink.Options{Subject: "denied.a"})
	bs := openSink(t, nc, "perm-b", natssink.Options{Subject: "ok.b"})
	const rounds = 30
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range rounds {
			if n, err := write(a, msgs("perm-a", "1", "2", "3")); n != 0 || !errors.Is(err, natssink.ErrPermissionDenied) {
				errs <- fmt.Errorf("A round %d: Write = %d, %v; want 0 and ErrPermissionDenied", i, n, err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range rounds {
			if n, err := write(bs, msgs("perm-b", "1", "2", "3", "4")); n != 4 || err != nil {
				errs <- fmt.Errorf("B round %d: Write = %d, %v; want 4, nil", i, n, err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Just after: A's refusal is recorded, B writes at once.
	for i := range 10 {
		if _, err := write(a, msgs("perm-a", "x")); !errors.Is(err, natssink.ErrPermissionDenied) {
			t.Fatalf("A: %v", err)
		}
		if n, err := write(bs, msgs("perm-b", "y")); n != 1 || err != nil {
			t.Fatalf("B right after A's refusal (%d): %d, %v", i, n, err)
		}
	}
}

// TestCoreRefusalWithoutNatsconn: the sink also detects refusals on a
// connection a program built with plain nats.go options.
func TestCoreRefusalWithoutNatsconn(t *testing.T) {
	b := permBroker(t)
	nc, err := gonats.Connect(b.URL(), gonats.UserInfo("bridge", "pw"),
		gonats.ErrorHandler(func(*gonats.Conn, *gonats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := openSink(t, nc, "perm-plain", natssink.Options{Subject: "{data.s}"})
	if n, err := write(s, routed("perm-plain", "ok.1", "denied.2")); n != 1 || !errors.Is(err, natssink.ErrPermissionDenied) {
		t.Fatalf("Write = %d, %v; want 1 and ErrPermissionDenied", n, err)
	}
}

// TestJetStreamRefusedPublish: a JetStream publish the server refuses gets
// no PubAck, so it was never counted; the sink reports it as a refusal as
// soon as the -ERR arrives instead of after the 10 s ack timeout.
func TestJetStreamRefusedPublish(t *testing.T) {
	for _, inFlight := range []int{1, 64} {
		t.Run(fmt.Sprint("max_in_flight=", inFlight), func(t *testing.T) {
			b := permBroker(t)
			admin, err := gonats.Connect(b.URL(), gonats.UserInfo("admin", "pw"))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			js, err := jetstream.New(admin)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), sinktest.Timeout)
			defer cancel()
			// The stream takes both subjects; only the user's permission
			// keeps denied.> out.
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PERM", Subjects: []string{"ok.>", "denied.>"}}); err != nil {
				t.Fatal(err)
			}
			s := openSink(t, bridgeConn(t, b), "perm-js", natssink.Options{Subject: "{data.s}", JetStream: true,
				MaxInFlight: inFlight, Stream: &natssink.StreamOptions{Name: "PERM"}})
			start := time.Now()
			n, err := write(s, routed("perm-js", "ok.1", "denied.2", "ok.3"))
			if n != 1 || !errors.Is(err, natssink.ErrPermissionDenied) || !strings.Contains(err.Error(), "denied.2") {
				t.Fatalf("Write = %d, %v; want 1 and ErrPermissionDenied naming denied.2", n, err)
			}
			if d := time.Since(start); d >= natssink.AckTimeout {
				t.Errorf("refusal reported after %v, the ack timeout", d)
			}
			st, err := js.Stream(ctx, "PERM")
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Subjects["denied.2"] != 0 || info.State.Subjects["ok.1"] != 1 {
				t.Fatalf("stream subjects %v", info.State.Subjects)
			}
		})
	}
}

// TestEndToEndCoreRefusedThenGranted: feed → worker → core sink on a
// subject the user may not publish to → file checkpoint. Nothing is
// checkpointed while the server refuses; once the permission is granted
// (config reload, existing connection kept) every event arrives, in order,
// and the checkpoint reaches the last one.
func TestEndToEndCoreRefusedThenGranted(t *testing.T) {
	b := permBroker(t)
	r := newCoreReaderSubject(t, b.URL(), "feed.>", gonats.UserInfo("admin", "pw"))
	feed := sinktest.NewFeed(t, 40)
	fs, err := checkpoint.NewFileStore(filepath.Join(t.TempDir(), "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	nc := bridgeConn(t, b)
	s := openSink(t, nc, "wiki", natssink.Options{Subject: "feed.{event}"})
	w := startWorker(t, "wiki", feed.URL(), s, fs)
	feed.Release(40)
	waitFor(t, "worker received events and paused on the refusing sink", func() bool {
		st := w.Status()
		return st.Received > 0 && st.State == sources.StatePaused && strings.Contains(st.LastError, natssink.ErrPermissionDenied.Error())
	})
	if id := w.Status().LastEventID; id != "" {
		t.Fatalf("acknowledged %q while the server refused every publish", id)
	}
	if id, ok, err := fs.Load(context.Background(), "wiki"); err != nil || ok {
		t.Fatalf("checkpoint %q, %v, %v while the server refused every publish", id, ok, err)
	}
	o := &server.Options{Host: "127.0.0.1", Port: b.Port(), JetStream: true, StoreDir: b.StoreDir(),
		NoLog: true, NoSigs: true, Users: permUsers("ok.>", "feed.>")}
	if err := b.Server().ReloadOptions(o); err != nil {
		t.Fatalf("reload with the permission granted: %v", err)
	}
	w.WaitAcked(t, "40")
	sinktest.CheckDelivered(t, "wiki", feed.Events(), r.all(t, 40))
	waitFor(t, "checkpoint saved at 40", func() bool { id, _, _ := fs.Load(context.Background(), "wiki"); return id == "40" })
	if !nc.IsConnected() {
		t.Fatalf("connection %v", nc.Status())
	}
}
