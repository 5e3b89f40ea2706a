package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

// env is a fixed environment so tests do not depend on the machine's.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// problems parses src as f.yaml and returns its errors as strings.
func problems(t *testing.T, src string, vars map[string]string) []string {
	t.Helper()
	cfg, err := parse("f.yaml", []byte(src), env(vars))
	if err == nil {
		return nil
	}
	if cfg != nil {
		t.Errorf("parse returned a config together with an error")
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
	}
	return out
}

const header = `nats:
  url: nats://127.0.0.1:4222
kafka:
  brokers: [127.0.0.1:9092]
`

// Line numbers below count header's 4 lines.
func TestParseReportsEachProblemAtItsLine(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // "LINE: key: message prefix"
	}{
		{"unknown key", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {nats: {subject: s}}
    colour: blue
`, "9: pipelines[0].colour: unknown key"},
		{"cluster lease_ttl", header + `cluster:
  enabled: true
  lease_ttl: 500ms
streams:
  - {path: /s, nats: {subject: s}}
`, "7: cluster.lease_ttl: must be at least 1s (leases are renewed every third of it), got 500ms"},
		{"cluster replica_id", header + `cluster:
  replica_id: "a.b"
streams:
  - {path: /s, nats: {subject: s}}
`, `6: cluster.replica_id: must be letters, digits, - and _, got "a.b"`},
		{"cluster without nats", `kafka:
  brokers: [127.0.0.1:9092]
cluster:
  enabled: true
streams:
  - {path: /s, kafka: {topic: s}}
`, "4: cluster.enabled: needs NATS (nats.url, or nats.embedded for a test): the replicas coordinate through a JetStream key-value bucket"},
		{"misspelt key suggests", header + `http:
  adr: 127.0.0.1:1
streams:
  - {path: /s, nats: {subject: s}}
`, "6: http.adr: unknown key (did you mean addr?)"},
		{"wrong type int", header + `pipelines:
  - name: a
    source:
      url: http://x
      queue_size: lots
    sink: {nats: {subject: s}}
`, `9: pipelines[0].source.queue_size: must be an integer, got "lots"`},
		{"wrong type bool", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {nats: {subject: s, jetstream: maybe}}
`, `8: pipelines[0].sink.nats.jetstream: must be true or false, got "maybe"`},
		{"mapping where a string goes", header + `pipelines:
  - name: {first: a}
    source: {url: "http://x"}
    sink: {nats: {subject: s}}
`, "6: pipelines[0].name: must be a string, not a mapping"},
		{"list where a mapping goes", header + `http: [a, b]
streams:
  - {path: /s, nats: {subject: s}}
`, "5: http: must be a mapping, not a list"},
		{"missing pipeline name", header + `pipelines:
  - source: {url: "http://x"}
    sink: {nats: {subject: s}}
`, "6: pipelines[0].name: required"},
		{"missing source url", header + `pipelines:
  - name: a
    source:
      method: POST
    sink: {nats: {subject: s}}
`, "7: pipelines[0].source.url: required"},
		{"missing nats subject", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats:
        jetstream: true
`, "9: pipelines[0].sink.nats.subject: required"},
		{"missing kafka topic", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka: {key: "{id}"}
`, "9: pipelines[0].sink.kafka.topic: required"},
		{"missing stream path", header + `streams:
  - nats: {subject: s}
`, "6: streams[0].path: required"},
		{"bad duration", header + `pipelines:
  - name: a
    source:
      url: http://x
      retry:
        initial: 5 seconds
    sink: {nats: {subject: s}}
`, `10: pipelines[0].source.retry.initial: must be a duration like 90s or 1m30s, got "5 seconds"`},
		{"duration without unit", header + `shutdown_timeout: 90
streams:
  - {path: /s, nats: {subject: s}}
`, `5: shutdown_timeout: must be a duration like 90s or 1m30s, got "90"`},
		{"negative duration", header + `streams:
  - path: /s
    nats: {subject: s}
    heartbeat: -1s
`, "8: streams[0].heartbeat: must not be negative"},
		{"source url not http", header + `pipelines:
  - name: a
    source:
      url: ftp://example.com/feed
    sink: {nats: {subject: s}}
`, `8: pipelines[0].source.url: must be an http:// or https:// URL, got "ftp://example.com/feed"`},
		{"nats url scheme", `nats:
  url: http://127.0.0.1:4222
streams:
  - {path: /s, nats: {subject: s}}
`, `2: nats.url: scheme must be nats, tls, ws or wss, got "http"`},
		{"log format", header + `log: {format: xml}
streams:
  - {path: /s, nats: {subject: s}}
`, `5: log.format: must be one of text, json, got "xml"`},
		{"log level", header + `log:
  level: loud
streams:
  - {path: /s, nats: {subject: s}}
`, `6: log.level: must be one of debug, info, warn, error, got "loud"`},
		{"required_acks", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: t
        required_acks: most
`, `11: pipelines[0].sink.kafka.required_acks: must be one of all, got "most"`},
		{"required_acks one", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: t
        required_acks: one
`, `11: pipelines[0].sink.kafka.required_acks: one is refused: the partition leader acknowledges before its followers copy the event, so a leader failure loses events already checkpointed; use all (the default)`},
		{"required_acks none", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: t
        required_acks: none
`, `11: pipelines[0].sink.kafka.required_acks: none is refused: writes are not acknowledged, so any failed write loses events already checkpointed; use all (the default)`},
		{"compression", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: t
        compression: brotli
`, `11: pipelines[0].sink.kafka.compression: must be one of none, gzip, snappy, lz4, zstd, got "brotli"`},
		{"sasl mechanism", `kafka:
  brokers: [127.0.0.1:9092]
  sasl:
    mechanism: kerberos
    username: u
    password: p
streams:
  - {path: /s, kafka: {topic: t}}
`, `4: kafka.sasl.mechanism: must be one of plain, scram-sha-256, scram-sha-512, got "kerberos"`},
		{"kafka start", header + `streams:
  - path: /s
    kafka: {topic: t, start: middle}
`, `7: streams[0].kafka.start: must be one of latest, earliest, got "middle"`},
		{"duplicate pipeline name", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {nats: {subject: s}}
  - name: a
    source: {url: "http://y"}
    sink: {nats: {subject: s}}
`, `9: pipelines[1].name: duplicate pipeline name "a" (also pipelines[0] at line 6)`},
		{"duplicate stream path", header + `streams:
  - path: /s
    nats: {subject: s}
  - path: /s
    kafka: {topic: t}
`, `8: streams[1].path: duplicate stream path "/s" (also streams[0] at line 6)`},
		{"path without slash", header + `streams:
  - path: sse/x
    nats: {subject: s}
`, `6: streams[0].path: must start with /, got "sse/x"`},
		{"path collides with metrics", header + `streams:
  - path: /metrics
    nats: {subject: s}
`, "6: streams[0].path: /metrics is served by ssebridge itself"},
		{"path collides with healthz", header + `streams:
  - {path: /healthz, nats: {subject: s}}
`, "6: streams[0].path: /healthz is served by ssebridge itself"},
		{"path collides with readyz", header + `streams:
  - {path: /readyz, nats: {subject: s}}
`, "6: streams[0].path: /readyz is served by ssebridge itself"},
		{"path under api", header + `streams:
  - {path: /api/pipelines, nats: {subject: s}}
`, "6: streams[0].path: /api is served by ssebridge itself"},
		{"unclean path", header + `streams:
  - {path: /sse/../x, nats: {subject: s}}
`, `6: streams[0].path: must be a clean path like /sse/recentchange, got "/sse/../x"`},
		{"nats sink without nats", `kafka:
  brokers: [127.0.0.1:9092]
pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: s}
`, "7: pipelines[0].sink.nats: NATS is not configured: set nats.url or nats.embedded"},
		{"kafka sink without brokers", `nats: {embedded: true}
pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka: {topic: t}
`, "6: pipelines[0].sink.kafka: Kafka is not configured: set kafka.brokers"},
		{"nats stream without nats", `kafka: {brokers: [127.0.0.1:9092]}
streams:
  - path: /s
    nats: {subject: s}
`, "4: streams[0].nats: NATS is not configured: set nats.url or nats.embedded"},
		{"kafka stream without brokers", `nats: {embedded: true}
streams:
  - path: /s
    kafka: {topic: t}
`, "4: streams[0].kafka: Kafka is not configured: set kafka.brokers"},
		{"sink with neither", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {}
`, "8: pipelines[0].sink: needs exactly one of kafka or nats"},
		{"sink missing altogether", header + `pipelines:
  - name: a
    source: {url: "http://x"}
`, "6: pipelines[0].sink: needs exactly one of kafka or nats"},
		{"sink with both", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: s}
      kafka: {topic: t}
