package bridge

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/message"
	"github.com/ssebridge/ssebridge/sources"
)

// TestSourceConfig: the YAML source block maps onto sources.Config with
// the YAML defaults, a Last-Event-ID header becomes the start ID, and the
// worker then refuses what is wrong, naming the pipeline.
func TestSourceConfig(t *testing.T) {
	c, err := sourceConfig(config.Pipeline{Name: "p", Source: config.Source{
		URL: "https://example.org/stream", Method: "post",
		Headers: map[string]string{"x-api-key": "k", "Last-Event-ID": "41"},
		Body:    "b", Events: []string{"a"}, Retry: config.Retry{Initial: config.Duration(2 * time.Second)},
		MaxEventSize: 10, QueueSize: 3, CheckpointMaxUnsaved: 7,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "p" || c.Method != "POST" || c.Header.Get("X-Api-Key") != "k" || c.Body != "b" || c.Events[0] != "a" ||
		c.RetryInitial != 2*time.Second || c.RetryMax != config.DefaultRetryMax || c.IdleTimeout != config.DefaultIdleTimeout ||
		c.MaxEventSize != 10 || c.QueueSize != 3 || c.MaxUnsaved != 7 || c.TLS != nil {
		t.Errorf("config = %+v", c)
	}
	if c.LastEventID != "41" || c.Header.Get("Last-Event-ID") != "" {
		t.Errorf("Last-Event-ID header: LastEventID %q, header %q; want 41 and none (the worker owns it)", c.LastEventID, c.Header.Get("Last-Event-ID"))
	}

	c, err = sourceConfig(config.Pipeline{Name: "q", Source: config.Source{URL: "ftp://x",
		Retry: config.Retry{Initial: config.Duration(time.Minute), Max: config.Duration(time.Second)}, QueueSize: -1}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sources.New(c, nopSink{}, nil)
	if !errors.Is(err, sources.ErrInvalidConfig) {
		t.Fatalf("New = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{`"q"`, "URL: must be an http:// or https:// URL", "RetryMax: must not be less than the initial delay", "QueueSize: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}

	_, err = sourceConfig(config.Pipeline{Name: "r", Source: config.Source{URL: "https://x",
		TLS: &config.TLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}}})
	if err == nil || !strings.Contains(err.Error(), "ca_file") || !strings.Contains(err.Error(), `"r"`) {
		t.Errorf("missing ca_file: %v", err)
	}
}

// TestSourceDefaultsFollowYAML: a sources.Config built in code behaves like
// one loaded from a file.
func TestSourceDefaultsFollowYAML(t *testing.T) {
	for name, pair := range map[string][2]int64{
		"retry initial":  {int64(sources.DefaultRetryInitial), int64(config.DefaultRetryInitial)},
		"retry max":      {int64(sources.DefaultRetryMax), int64(config.DefaultRetryMax)},
		"idle timeout":   {int64(sources.DefaultIdleTimeout), int64(config.DefaultIdleTimeout)},
		"queue size":     {int64(sources.DefaultQueueSize), int64(config.DefaultQueueSize)},
		"max unsaved":    {int64(sources.DefaultMaxUnsaved), int64(config.DefaultCheckpointMaxUnsaved)},
		"shutdown limit": {int64(sources.DefaultShutdownTimeout), int64(config.DefaultShutdownTimeout)},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s: sources default %d, YAML default %d", name, pair[0], pair[1])
		}
	}
}

type nopSink struct{}

func (nopSink) Write(_ context.Context, msgs []message.Message) (int, error) { return len(msgs), nil }
