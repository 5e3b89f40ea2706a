package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// permBroker runs a server whose user "bridge" may publish to ok.> only.
func permBroker(t *testing.T) *testbroker.NATS {
	return testbroker.StartNATS(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "bridge", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"ok.>"}},
		}}}
	})
}

func bridgeConn(t *testing.T, b *testbroker.NATS, opts ...nats.Option) *nats.Conn {
	t.Helper()
	// nats.go's default error handler prints every refusal to stderr.
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := nats.Connect(b.URL(), append([]nats.Option{nats.UserInfo("bridge", "pw"), quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestServerRefusalPrecedesPong checks, against the real server, the claim
// Violations.Sync is built on: the -ERR of a refused PUB is read (and
// recorded as LastError) before the PONG of a PING sent after it, so by the
// time Flush returns the refusal is known. No error handler is installed:
// nothing asynchronous is involved.
func TestServerRefusalPrecedesPong(t *testing.T) {
	nc := bridgeConn(t, permBroker(t))
	for i := range 50 {
		subj := fmt.Sprintf("denied.%d", i)
		// Allowed publishes around the refused one, as in a real batch.
		for _, s := range []string{"ok.a", subj, "ok.b"} {
			if err := nc.Publish(s, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		got, ok := PublishViolationSubject(nc.LastError())
		if !ok || got != subj {
			t.Fatalf("after flush %d: LastError = %v, want a publish violation for %q", i, nc.LastError(), subj)
		}
		if !nc.IsConnected() {
			t.Fatalf("a refused publish closed the connection: %v", nc.Status())
		}
	}
}

func TestPublishViolationSubject(t *testing.T) {
	pv := func(text string) error { return fmt.Errorf("%w: %s", nats.ErrPermissionViolation, text) }
	for _, tc := range []struct {
		err  error
		subj string
		ok   bool
	}{
		{pv(`Permissions Violation for Publish to "a.b"`), "a.b", true},
		{pv(`Permissions Violation for Publish to "q\"uote.\u00e9"`), `q"uote.é`, true},
		{pv(`Permissions Violation for Subscription to "a.b"`), "", false},
		{pv(`Permissions Violation for Publish with Reply of "_INBOX.x"`), "", false},
		{pv(`Permissions Violation for Publish to "unterminated`), "", false},
		{errors.New(`Permissions Violation for Publish to "a.b"`), "", false}, // not nats.ErrPermissionViolation
		{nats.ErrSlowConsumer, "", false},
		{nil, "", false},
	} {
		subj, ok := PublishViolationSubject(tc.err)
		if subj != tc.subj || ok != tc.ok {
			t.Errorf("PublishViolationSubject(%v) = %q, %v; want %q, %v", tc.err, subj, ok, tc.subj, tc.ok)
		}
	}
}

func syncMark(t *testing.T, v *Violations) Mark {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := v.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func publishFlush(t *testing.T, nc *nats.Conn, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		if err := nc.Publish(s, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestWatchRecordsBySubject: refusals are recorded per subject and after a
// mark; the handler that was installed before (natsconn's logging one)
// still runs; Watch is idempotent per connection.
func TestWatchRecordsBySubject(t *testing.T) {
	b := permBroker(t)
	var logs syncbuf.Buffer
	nc, err := Connect(Config{URL: b.URL(), User: "bridge", Password: "pw"}, "test",
		slog.New(slog.NewTextHandler(&logs, nil)), noRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	v := Watch(nc)
	if Watch(nc) != v {
		t.Fatal("a second Watch of one connection returned another record")
	}
	m0 := syncMark(t, v)
	publishFlush(t, nc, "ok.1", "denied.a", "ok.2")
	m1 := syncMark(t, v)
	if !v.RefusedSince(m0, "denied.a") {
		t.Fatal("refusal of denied.a not recorded")
	}
	for _, s := range []string{"ok.1", "ok.2", "denied.b"} {
		if v.RefusedSince(m0, s) {
			t.Errorf("%s reported refused", s)
		}
	}
	if v.RefusedSince(m1, "denied.a") {
		t.Error("a refusal before the mark counted after it")
	}
	publishFlush(t, nc, "denied.a")
	syncMark(t, v)
	if !v.RefusedSince(m1, "denied.a") {
		t.Error("second refusal of denied.a not recorded")
	}
	if !strings.Contains(logs.String(), "Permissions Violation for Publish to") {
		t.Errorf("the previous error handler did not run; log:\n%s", logs.String())
	}
	// Another connection has its own record.
	other := bridgeConn(t, b)
	if Watch(other) == v {
		t.Fatal("two connections share one record")
	}
}

// TestSyncWaitsForCallback: nats.go reports a refusal to the error handler
// from its callback goroutine, possibly after Flush returned. Sync must
// wait for it. Here that goroutine is held up by the previous handler, so
// the second refusal cannot be recorded until the test lets it.
func TestSyncWaitsForCallback(t *testing.T) {
	b := permBroker(t)
	entered, release := make(chan struct{}, 10), make(chan struct{})
	nc := bridgeConn(t, b, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {
		entered <- struct{}{}
		<-release
	}))
	v := Watch(nc)
	m0 := syncMark(t, v)
	publishFlush(t, nc, "denied.first")
	<-entered // the callback goroutine is now stuck in the first call
	publishFlush(t, nc, "denied.second")
	if v.RefusedSince(m0, "denied.second") {
		t.Fatal("test setup: the second refusal was recorded while the callback goroutine was blocked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := v.Sync(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync returned %v while the refusal was still queued; want it to wait", err)
	}
	close(release)
	syncMark(t, v)
	if !v.RefusedSince(m0, "denied.second") {
		t.Fatal("after Sync, the second refusal is not recorded")
	}
}

// TestWatchAfterEarlierViolation: a refusal handled before Watch (by no
// handler at all) is not waited for, so Sync does not hang on it.
func TestWatchAfterEarlierViolation(t *testing.T) {
	nc := bridgeConn(t, permBroker(t))
	publishFlush(t, nc, "denied.before")
	if !errors.Is(nc.LastError(), nats.ErrPermissionViolation) {
		t.Fatalf("LastError = %v", nc.LastError())
	}
	v := Watch(nc)
	m := syncMark(t, v)
	if v.RefusedSince(m, "denied.before") {
		t.Fatal("a refusal before Watch reported after it")
	}
	publishFlush(t, nc, "denied.after")
	syncMark(t, v)
	if !v.RefusedSince(m, "denied.after") {
		t.Fatal("refusal after Watch not recorded on a connection built without natsconn")
	}
}

// TestRefusedSubjectsBounded: past maxRefusedSubjects distinct subjects
// the history is dropped, and an old mark then counts as refused for every
// subject (a retry, never a miss); new marks are exact again.
func TestRefusedSubjectsBounded(t *testing.T) {
	v := &Violations{subjects: map[string]uint64{}, wake: make(chan struct{})}
	pv := func(s string) error {
		return fmt.Errorf("%w: Permissions Violation for Publish to %q", nats.ErrPermissionViolation, s)
	}
	v.record(pv("a"))
	m := Mark(v.seq)
	for i := range maxRefusedSubjects + 1 {
		v.record(pv(fmt.Sprint("s.", i)))
	}
	if len(v.subjects) > maxRefusedSubjects {
		t.Fatalf("%d subjects kept", len(v.subjects))
	}
	if !v.RefusedSince(m, "never.refused") {
		t.Fatal("a mark older than the forgotten history must count as refused")
	}
	m2 := Mark(v.seq)
	if v.RefusedSince(m2, "never.refused") {
		t.Fatal("a fresh mark is not exact")
	}
	v.record(pv("x"))
	if !v.RefusedSince(m2, "x") || v.RefusedSince(m2, "y") {
		t.Fatal("fresh mark after the reset")
	}
}
