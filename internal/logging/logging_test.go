package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const secret = "s3cr3t-VALUE"

func TestRedactsSecretAttributes(t *testing.T) {
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+secret)
	hdr.Set("User-Agent", "ssebridge-test")
	u, _ := url.Parse("https://bob:" + secret + "@feed.example.com/v2?api_key=" + secret + "&lang=en")
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		keep string // a non-secret part that must survive
	}{
		{"password key", func(l *slog.Logger) { l.Info("m", "password", secret, "user", "bob") }, "bob"},
		{"token key, any case", func(l *slog.Logger) { l.Info("m", "NATS_Token", secret) }, "NATS_Token"},
		{"client_secret", func(l *slog.Logger) { l.Info("m", "client_secret", secret) }, "client_secret"},
		{"cookie", func(l *slog.Logger) { l.Info("m", "Cookie", "session="+secret) }, "Cookie"},
		{"http.Header", func(l *slog.Logger) { l.Info("m", "headers", hdr) }, "ssebridge-test"},
		{"header map", func(l *slog.Logger) {
			l.Info("m", "headers", map[string]string{"Authorization": "Basic " + secret, "Accept": "text/event-stream"})
		}, "text/event-stream"},
		{"group", func(l *slog.Logger) { l.Info("m", slog.Group("nats", "url", "nats://x", "password", secret)) }, "nats://x"},
		{"With attrs", func(l *slog.Logger) { l.With("token", secret).Info("m", "a", 1) }, `"a":1`},
		{"URL userinfo and query key", func(l *slog.Logger) { l.Info("m", "url", u) }, "feed.example.com"},
		{"URL string", func(l *slog.Logger) { l.Info("m", "source", u.String()) }, "lang=en"},
		{"URL query key only", func(l *slog.Logger) { l.Info("m", "url", "https://h/feed?access_token="+secret) }, "https://h/feed"},
		{"authorization in an error", func(l *slog.Logger) {
			l.Error("m", "err", errors.New("upstream rejected Authorization: Bearer "+secret+" with 401"))
		}, "with 401"},
		{"bearer in a message attr", func(l *slog.Logger) { l.Info("m", "detail", "sent bearer "+secret) }, "sent bearer"},
		// net/http quotes the URL and follows it with a colon: that
		// punctuation is not part of the URL and must read as before.
		{"URL password in a net/http error", func(l *slog.Logger) {
			l.Error("m", "err", errors.New(`Get "https://bob:`+secret+`@h/feed?x=1": dial tcp: connection refused`))
		}, `@h/feed?x=1\": dial tcp: connection refused`}, // JSON-escaped quote
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, _, err := New(&buf, "json", "info")
			if err != nil {
				t.Fatal(err)
			}
			tc.log(l)
			out := buf.String()
			if strings.Contains(out, secret) {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, tc.keep) {
				t.Fatalf("non-secret %q lost: %s", tc.keep, out)
			}
			if !json.Valid(bytes.TrimSpace(buf.Bytes())) {
				t.Fatalf("not one JSON line: %s", out)
			}
		})
	}
}

func TestFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	l, lv, err := New(&buf, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "level=WARN msg=shown k=v") {
		t.Fatalf("text/warn output: %q", buf.String())
	}
	if err := SetLevel(lv, "debug"); err != nil {
		t.Fatal(err)
	}
	l.Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") {
		t.Fatal("SetLevel did not change the running logger's level")
	}
	if _, _, err := New(&buf, "xml", "info"); err == nil {
		t.Fatal("bad format accepted")
	}
	if _, _, err := New(&buf, "json", "loud"); err == nil {
		t.Fatal("bad level accepted")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://stream.wikimedia.org/v2/stream/recentchange": "https://stream.wikimedia.org/v2/stream/recentchange",
		"https://u:pw@h/p":             "https://u:REDACTED@h/p",
		"https://h/p?token=abc&x=1":    "https://h/p?token=REDACTED&x=1",
		"https://h/p?key=abc":          "https://h/p?key=REDACTED",
		"nats://u:pw@127.0.0.1:4222":   "nats://u:REDACTED@127.0.0.1:4222",
		"https://user@h/p?lang=en&n=2": "https://user@h/p?lang=en&n=2",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
