package streams

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/sse"
)

func jsStreamCfg(path, stream, subject string) Config {
	return Config{Path: path, NATS: &NATSConfig{Subject: subject, JetStream: stream}}
}

func TestJetStreamPublishReceive(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "WIKI", "wiki.>")
	// Published before the subscriber: a new subscriber starts at the end.
	e.jsPublish(t, "wiki.en.edit", "edit", "old")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/recv", "WIKI", "wiki.>")}, Deps{NATS: e.nc})

	sentBefore := metricValue(t, metrics.StreamEventsSent.WithLabelValues("/js/recv"))
	c := subscribe(t, hs.URL+"/js/recv", nil)
	h := c.resp.Header
	if got := h.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := h.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control = %q", got)
	}
	if got := h.Get("X-Accel-Buffering"); got != "no" {
		t.Errorf("X-Accel-Buffering = %q", got)
	}
	// The opening comment arrives before any event exists.
	select {
	case <-c.comments:
	case <-c.done:
		t.Fatal("stream ended before its opening comment")
	}

	// The subscription is in place once 200 arrived: nothing is missed.
	s1 := e.jsPublish(t, "wiki.en.edit", "edit", "line one\nline two")
	s2 := e.jsPublish(t, "wiki.de.new", "message", "plain")
	s3 := e.jsPublish(t, "wiki.de.new", "", "untyped")
	got := c.take(t, 3)
	want := []sse.Event{
		{ID: e.jsIDOf(t, "WIKI", s1), Type: "edit", Data: []byte("line one\nline two")},
		{ID: e.jsIDOf(t, "WIKI", s2), Type: "message", Data: []byte("plain")},
		{ID: e.jsIDOf(t, "WIKI", s3), Type: "message", Data: []byte("untyped")},
	}
	// The id still starts with the stream sequence, which an operator
	// reads; the tag after it names the stream's incarnation.
	if want := strconv.FormatUint(s1, 10) + "-"; !strings.HasPrefix(got[0].ID, want) {
		t.Errorf("id %q does not start with the sequence %q", got[0].ID, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Type != want[i].Type || string(got[i].Data) != string(want[i].Data) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	sent := metricValue(t, metrics.StreamEventsSent.WithLabelValues("/js/recv")) - sentBefore
	if sent != 3 {
		t.Errorf("stream_events_sent_total = %v, want 3", sent)
	}
}

func TestJetStreamResumeExactlyTheMissingEvents(t *testing.T) {
	for _, via := range []string{"header", "query"} {
		t.Run(via, func(t *testing.T) {
			e := startNATS(t)
			e.createStream(t, "RES", "res.>")
			_, hs := startServer(t, []Config{jsStreamCfg("/js/resume", "RES", "res.>")}, Deps{NATS: e.nc})

			c := subscribe(t, hs.URL+"/js/resume", nil)
			for i := range 6 {
				e.jsPublish(t, "res.a", "tick", fmt.Sprint("e", i))
			}
			first := c.take(t, 3)
			c.close() // disconnect mid-stream, 3 events unread
			for i := 6; i < 9; i++ {
				e.jsPublish(t, "res.a", "tick", fmt.Sprint("e", i))
			}

			last := first[len(first)-1].ID
			target, hdr := hs.URL+"/js/resume", map[string]string{}
			if via == "header" {
				hdr["Last-Event-ID"] = last
			} else {
				target += "?lastEventId=" + url.QueryEscape(last)
			}
			c2 := subscribe(t, target, hdr)
			rest := c2.take(t, 6)
			all := append(datas(first), datas(rest)...)
			want := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"}
			if !slices.Equal(all, want) {
				t.Fatalf("received %v, want %v", all, want)
			}
			// And nothing more: a repeat would show up as a tenth event.
			e.jsPublish(t, "res.a", "tick", "e9")
			if ev := c2.next(t); string(ev.Data) != "e9" {
				t.Fatalf("after the resumed events got %q, want e9", ev.Data)
			}
		})
	}
}

func TestJetStreamResumeOlderThanRetainedStartsAtEarliest(t *testing.T) {
	e := startNATS(t)
	st := e.createStream(t, "OLD", "old.>")
	for i := 1; i <= 10; i++ {
		e.jsPublish(t, "old.x", "tick", fmt.Sprint("e", i))
	}
	// Drop sequences 1-5, as max_age or max_bytes would.
	if err := st.Purge(context.Background(), jetstream.WithPurgeSequence(6)); err != nil {
		t.Fatalf("purge: %v", err)
	}
	_, hs := startServer(t, []Config{jsStreamCfg("/js/old", "OLD", "")}, Deps{NATS: e.nc})
	before := metricValue(t, metrics.ResumeTooOld.WithLabelValues("/js/old"))

	c := subscribe(t, hs.URL+"/js/old", map[string]string{"Last-Event-ID": "2"})
	got := datas(c.take(t, 5))
	if want := []string{"e6", "e7", "e8", "e9", "e10"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if d := metricValue(t, metrics.ResumeTooOld.WithLabelValues("/js/old")) - before; d != 1 {
		t.Errorf("stream_resume_expired_total grew by %v, want 1", d)
	}
}

func TestJetStreamSinceAndSubjectNarrowing(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "NAR", "wiki.>")
	_, hs := startServer(t, []Config{
		jsStreamCfg("/js/wiki", "NAR", "wiki.>"),
		jsStreamCfg("/js/wiki-en", "NAR", "wiki.en.>"),
	}, Deps{NATS: e.nc})

	e.jsPublish(t, "wiki.en.edit", "edit", "en1")
	e.jsPublish(t, "wiki.de.edit", "edit", "de1")
	e.jsPublish(t, "wiki.en.new", "new", "en2")

	// since= in the past replays history, narrowed to wiki.en.>.
	c := subscribe(t, hs.URL+"/js/wiki?since=2000-01-01T00:00:00Z&subject="+url.QueryEscape("wiki.en.>"), nil)
	if got := datas(c.take(t, 2)); !slices.Equal(got, []string{"en1", "en2"}) {
		t.Fatalf("narrowed replay = %v", got)
	}
	e.jsPublish(t, "wiki.de.edit", "edit", "de2")
	e.jsPublish(t, "wiki.en.edit", "edit", "en3")
	if got := string(c.next(t).Data); got != "en3" {
		t.Fatalf("live narrowed event = %q, want en3", got)
	}

	// A subject outside the stream's configured one is refused.
	resp := get(t, hs.URL+"/js/wiki-en?subject="+url.QueryEscape("wiki.>"), nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("subject outside the stream: %s", resp.Status)
	}
}

func TestJetStreamBadLastEventID(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "BAD", "bad.>")
	e.jsPublish(t, "bad.x", "", "one")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/bad", "BAD", "")}, Deps{NATS: e.nc})

	kafkaTok := encodeToken(topicTag("some-topic"), position{0: 5})
	for _, tc := range []struct{ id, wantMsg string }{
		{"not-a-number", "not a JetStream sequence"},
		{kafkaTok, "not a JetStream sequence"},
		{"99", "beyond the last"},
	} {
		resp := get(t, hs.URL+"/js/bad", map[string]string{"Last-Event-ID": tc.id})
		body := readBody(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.wantMsg) {
			t.Errorf("Last-Event-ID %q: %s %q, want 400 mentioning %q", tc.id, resp.Status, body, tc.wantMsg)
		}
	}
	// The last sequence itself is a valid position: resume gets what follows.
	c := subscribe(t, hs.URL+"/js/bad", map[string]string{"Last-Event-ID": "1"})
	e.jsPublish(t, "bad.x", "", "two")
	if got := string(c.next(t).Data); got != "two" {
		t.Fatalf("got %q, want two", got)
	}
}