`, "8: pipelines[0].sink: has both nats and kafka"},
		{"stream with both", header + `streams:
  - path: /s
    nats: {subject: s}
    kafka: {topic: t}
`, "6: streams[0]: has both nats and kafka"},
		{"nats url with embedded", `nats:
  embedded: true
  url: nats://127.0.0.1:4222
streams:
  - {path: /s, nats: {subject: s}}
`, "3: nats.url: cannot be used together with embedded: true"},
		{"jetstream selector without stream", header + `streams:
  - path: /s
    nats:
      subject: wiki.>
      jetstream: {}
`, "9: streams[0].nats.jetstream.stream: required"},
		{"jetstream spec without jetstream", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats:
        subject: s
        stream: {name: WIKI}
`, "11: pipelines[0].sink.nats.stream: needs jetstream: true"},
		{"duplicate yaml key", header + `http:
  addr: 127.0.0.1:1
  addr: 127.0.0.1:2
streams:
  - {path: /s, nats: {subject: s}}
`, "7: http.addr: duplicate key (first at line 6)"},
		{"syntax error", header + `streams:
  - path: /s
    nats: {subject: s
`, "f.yaml:7: yaml: did not find expected ',' or '}'"},
		// yaml.v3 places this one at the start of the enclosing block.
		{"syntax error in block", header + `streams:
  - path: /s
    nats:
      subject: s
     heartbeat: 1s
`, "f.yaml:6: yaml: did not find expected key"},
		{"scanner error", header + `streams:
  - path: /s: x
`, "f.yaml:6: yaml: mapping values are not allowed in this context"},
		{"unset variable", `kafka:
  brokers: [127.0.0.1:9092]
  client_id: ${CLIENT}
streams:
  - {path: /s, kafka: {topic: t}}
`, "3: kafka.client_id: environment variable CLIENT is not set"},
		{"retry max below initial", header + `pipelines:
  - name: a
    source:
      url: http://x
      retry: {initial: 10s, max: 2s}
    sink: {nats: {subject: s}}
`, "9: pipelines[0].source.retry.max: must not be less than the initial delay (10s)"},
		{"unknown placeholder", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: "wiki.{type}"}
