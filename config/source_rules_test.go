package config

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sources"
)

// TestSourceRulesAreTheWorkers: a rule on a pipeline's source is checked
// once, by package sources. The same source written in the file and built
// in code (as ssebridge tail does) is refused for the same reason, in the
// same words: the file under its YAML key with its line, sources.New under
// the Config field. Neither repeats a secret of the URL or a header value.
func TestSourceRulesAreTheWorkers(t *testing.T) {
	const (
		secret = "s3cr3t-KEY"
		ok     = "http://127.0.0.1:1/feed"
	)
	for _, tc := range []struct {
		name   string
		yaml   string // the source block, on line 7
		cfg    sources.Config
		key    string // under pipelines[0].source
		field  string // of sources.Config
		prefix string // of the message, the same on both sides
	}{
		{"no url", `{method: GET}`, sources.Config{}, "url", "URL", "required"},
		{"scheme", `{url: "ftp://u:hunter2@feed.example/sse?api_key=` + secret + `#` + secret + `"}`,
			sources.Config{URL: "ftp://u:hunter2@feed.example/sse?api_key=" + secret + "#" + secret},
			"url", "URL", `must be an http:// or https:// URL, got "ftp://u:xxxxx@feed.example/sse"`},
		{"no host", `{url: "https:///sse?api_key=` + secret + `"}`, sources.Config{URL: "https:///sse?api_key=" + secret},
			"url", "URL", `must be an http:// or https:// URL, got "https:///sse"`},
		{"does not parse", `{url: "http://exa mple.com/?api_key=` + secret + `"}`, sources.Config{URL: "http://exa mple.com/?api_key=" + secret},
			"url", "URL", `must be an http:// or https:// URL: invalid character " " in host name`},
		{"password as port", `{url: "https://user:` + secret + `/sse"}`, sources.Config{URL: "https://user:" + secret + "/sse"},
			"url", "URL", `must be an http:// or https:// URL: invalid port`},
		{"method", `{url: "` + ok + `", method: "GE T"}`, sources.Config{URL: ok, Method: "GE T"},
			"method", "Method", `must be an HTTP method like GET or POST, got "GE T"`},
		{"header name", `{url: "` + ok + `", headers: {"X Key": v}}`, sources.Config{URL: ok, Header: http.Header{"X Key": {"v"}}},
			"headers.X Key", "Header.X Key", "not a valid header name"},
		{"header value", `{url: "` + ok + `", headers: {X-Key: "` + secret + `\r\nX-Other: 1"}}`,
			sources.Config{URL: ok, Header: http.Header{"X-Key": {secret + "\r\nX-Other: 1"}}},
			"headers.X-Key", "Header.X-Key", "header values cannot contain control characters or line breaks"},
		{"retry initial above max", `{url: "` + ok + `", retry: {initial: 1m, max: 1s}}`, sources.Config{URL: ok, RetryInitial: time.Minute, RetryMax: time.Second},
			"retry.max", "RetryMax", "must not be less than the initial delay (1m0s)"},
		{"retry max below the default initial", `{url: "` + ok + `", retry: {max: 500ms}}`,
			sources.Config{URL: ok, RetryInitial: sources.DefaultRetryInitial, RetryMax: 500 * time.Millisecond},
			"retry.max", "RetryMax", "must not be less than the initial delay (1s)"},
		{"retry initial negative", `{url: "` + ok + `", retry: {initial: -1s}}`, sources.Config{URL: ok, RetryInitial: -time.Second},
			"retry.initial", "RetryInitial", "must not be negative"},
		{"retry max negative", `{url: "` + ok + `", retry: {max: -1s}}`, sources.Config{URL: ok, RetryMax: -time.Second},
			"retry.max", "RetryMax", "must not be negative"},
		{"idle timeout", `{url: "` + ok + `", idle_timeout: -1s}`, sources.Config{URL: ok, IdleTimeout: -time.Second},
			"idle_timeout", "IdleTimeout", "must not be negative"},
		{"max event size", `{url: "` + ok + `", max_event_size: -1}`, sources.Config{URL: ok, MaxEventSize: -1},
			"max_event_size", "MaxEventSize", "must not be negative"},
		{"queue size", `{url: "` + ok + `", queue_size: -1}`, sources.Config{URL: ok, QueueSize: -1},
			"queue_size", "QueueSize", "must not be negative"},
		{"max unsaved", `{url: "` + ok + `", checkpoint_max_unsaved: -1}`, sources.Config{URL: ok, MaxUnsaved: -1},
			"checkpoint_max_unsaved", "MaxUnsaved", "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, header+"pipelines:\n  - name: p\n    source: "+tc.yaml+"\n    sink: {nats: {subject: s}}\n", nil)
			want := "f.yaml:7: pipelines[0].source." + tc.key + ": " + tc.prefix
			if len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Fatalf("file: got %q, want one problem starting %q", got, want)
			}
			fileMsg := strings.TrimPrefix(got[0], "f.yaml:7: pipelines[0].source."+tc.key+": ")

			_, err := sources.New(tc.cfg, nopSink{}, nil)
			if !errors.Is(err, sources.ErrInvalidConfig) {
				t.Fatalf("sources.New = %v, want ErrInvalidConfig", err)
			}
			_, probs, _ := strings.Cut(err.Error(), sources.ErrInvalidConfig.Error()+": ")
			if want := tc.field + ": " + fileMsg; probs != want {
				t.Errorf("sources.New: got %q, want the file's message %q", probs, want)
			}
			for _, text := range []string{got[0], err.Error()} {
				if strings.Contains(text, secret) || strings.Contains(text, "hunter2") {
					t.Errorf("a secret is shown: %q", text)
				}
			}
		})
	}
}

// TestSourceRulesAcceptTheSame: what the worker sends fine, the file
// accepts too (upper-case scheme, tabs and UTF-8 in header values, an
// extension method).
func TestSourceRulesAcceptTheSame(t *testing.T) {
	src := `{url: "HTTPS://example.org/s?x=1", method: REPORT, headers: {X-A: "a\tb é"}, retry: {initial: 0s, max: 1s}}`
	if got := problems(t, header+"pipelines:\n  - name: p\n    source: "+src+"\n    sink: {nats: {subject: s}}\n", nil); got != nil {
		t.Errorf("file: %q", got)
	}
	cfg := sources.Config{URL: "HTTPS://example.org/s?x=1", Method: "REPORT", Header: http.Header{"X-A": {"a\tb é"}}, RetryMax: time.Second}
	if _, err := sources.New(cfg, nopSink{}, nil); err != nil {
		t.Errorf("sources.New: %v", err)
	}
}

type nopSink struct{}

func (nopSink) Write(_ context.Context, msgs []message.Message) (int, error) { return len(msgs), nil }
