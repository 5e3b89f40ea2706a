package bridge_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/testbroker"
)

// TestReadinessFollowsCheckpointStore: a checkpoint store that refuses
// writes used to leave /readyz at 200 and /api/status at "connected" while
// every save failed. The failure must be visible, and clear by itself once
// the store works again. The fault is real: the checkpoint directory is
// replaced by a plain file (chmod would not stop root).
func TestReadinessFollowsCheckpointStore(t *testing.T) {
	ns := testbroker.StartNATS(t)
	f := newFeed(t)
	dir := t.TempDir()
	cfg := &config.Config{
		DataDir:   dir,
		NATS:      config.NATS{URL: ns.URL()},
		Pipelines: []config.Pipeline{pipelineCfg("p", f.url("/p"))},
	}
	r := start(t, cfg)
	readyz := func() int {
		var v struct{ Ready bool }
		return getJSON(t, r.base+"/readyz", &v)
	}
	eventually(t, "ready", func() bool { return readyz() == http.StatusOK })

	ck := filepath.Join(dir, "checkpoints")
	if err := os.Rename(ck, ck+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ck, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "503 while checkpoints cannot be saved", func() bool { return readyz() == http.StatusServiceUnavailable })
	st, _ := pipelineStatus(t, r.base, "p")
	if st.CheckpointError == "" || st.CheckpointErrorSince.IsZero() || st.Ready {
		t.Fatalf("status while the store fails: %+v; want checkpoint_error set and not ready", st)
	}
	resp, err := http.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ssebridge_pipeline_checkpoint_failures_total{pipeline="p"}`) {
		t.Error("no ssebridge_pipeline_checkpoint_failures_total series for p")
	}

	if err := os.Remove(ck); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ck+".away", ck); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready again once the store works", func() bool { return readyz() == http.StatusOK })
	if st, _ := pipelineStatus(t, r.base, "p"); st.CheckpointError != "" {
		t.Fatalf("checkpoint_error = %q after recovery", st.CheckpointError)
	}
}
