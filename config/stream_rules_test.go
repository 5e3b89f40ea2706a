package config

import (
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/names"
	"github.com/ssebridge/ssebridge/streams"
)

// TestStreamRulesAreTheServers: a rule on a reverse stream is checked once,
// by package streams. The same stream written in the file and built in
// code is refused for the same reason, in the same words: the file under
// its YAML key with its line, streams.New under the Config field.
func TestStreamRulesAreTheServers(t *testing.T) {
	nats := func(subject string) *streams.NATSConfig { return &streams.NATSConfig{Subject: subject} }
	long := strings.Repeat("a", names.MaxSubjectLen+1)
	for _, tc := range []struct {
		name   string
		yaml   string // the stream block, on line 6
		cfg    streams.Config
		key    string // under streams[0] ("" for the block)
		field  string // of streams.Config ("" for the whole)
		prefix string // of the message, the same on both sides
	}{
		{"no path", `{nats: {subject: s}}`, streams.Config{NATS: nats("s")}, "path", "Path", "required"},
		{"relative path", `{path: s, nats: {subject: s}}`, streams.Config{Path: "s", NATS: nats("s")},
			"path", "Path", `must start with /, got "s"`},
		{"neither broker", `{path: /s}`, streams.Config{Path: "/s"}, "", "", "needs exactly one of nats or kafka"},
		{"both brokers", `{path: /s, nats: {subject: s}, kafka: {topic: t}}`,
			streams.Config{Path: "/s", NATS: nats("s"), Kafka: &streams.KafkaConfig{Topic: "t"}},
			"", "", "has both nats and kafka; a stream reads exactly one"},
		{"no subject", `{path: /s, nats: {}}`, streams.Config{Path: "/s", NATS: nats("")}, "nats.subject", "NATS.Subject", "required"},
		{"empty token", `{path: /s, nats: {subject: "a..b"}}`, streams.Config{Path: "/s", NATS: nats("a..b")},
			"nats.subject", "NATS.Subject", `invalid NATS subject "a..b": empty token`},
		{"> not last", `{path: /s, nats: {subject: "a.>.b"}}`, streams.Config{Path: "/s", NATS: nats("a.>.b")},
			"nats.subject", "NATS.Subject", `invalid NATS subject "a.>.b": > must be the last token`},
		{"partial-token wildcard", `{path: /s, nats: {subject: "a.b*"}}`, streams.Config{Path: "/s", NATS: nats("a.b*")},
			"nats.subject", "NATS.Subject", `invalid NATS subject "a.b*": token "b*": wildcards * and > must be whole tokens`},
		{"control character", `{path: /s, nats: {subject: "a.\x01"}}`, streams.Config{Path: "/s", NATS: nats("a.\x01")},
			"nats.subject", "NATS.Subject", `invalid NATS subject "a.\x01": whitespace or control character at offset 2`},
		{"core subject too long", `{path: /s, nats: {subject: ` + long + `}}`, streams.Config{Path: "/s", NATS: nats(long)},
			"nats.subject", "NATS.Subject", "3841 bytes, more than 3840: the server would refuse the subscription"},
		{"jetstream name", `{path: /s, nats: {subject: s, jetstream: {stream: "a.b"}}}`,
			streams.Config{Path: "/s", NATS: &streams.NATSConfig{Subject: "s", JetStream: "a.b"}},
			"nats.jetstream.stream", "NATS.JetStream", "a JetStream stream name cannot contain"},
		{"no topic", `{path: /s, kafka: {start: earliest}}`, streams.Config{Path: "/s", Kafka: &streams.KafkaConfig{Start: "earliest"}},
			"kafka.topic", "Kafka.Topic", "required"},
		{"topic", `{path: /s, kafka: {topic: "a/b"}}`, streams.Config{Path: "/s", Kafka: &streams.KafkaConfig{Topic: "a/b"}},
			"kafka.topic", "Kafka.Topic", `invalid Kafka topic "a/b": character '/' at offset 1`},
		{"kafka start", `{path: /s, kafka: {topic: t, start: middle}}`, streams.Config{Path: "/s", Kafka: &streams.KafkaConfig{Topic: "t", Start: "middle"}},
			"kafka.start", "Kafka.Start", `must be one of latest, earliest, got "middle"`},
		{"heartbeat", `{path: /s, nats: {subject: s}, heartbeat: -1s}`, streams.Config{Path: "/s", NATS: nats("s"), Heartbeat: -time.Second},
			"heartbeat", "Heartbeat", "must not be negative"},
		{"max pending", `{path: /s, nats: {subject: s}, max_pending: -1}`, streams.Config{Path: "/s", NATS: nats("s"), MaxPending: -1},
			"max_pending", "MaxPending", "must not be negative"},
		{"max subscribers", `{path: /s, nats: {subject: s}, max_subscribers: -1}`, streams.Config{Path: "/s", NATS: nats("s"), MaxSubscribers: -1},
			"max_subscribers", "MaxSubscribers", "must not be negative"},
		{"window events", `{path: /s, nats: {subject: s}, window_events: -1}`, streams.Config{Path: "/s", NATS: nats("s"), WindowEvents: -1},
			"window_events", "WindowEvents", "must not be negative"},
		{"window bytes", `{path: /s, nats: {subject: s}, window_bytes: -1}`, streams.Config{Path: "/s", NATS: nats("s"), WindowBytes: -1},
			"window_bytes", "WindowBytes", "must not be negative"},
		{"coalesce", `{path: /s, nats: {subject: s}, coalesce: -1s}`, streams.Config{Path: "/s", NATS: nats("s"), Coalesce: -time.Second},
			"coalesce", "Coalesce", "must not be negative"},
		{"auth without a method", `{path: /s, nats: {subject: s}, auth: {cookie: c}}`,
			streams.Config{Path: "/s", NATS: nats("s"), Auth: &streams.Auth{Cookie: "c"}},
			"auth", "Auth", "needs bearer tokens or JWT"},
		{"empty bearer token", `{path: /s, nats: {subject: s}, auth: {bearer_tokens: [tok, ""]}}`,
			streams.Config{Path: "/s", NATS: nats("s"), Auth: &streams.Auth{BearerTokens: []string{"tok", ""}}},
			"auth.bearer_tokens[1]", "Auth.BearerTokens[1]", "must not be empty"},
		{"jwt without a key", `{path: /s, nats: {subject: s}, auth: {jwt: {audience: a}}}`,
			streams.Config{Path: "/s", NATS: nats("s"), Auth: &streams.Auth{JWT: &streams.JWT{Audience: "a"}}},
			"auth.jwt", "Auth.JWT", "needs an HS256 secret or an RS256 public key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, header+"streams:\n  - "+tc.yaml+"\n", nil)
			at := "f.yaml:6: streams[0]"
			if tc.key != "" {
				at += "." + tc.key
			}
			at += ": "
			if len(got) != 1 || !strings.HasPrefix(got[0], at+tc.prefix) {
				t.Fatalf("file: got %q, want one problem starting %q", got, at+tc.prefix)
			}
			fileMsg := strings.TrimPrefix(got[0], at)

			_, err := streams.New([]streams.Config{tc.cfg}, streams.Deps{})
			if err == nil {
				t.Fatal("streams.New accepted it")
			}
			name := tc.cfg.Path
			if name == "" {
				name = "#0"
			}
			want := `stream "` + name + `": `
			if tc.field != "" {
				want += tc.field + ": "
			}
			want += fileMsg
			if err.Error() != want {
				t.Errorf("streams.New: got  %q\nwant the file's message %q", err, want)
			}
		})
	}
}

