package sources

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestCheckReportsEveryProblemByField: Check reports each problem once,
// under the Config field (a header under HeaderKey and its name), in the
// order of the fields, headers sorted; defaults applied or not, a valid
// Config has none.
func TestCheckReportsEveryProblemByField(t *testing.T) {
	var got []string
	Config{
		URL:         "ftp://x",
		Method:      "GE T",
		Header:      http.Header{"b c": {"v"}, "A": {"ok", "x\ny"}},
		LastEventID: "1\x00", RetryInitial: time.Hour, IdleTimeout: -1, MaxEventSize: -1, QueueSize: -1,
		BatchSize: -1, CheckpointInterval: -1, CheckpointEvery: -1, MaxUnsaved: -1, ShutdownTimeout: -1,
		Client: &http.Client{Timeout: time.Second},
	}.Check(func(key, _ string) { got = append(got, key) })
	want := []string{"URL", "Method", "Header.A", "Header.b c", "LastEventID", "RetryMax", "IdleTimeout", "MaxEventSize",
		"QueueSize", "BatchSize", "CheckpointInterval", "CheckpointEvery", "MaxUnsaved", "ShutdownTimeout", "Client"}
	if !slices.Equal(got, want) {
		t.Errorf("keys = %q\nwant   %q", got, want)
	}

	for _, c := range []Config{{URL: "http://127.0.0.1:1/"}, Config{URL: "http://127.0.0.1:1/"}.withDefaults()} {
		c.Check(func(key, msg string) { t.Errorf("valid config: %s: %s", key, msg) })
	}
}
