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

// TestValidationErrorsHideEnvValues: Error promises that a message never
// contains the value of an environment variable. Decode-time problems kept
// that promise, but validation, which runs on the decoded Config, quoted
// the expanded value it refused.
func TestValidationErrorsHideEnvValues(t *testing.T) {
	vars := map[string]string{"ADDR": "s3cr3t-host", "START": "s3cr3t-start", "TOPIC": "s3cr3t topic", "ORIGINS": "https://ok.example, s3cr3t-origin"}
	got := problems(t, `http:
  addr: ${ADDR}
kafka:
  brokers: [127.0.0.1:9092]
streams:
  - path: /k
    kafka: {topic: "${TOPIC}", start: "${START}"}
    cors: {allowed_origins: "${ORIGINS}"}
`, vars)
	want := []string{
		"f.yaml:2: http.addr: must be HOST:PORT",
		"f.yaml:7: streams[0].kafka.topic: ",
		"f.yaml:7: streams[0].kafka.start: must be one of",
		"f.yaml:8: streams[0].cors.allowed_origins[1]: must be * or an origin",
	}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %d problems", got, len(want))
	}
	for i, g := range got {
		if !strings.HasPrefix(g, want[i]) {
			t.Errorf("problem %d is %q, want it to start with %q", i, g, want[i])
		}
		if strings.Contains(g, "s3cr3t") {
			t.Errorf("problem %d prints a value from the environment: %q", i, g)
		}
	}
}