`, `9: pipelines[0].sink.nats.subject: unknown placeholder {type} in "wiki.{type}"`},
		{"publish to wildcard", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: "wiki.>"}
`, `9: pipelines[0].sink.nats.subject: invalid NATS subject "wiki.>": wildcard ">" cannot be published to`},
		{"bad kafka topic", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka: {topic: "wiki changes"}
`, `9: pipelines[0].sink.kafka.topic: invalid Kafka topic "wiki changes": character ' ' at offset 4`},
		{"auth without a method", header + `streams:
  - path: /s
    nats: {subject: s}
    auth: {cookie: tok}
`, "8: streams[0].auth: needs bearer tokens or JWT"},
		{"jwt without a key", header + `streams:
  - path: /s
    nats: {subject: s}
    auth:
      jwt: {audience: a}
`, "9: streams[0].auth.jwt: needs an HS256 secret or an RS256 public key file"},
		{"cors star with credentials", header + `streams:
  - path: /s
    nats: {subject: s}
    cors:
      allowed_origins: ["*"]
      allow_credentials: true
`, `9: streams[0].cors.allowed_origins[0]: "*" cannot be combined with allow_credentials`},
		{"https without a key", header + `http:
  addr: 127.0.0.1:8443
  tls:
    cert_file: /etc/ssebridge/cert.pem
streams: [{path: /s, nats: {subject: s}}]
`, "7: http.tls.key_file: required to serve HTTPS"},
		{"bad header name", header + `pipelines:
  - name: a
    source:
      url: http://x
      headers: {"Bad Header": x}
    sink: {nats: {subject: s}}
`, "9: pipelines[0].source.headers.Bad Header: not a valid header name"},
		{"pipeline name with a slash", header + `pipelines:
  - name: a/b
    source: {url: "http://x"}
    sink: {nats: {subject: s}}
`, `6: pipelines[0].name: must be letters, digits`},
		{"merge keys", header + `streams:
  - &s {path: /s, nats: {subject: s}}
  - <<: *s
    path: /t
`, "7: streams[1].<<: merge keys (<<) are not supported"},
		{"nothing to run", header, "1: pipelines: no pipelines and no streams"},
		{"empty file", "", "1: pipelines: no pipelines and no streams"},
		{"not a mapping", "- a\n- b\n", "1: (top level): must be a mapping"},
		{"second document", header + "streams:\n  - {path: /s, nats: {subject: s}}\n---\nhttp: {addr: ':1'}\n", "7: yaml: a configuration is one YAML document"},
		{"alias bomb", header + "pipelines: &p [{name: a, source: {url: 'http://x', events: &e [" + strings.Repeat("x,", 400) + "x]}, sink: {nats: {subject: s}}}" + strings.Repeat(", {name: a, source: {url: 'http://x', events: *e}}", 300) + "]\n", "5: pipelines[246].source.events[108]: the document is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src, nil)
			want := tt.want
			if !strings.HasPrefix(want, "f.yaml:") {
				want = "f.yaml:" + want
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Fatalf("want exactly one problem starting %q, got %d:\n%s", want, len(got), strings.Join(got, "\n"))
			}
		})
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	src := `nats:
  url: nats://127.0.0.1:4222
pipelines:
  - name: wiki
    source:
      url: https://stream.wikimedia.org/v2/stream/recentchange
      idle_timeout: 90
    sink:
      kafka: {topic: wiki}
streams:
  - path: /sse/wiki
    nats: {subject: "wiki.>"}
    heartbeet: 15s
`
	got := problems(t, src, nil)
	want := []string{
		`f.yaml:7: pipelines[0].source.idle_timeout: must be a duration like 90s or 1m30s, got "90"`,
		`f.yaml:9: pipelines[0].sink.kafka: Kafka is not configured: set kafka.brokers`,
		`f.yaml:13: streams[0].heartbeet: unknown key (did you mean heartbeat?)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A problem that only follows from another is not reported twice.
func TestParseDropsFollowOnProblems(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"misspelt required key", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {nats: {subjct: s}}
`, "f.yaml:8: pipelines[0].sink.nats.subjct: unknown key (did you mean subject?)"},
		{"bad value of a required key", header + `pipelines:
  - name: a
    source: {url: [http://x]}
    sink: {nats: {subject: s}}
`, "f.yaml:7: pipelines[0].source.url: must be a string, not a list"},
		{"broker list from an unset variable", `kafka:
  brokers: ${BROKERS}
streams:
  - {path: /s, kafka: {topic: t}}
`, "f.yaml:2: kafka.brokers: environment variable BROKERS is not set (write ${BROKERS:-default} to give a default)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src, nil)
			if len(got) != 1 || got[0] != tt.want {
				t.Fatalf("want only %q, got:\n%s", tt.want, strings.Join(got, "\n"))
			}
		})
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := parse("f.yaml", []byte("http: {addr: 1}\nbogus: 1\n"), env(nil))
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	var one *Error
	if !errors.As(err, &one) || one.File != "f.yaml" || one.Line == 0 || one.Key == "" {
		t.Errorf("errors.As(*Error) gave %+v", one)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatal("errors.As(Errors) failed")
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != len(es) {
		t.Errorf("Error() has %d lines for %d problems", got, len(es))
	}

	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	vars := map[string]string{
		"BROKERS": "k1:9092, k2:9092",
		"EMPTY":   "",
		"UA":      "bot (ops@example.com)",
		"QUEUE":   "64",
		"INJECT":  "x\nkafka: {brokers: [evil:1]}",
		"NULL":    "null",
		"SECRET":  "hunter2",
	}
	src := `nats:
  url: ${NATS_URL:-nats://127.0.0.1:4222}
kafka:
  brokers: ${BROKERS}
pipelines:
  - name: a
    source:
      url: "https://example.com/$$feed?x=${EMPTY:-1}"
      headers:
        User-Agent: ${UA}
        X-Null: ${NULL}
        X-Literal: $HOME and $$$$
        X-Empty: ${EMPTY}
      queue_size: "${QUEUE}"
      max_event_size: ${EMPTY:-2048}
      body: ${INJECT}
    sink:
      nats: {subject: s}
`
	cfg, err := parse("f.yaml", []byte(src), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Pipelines[0].Source
	checks := []struct {
		name      string
		got, want any
	}{
		{"default when unset", cfg.NATS.URL, "nats://127.0.0.1:4222"},
		{"comma list", cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}},
		{"$$ and default when empty", s.URL, "https://example.com/$feed?x=1"},
		{"set", s.Headers["User-Agent"], "bot (ops@example.com)"},
		{"YAML in a value stays text", s.Body, "x\nkafka: {brokers: [evil:1]}"},
		{"null stays text", s.Headers["X-Null"], "null"},
		{"lone $ untouched", s.Headers["X-Literal"], "$HOME and $$"},
		{"number from a quoted variable", s.QueueSize, 64},
		{"number from a default", s.MaxEventSize, 2048},
		{"set but empty", s.Headers["X-Empty"], ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Kafka.Brokers) != 2 {
		t.Errorf("a variable added brokers: %v", cfg.Kafka.Brokers)
	}

	// Values from the environment never appear in messages.
	got := problems(t, header+`shutdown_timeout: ${SECRET}
streams:
  - {path: /s, nats: {subject: s}}
`, vars)
	if len(got) != 1 || strings.Contains(got[0], "hunter2") || !strings.HasPrefix(got[0], "f.yaml:5: shutdown_timeout:") {
		t.Errorf("got %q", got)
	}
}

func TestExpand(t *testing.T) {
	vars := env(map[string]string{"A": "1", "E": ""})
	tests := []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "x${A}y${A}", want: "x1y1"},
		{in: "${B:-two}", want: "two"},
		{in: "${E:-d}", want: "d"},
		{in: "${E}", want: ""},
		{in: "${A:-d}", want: "1"},
		{in: "$${A}", want: "${A}"},
		{in: "$A $", want: "$A $"},
		{in: "${B:-a:b-c}", want: "a:b-c"},
		{in: "${B}", err: "environment variable B is not set"},
		{in: "${A", err: "unterminated ${"},
		{in: "${B:-x}${A", err: "unterminated ${"},
		{in: "${1A}", err: "invalid environment variable name"},
		{in: "${}", err: "invalid environment variable name"},
		// Nested defaults, as in the shell.
		{in: "${B:-${A}}", want: "1"},
		{in: "${B:-${C:-x}}", want: "x"},
		{in: "${B:-${E:-${C:-deep}}}/p", want: "deep/p"},
		{in: "${A:-${C}}", want: "1"}, // an unused default is not expanded
		{in: "${B:-$${A}}", want: "${A}"},
		{in: "${B:-a}b}", want: "ab}"},
		{in: "${B:-${C}}", err: "default of ${B}: environment variable C is not set"},
		{in: "${B:-${C:-x}", err: "unterminated ${"},
	}
	for _, tt := range tests {
		got, _, err := expand(tt.in, vars)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := parse("f.yaml", []byte(header+`pipelines:
  - name: n
    source: {url: "http://x"}
    sink: {nats: {subject: s}}
  - name: k
    source: {url: "http://x"}
    sink: {kafka: {topic: t}}
streams:
  - {path: /n, nats: {subject: s}}
  - {path: /k, kafka: {topic: t}}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Pipelines[0].Source
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", cfg.DataDir, "./data"},
		{"http.addr", cfg.HTTP.Addr, "127.0.0.1:8080"},
		{"shutdown_timeout", cfg.ShutdownTimeout.D(), 10 * time.Second},
		{"log.format", cfg.Log.Format, "text"},
		{"log.level", cfg.Log.Level, "info"},
		{"method", src.Method, "GET"},
		{"retry.initial", src.Retry.Initial.D(), time.Second},
		{"retry.max", src.Retry.Max.D(), time.Minute},
		{"idle_timeout", src.IdleTimeout.D(), 90 * time.Second},
		{"max_event_size", src.MaxEventSize, 4 << 20},
		{"queue_size", src.QueueSize, 1024},
		// A sink's defaults are its driver's (natssink.Options,
		// kafkasink.Options); the block is kept as written.
		{"sink", cfg.Pipelines[0].Sink.Kind, "nats"},
		{"sink", cfg.Pipelines[1].Sink.Kind, "kafka"},
		{"heartbeat", cfg.Streams[0].Heartbeat.D(), 15 * time.Second},
		{"max_pending", cfg.Streams[0].MaxPending, 1024},
		{"start", cfg.Streams[1].Kafka.Start, "latest"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// Written values win over defaults.
	cfg, err = parse("f.yaml", []byte(header+`data_dir: /var/lib/x
streams:
  - {path: /n, nats: {subject: s}, heartbeat: 2s}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/x" || cfg.Streams[0].Heartbeat.D() != 2*time.Second {
		t.Errorf("written values replaced: %q %v", cfg.DataDir, cfg.Streams[0].Heartbeat)
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	c := &Config{
		NATS: NATS{Embedded: true},
		Pipelines: []Pipeline{{
			Name: "demo",
			Sink: NewSink(natssink.Kind, natssink.Options{Subject: "demo.{event}", JetStream: true}),
		}},
		Streams: []Stream{{Path: "/sse/demo", NATS: &NATSStream{Subject: "demo.>"}}},
	}
	err := c.Validate()
	if err == nil || err.Error() != "pipelines[0].source.url: required" {
		t.Fatalf("Validate() = %v", err)
	}
	c.Pipelines[0].Source.URL = "http://127.0.0.1:1/feed"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config without defaults: %v", err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config with defaults: %v", err)
	}
	if c.Pipeline("demo") != &c.Pipelines[0] || c.Pipeline("nope") != nil {
		t.Error("Pipeline lookup")
	}
	if c.Stream("/sse/demo") != &c.Streams[0] || c.Stream("/x") != nil {
		t.Error("Stream lookup")
	}
}

func TestShippedConfigsAreValid(t *testing.T) {
	// The files use ${VAR:-default}; make sure the defaults are what is
	// tested, whatever the machine's environment holds.
	for _, v := range []string{"KAFKA_BROKERS", "NATS_URL", "SSEBRIDGE_HTTP_ADDR", "SSEBRIDGE_DATA_DIR", "SSEBRIDGE_LOG_FORMAT", "SSEBRIDGE_LOG_LEVEL", "WIKIMEDIA_USER_AGENT", "SSEBRIDGE_STREAM_TOKENS"} {
		if old, ok := os.LookupEnv(v); ok {
			os.Unsetenv(v)
			t.Cleanup(func() { os.Setenv(v, old) })
		}
	}
	for _, f := range []string{"../config.example.yaml", "../deploy/compose.yaml", "testdata/issue.yaml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Pipelines) == 0 || len(cfg.Streams) == 0 {
				t.Errorf("%s: %d pipelines, %d streams", f, len(cfg.Pipelines), len(cfg.Streams))
			}
		})
	}
}

func TestLine(t *testing.T) {
	cfg, err := parse("f.yaml", []byte(header+`pipelines:
  - name: a
    source:
      url: http://x
    sink: {nats: {subject: s}}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{
		"pipelines[0].source.url":           8,
		"pipelines[0].source.retry.initial": 7, // not written: its nearest parent
		"pipelines[0].sink.nats.subject":    9,
		"kafka.brokers[0]":                  4,
		"log.level":                         1,
	} {
		if got := cfg.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
	if e := cfg.Errorf("pipelines[0].sink.nats", "cannot connect"); e.Error() != "f.yaml:9: pipelines[0].sink.nats: cannot connect" {
		t.Errorf("Errorf: %v", e)
	}
}

// FuzzParse checks that no input crashes the loader and that every problem
// it reports is located.
func FuzzParse(f *testing.F) {
	f.Add([]byte(header + "streams:\n  - {path: /s, nats: {subject: s}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("pipelines: [{name: a, source: {url: '${A:-http://x}'}, sink: {nats: {subject: '{data.a}'}}}]\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Add([]byte("http: {addr: *nope}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parse("f.yaml", data, env(map[string]string{"A": "1"}))
		var es Errors
		if err != nil && !errors.As(err, &es) {
			t.Fatalf("error is %T: %v", err, err)
		}
		for _, e := range es {
			if e.File != "f.yaml" || e.Line < 1 {
				t.Fatalf("unlocated problem %+v", e)
			}
		}
	})
}

func TestDurationYAML(t *testing.T) {
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Fatalf("Marshal = %q, %v", out, err)
	}
	var back struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil || back.D.D() != 90*time.Second {
		t.Fatalf("Unmarshal = %v, %v", back.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 90\n"), &back); err == nil {
		t.Error("a bare number was accepted as a duration")
	}
}

// Fields other engineers add to the contract are checked by their Go type,
// with nothing to register here.
func TestCheckFollowsFieldTypes(t *testing.T) {
	type extra struct {
		Ratio  float64           `yaml:"ratio"`
		Port   uint16            `yaml:"port"`
		Limits map[string]int    `yaml:"limits"`
		Any    any               `yaml:"any"`
		Nested *struct{ A bool } `yaml:"nested"`
	}
	tests := []struct{ src, want string }{
		{"ratio: 0.5\nport: 8080\nlimits: {a: 1}\nany: [1, {b: 2}]\nnested: {a: true}\n", ""},
		{"ratio: half\n", `x.ratio: must be a number, got "half"`},
		{"port: -1\n", `x.port: must be a non-negative integer, got "-1"`},
		{"port: 70000\n", `x.port: must be a non-negative integer, got "70000"`},
		{"limits: {a: many}\n", `x.limits.a: must be an integer, got "many"`},
		{"nested: {b: 1}\n", "x.nested.b: unknown key"},
	}
	for _, tt := range tests {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tt.src), &doc); err != nil {
			t.Fatal(err)
		}
		d := &decoder{file: "f.yaml", lookup: env(nil), lines: map[string]int{}, expanded: map[*yaml.Node]bool{}}
		d.check(doc.Content[0], reflect.TypeFor[extra](), "x")
		var got string
		if len(d.errs) > 0 {
			got = d.errs[0].Key + ": " + d.errs[0].Msg
		}
		if len(d.errs) > 1 || !strings.HasPrefix(got, tt.want) || (tt.want == "") != (got == "") {
			t.Errorf("%q: got %v, want %q", tt.src, d.errs, tt.want)
		}
		if tt.want == "" {
			var x extra
			if err := doc.Content[0].Decode(&x); err != nil || x.Port != 8080 || x.Limits["a"] != 1 || !x.Nested.A {
				t.Errorf("decode after check: %+v %v", x, err)
			}
		}
	}
}
