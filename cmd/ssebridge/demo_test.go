package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestDemoFailedStartPrintsNoURLs: when the bridge cannot start (here the
// data dir is a regular file, so the embedded JetStream store cannot be
// created), the demo exits 1 with the cause and never prints the URLs of
// a demo that is not running.
func TestDemoFailedStartPrintsNoURLs(t *testing.T) {
	defer goleak.VerifyNone(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"demo", "-addr", "127.0.0.1:0", "-data-dir", notDir}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not a directory") {
		t.Errorf("stderr lacks the cause:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("a demo that failed to start printed its URLs:\n%s", stdout.String())
	}
}