func readBody(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestJetStreamSubscriberSurvivesBrokerRestart(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "RST", "rst.>")
	_, hs := startServer(t, []Config{
		jsStreamCfg("/js/rst", "RST", "rst.>"),
		coreCfg("/core/rst", "live.>"),
	}, Deps{NATS: e.nc})
	js := subscribe(t, hs.URL+"/js/rst", nil)
	core := subscribe(t, hs.URL+"/core/rst", nil)
	e.jsPublish(t, "rst.a", "", "e1")
	e.jsPublish(t, "rst.a", "", "e2")
	if got := datas(js.take(t, 2)); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Fatalf("before restart: %v", got)
	}

	e.broker.Restart(t)
	// Publish once the connection is back; JetStream keeps the messages on
	// disk, the subscriber's in-memory consumer is gone with the old server.
	deadline := time.Now().Add(waitLong)
	for !e.nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// JetStream may need a moment after the restart to answer publishes.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m := natsMsg("rst.a", "", "e3")
		m.Header.Set(jetstream.MsgIDHeader, "e3") // a retried publish must not duplicate
		_, err := e.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.jsPublish(t, "rst.a", "", "e4")
	if got := datas(js.take(t, 2)); !slices.Equal(got, []string{"e3", "e4"}) {
		t.Fatalf("after restart the same response delivered %v, want e3 e4", got)
	}
	// A core NATS subject keeps no history: what was published while the
	// connection was down is lost, so its subscriber is ended rather than
	// left to skip it silently, and a new one is served once the client
	// library has re-subscribed.
	core.ended(t)
	again := subscribe(t, hs.URL+"/core/rst", nil)
	e.publish(t, "live.x", "", "live")
	if got := string(again.next(t).Data); got != "live" {
		t.Fatalf("core subscriber after restart got %q", got)
	}
}
