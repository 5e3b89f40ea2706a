package nats_test

import (
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
)

// TestResumedFeedResendingLastEventIsStoredOnce: many feeds resume
// inclusively, sending again the event that Last-Event-ID names before the
// ones after it. That event carries its own id field, so it is a replay of
// the stored event and gets the same Nats-Msg-Id; it used to be taken for
// an event inheriting the ID (it equals the stream's last ID), sent
// without Nats-Msg-Id and stored twice. An event of the same feed that has
// no id field of its own, first after the resume, still inherits and is
// stored (TestRestartKeepsEventWithInheritedID).
func TestResumedFeedResendingLastEventIsStoredOnce(t *testing.T) {
	e := newJSEnv(t)
	// Inclusive resume: 5 again, then what follows it.
	feed, second := resumingFeed(t, "id: 5\ndata: A\n\ndata: ping\n\nid: 6\ndata: B\n\n")
	store := &recordingStore{}

	w1 := startWorker(t, "resend", feed.URL, e.open(t, "resend", e2eConfig()), store)
	w1.WaitAcked(t, "5")
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	second()
	w2 := startWorker(t, "resend", feed.URL, e.open(t, "resend", e2eConfig()), store)
	w2.WaitAcked(t, "6")
	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	got := jsReceived(t, e, "E2E")
	var data []string
	for _, g := range got {
		data = append(data, string(g.Data)+"@"+g.Headers[sinks.HeaderID])
	}
	if len(data) != 3 || data[0] != "A@5" || data[1] != "ping@5" || data[2] != "B@6" {
		t.Fatalf("stream holds %q, want A@5 once, then ping@5 and B@6", data)
	}
}
