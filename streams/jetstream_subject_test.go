package streams

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestJetStreamWholeStreamSubjectOutsideIsBadRequest: a stream configured
// without a subject serves every subject of its JetStream stream. A
// subject= filter outside those subjects is the client's mistake, so it
// must get 400 like the same filter on a stream with a subject does, not
// a 503 "unavailable" (and a warning in the log) from the broker refusing
// the consumer.
func TestJetStreamWholeStreamSubjectOutsideIsBadRequest(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "WHOLE", "whole.>", "extra.*")
	_, hs := startServer(t, []Config{jsStreamCfg("/js/whole", "WHOLE", "")}, Deps{NATS: e.nc})

	for _, subj := range []string{"other.x", "extra.a.b", "whole", "extra.*.*"} {
		u := hs.URL + "/js/whole?subject=" + url.QueryEscape(subj)
		// probe first: a 200 stream's body would never end.
		if code := probe(t, u); code != http.StatusBadRequest {
			t.Errorf("subject=%s: %d, want 400", subj, code)
			continue
		}
		if body := readBody(get(t, u, nil)); !strings.Contains(body, subj) {
			t.Errorf("subject=%s: answer %q does not name the subject", subj, body)
		}
	}
	// Subjects the stream stores still narrow it, and so does one that
	// spans several of its subjects.
	if code := probe(t, hs.URL+"/js/whole?subject="+url.QueryEscape("*.a")); code != http.StatusOK {
		t.Errorf("subject=*.a: %d, want 200", code)
	}
	c := subscribe(t, hs.URL+"/js/whole?subject="+url.QueryEscape("extra.a"), nil)
	e.jsPublish(t, "whole.x", "", "skipped")
	e.jsPublish(t, "extra.a", "", "kept")
	if got := string(c.next(t).Data); got != "kept" {
		t.Fatalf("narrowed event = %q, want kept", got)
	}
}

func TestSubjectsOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.>", "a.b.c", true},
		{">", "a.b", true},
		{"a.*.c", "a.>", true},
		{"a.*", "a.b.c", false},
		{"a", "a.>", false},
		{"*.a", "whole.>", true},
		{"x.>", "y.>", false},
	} {
		if got := subjectsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := subjectsOverlap(tc.b, tc.a); got != tc.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// TestJetStreamFilterOutsideTheStream: the same 200-then-nothing happened
// for a configured subject the JetStream stream does not store (a 503
// with the reason, logged for the operator, is the honest answer), and for
// a client filter within the configured subject but outside the stream.
func TestJetStreamFilterOutsideTheStream(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "PART", "wiki.en.>")
	_, hs := startServer(t, []Config{
		jsStreamCfg("/js/typo", "PART", "wkii.>"),
		jsStreamCfg("/js/wide", "PART", "wiki.>"),
	}, Deps{NATS: e.nc})

	if code := probe(t, hs.URL+"/js/typo"); code != http.StatusServiceUnavailable {
		t.Errorf("configured subject outside the stream: %d, want 503", code)
	}
	if code := probe(t, hs.URL+"/js/wide?subject="+url.QueryEscape("wiki.de.>")); code != http.StatusBadRequest {
		t.Errorf("client subject outside the stream: %d, want 400", code)
	}
	c := subscribe(t, hs.URL+"/js/wide", nil)
	e.jsPublish(t, "wiki.en.x", "", "en")
	if got := string(c.next(t).Data); got != "en" {
		t.Fatalf("event = %q, want en", got)
	}
}
