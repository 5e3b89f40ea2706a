package config

import (
	"strings"
	"testing"
)

// TestHeaderNamesDifferingInCase: HTTP header names ignore case, so
// User-Agent and user-agent in one headers block would send only one of
// the two, chosen by map order. The file is refused instead, at the line
// of the later key, naming both.
func TestHeaderNamesDifferingInCase(t *testing.T) {
	const file = `nats: {embedded: true}
pipelines:
  - name: a
    source:
      url: https://example.com/feed
      headers:
        User-Agent: first
        Accept: text/event-stream
        user-agent: second
    sink: {nats: {subject: s}}
`
	for range 5 { // map order varies: the message must not
		_, err := parse("c.yaml", []byte(file), func(string) (string, bool) { return "", false })
		if err == nil {
			t.Fatal("two spellings of User-Agent were accepted")
		}
		want := "c.yaml:9: pipelines[0].source.headers.user-agent: same header as User-Agent (header names ignore case); keep one"
		if strings.TrimSpace(err.Error()) != want {
			t.Fatalf("error:\n%v\nwant:\n%s", err, want)
		}
	}
}

// TestHeaderValueControlCharacters: a control character in a header value
// (from an environment variable, say) is reported by validate with its
// line; net/http would refuse the request on every connection attempt.
func TestHeaderValueControlCharacters(t *testing.T) {
	const file = `nats: {embedded: true}
pipelines:
  - name: a
    source:
      url: https://example.com/feed
      headers:
        X-Api-Key: ${KEY}
        X-Tab: "a	b"
    sink: {nats: {subject: s}}
`
	env := func(name string) (string, bool) { return "abc\x01def", name == "KEY" }
	_, err := parse("c.yaml", []byte(file), env)
	want := "c.yaml:7: pipelines[0].source.headers.X-Api-Key: header values cannot contain control characters or line breaks"
	if err == nil || strings.TrimSpace(err.Error()) != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
}

// TestHeaderProblemsNameTheWrittenKey: the validation checks the source
// as the runner gets it (names canonicalised, Last-Event-ID taken out of
// the headers as the start ID), yet each problem names the header as the
// file writes it, on its line.
func TestHeaderProblemsNameTheWrittenKey(t *testing.T) {
	const file = `nats: {embedded: true}
pipelines:
  - name: a
    source:
      url: https://example.com/feed
      headers:
        x-api-key: ${KEY}
        last-event-id: ${KEY}
    sink: {nats: {subject: s}}
`
	env := func(name string) (string, bool) { return "abc\x01def", name == "KEY" }
	_, err := parse("c.yaml", []byte(file), env)
	want := "c.yaml:7: pipelines[0].source.headers.x-api-key: header values cannot contain control characters or line breaks\n" +
		"c.yaml:8: pipelines[0].source.headers.last-event-id: contains a control character: it cannot be sent as Last-Event-ID"
	if err == nil || strings.TrimSpace(err.Error()) != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
}
