package config

import (
	"strings"
	"testing"
)

// TestSourceURLErrorHidesQueryToken: a feed URL often carries its API key
// in the query, put there from the environment. When the URL is refused
// (here for its scheme) the message must still say what is wrong without
// printing the key; Redacted alone hides only a userinfo password.
func TestSourceURLErrorHidesQueryToken(t *testing.T) {
	vars := map[string]string{"API_KEY": "s3cr3t-key", "PASS": "hunter2"}
	for _, url := range []string{
		"wss://feed.example.com/sse?api_key=${API_KEY}",
		"https:///sse?api_key=${API_KEY}",
		"ftp://u:${PASS}@feed.example.com/sse#${API_KEY}",
	} {
		got := problems(t, header+`pipelines:
  - name: p
    source: {url: "`+url+`"}
    sink: {nats: {subject: s}}
`, vars)
		if len(got) != 1 || !strings.HasPrefix(got[0], "f.yaml:7: pipelines[0].source.url: must be an http:// or https:// URL") {
			t.Errorf("%s: got %q, want one error about the URL at line 7", url, got)
			continue
		}
		if strings.Contains(got[0], "s3cr3t-key") || strings.Contains(got[0], "hunter2") {
			t.Errorf("%s: the message prints a secret from the environment: %q", url, got[0])
		}
	}
}
