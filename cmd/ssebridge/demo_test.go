package main

import (
	"bytes"
	"net"
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

// TestDemoBusyPort: a taken -addr says what to do about it.
func TestDemoBusyPort(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"demo", "-addr", ln.Addr().String()}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "address already in use") ||
		!strings.Contains(stderr.String(), "pick another with -addr") || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestDemoBadCORS: -cors takes origins as the config's cors block does.
func TestDemoBadCORS(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"demo", "-addr", "127.0.0.1:0", "-cors", "example.com"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `must be * or an origin like https://app.example.com, got "example.com"`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestSelfCommand: the tail line the demo prints runs ssebridge the way the
// user started it.
func TestSelfCommand(t *testing.T) {
	for _, tc := range []struct{ arg0, want string }{
		{"./ssebridge", "./ssebridge"},
		{"ssebridge", "ssebridge"},
		{"/usr/local/bin/ssebridge", "/usr/local/bin/ssebridge"},
		// go run: a fresh build, then one from the build cache. The test
		// runs in cmd/ssebridge.
		{"/tmp/go-build3720875411/b001/exe/ssebridge", "go run ."},
		{"/root/.cache/go-build/4b/4b49727e33374a9c8b3b9c083571a1a4-d/ssebridge", "go run ."},
	} {
		if got := selfCommand(tc.arg0); got != tc.want {
			t.Errorf("selfCommand(%q) = %q, want %q", tc.arg0, got, tc.want)
		}
	}
	t.Chdir("../..") // the module root, where the README runs it
	if got := selfCommand("/tmp/go-build1/b001/exe/ssebridge"); got != "go run ./cmd/ssebridge" {
		t.Errorf("from the module root: %q", got)
	}
	t.Chdir(t.TempDir())
	if got := selfCommand("/tmp/go-build1/b001/exe/ssebridge"); !strings.HasPrefix(got, "go run ") || !strings.HasSuffix(got, "/cmd/ssebridge") {
		t.Errorf("from elsewhere: %q", got)
	}
}
