package testbroker

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// WaitGoroutinesGone fails t unless, within 5 s, no goroutine's stack
// contains any of substrs (function names such as
// "github.com/segmentio/kafka-go."). It polls, since a goroutine may still
// be returning as the call under test does; what it looks for is a client
// goroutine held by a broker that stopped answering, which goleak at the
// end of the package would miss once the broker is closed.
func WaitGoroutinesGone(t testing.TB, substrs ...string) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = goroutinesMatching(substrs); left == "" {
			return
		}
	}
	t.Fatalf("goroutines left behind:\n%s", left)
}

// goroutinesMatching returns the stacks of the goroutines whose stack
// contains any of substrs, empty when there are none.
func goroutinesMatching(substrs []string) string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, s := range substrs {
			if strings.Contains(g, s) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}