// TestStreamRulesAcceptTheSame: what the file accepts, streams' rules
// accept too; a subject the file refuses is refused as a subscriber's
// ?subject= filter too (both ask internal/names).
func TestStreamRulesAcceptTheSame(t *testing.T) {
	src := header + `streams:
  - {path: /a, nats: {subject: "wiki.*.>", jetstream: {stream: WIKI}}, auth: {bearer_tokens: [t], jwt: {hs256_secret: k}}}
  - {path: /b, kafka: {topic: wiki.edits_1-x, start: earliest}, heartbeat: 1s, max_pending: 1, window_events: 2, window_bytes: 3}
  - {path: /c, nats: {subject: ">"}, auth: {jwt: {rs256_public_key_file: /k.pem}}}
`
	if got := problems(t, src, nil); got != nil {
		t.Errorf("file: %q", got)
	}
	for _, c := range []streams.Config{
		{Path: "/a", NATS: &streams.NATSConfig{Subject: "wiki.*.>", JetStream: "WIKI"},
			Auth: &streams.Auth{BearerTokens: []string{"t"}, JWT: &streams.JWT{HS256Secret: "k"}}},
		{Path: "/b", Kafka: &streams.KafkaConfig{Topic: "wiki.edits_1-x", Start: "earliest"}, Heartbeat: time.Second, MaxPending: 1, WindowEvents: 2, WindowBytes: 3},
		{Path: "/c", NATS: &streams.NATSConfig{Subject: ">"}, Auth: &streams.Auth{JWT: &streams.JWT{RS256PublicKeyFile: "/k.pem"}}},
		// Code may serve a JetStream stream's every subject.
		{Path: "/d", NATS: &streams.NATSConfig{JetStream: "WIKI"}},
	} {
		c.Check(func(key, msg string) { t.Errorf("%s: %s: %s", c.Path, key, msg) })
	}
}
