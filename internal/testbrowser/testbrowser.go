// Package testbrowser opens pages in Debian's headless Chromium for the
// browser tests (build tag "browser"), so that they share one way to start
// it, read what it said and kill it with its renderers.
package testbrowser

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/syncbuf"
)

// Path is Debian's chromium package; .ci/run installs it.
const Path = "/usr/bin/chromium"

// Browser is a headless Chromium showing one page.
type Browser struct {
	stderr syncbuf.Buffer // written by exec's copying goroutine
}

// Said is what Chromium wrote to stderr so far, for a failing test's
// message.
func (b *Browser) Said() string { return b.stderr.String() }

// Open starts Chromium on url with a fresh profile, plus flags, until ctx
// is done or the test ends; a missing Chromium fails the test.
func Open(t testing.TB, ctx context.Context, url string, flags ...string) *Browser {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Fatalf("%s: %v (apt-get install chromium)", Path, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--remote-debugging-port=0",
	}, flags...)
	cmd := exec.CommandContext(ctx, Path, append(args, url)...)
	b := &Browser{}
	cmd.Stderr = &b.stderr
	// Chromium forks renderers: kill its whole process group, not only
	// the process started here.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return b
}
