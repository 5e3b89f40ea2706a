//go:build promtool

package main

import (
	"os/exec"
	"testing"
)

// TestPromtoolAlerts: promtool accepts deploy/alerts.yaml and its unit
// tests (deploy/alerts_test.yaml) pass. .ci/run installs Debian's
// prometheus package, which has promtool, and runs this with -tags
// promtool.
func TestPromtoolAlerts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not installed (Debian: apt-get install prometheus): %v", err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../deploy"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
