// Package testbin gives tests the programs they run as separate processes:
// ssebridge (cmd/ssebridge) and nats-server (the module's dependency). Each
// is built once per test process, or taken from the directory named by
// $SSEBRIDGE_TEST_BIN, which .ci/run fills once for the whole run so that
// the test packages do not each compile and link their own copies.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Version is the version the ssebridge test binary reports.
const Version = "v9.8.7-test"

// EnvDir names the directory of prebuilt binaries.
const EnvDir = "SSEBRIDGE_TEST_BIN"

var targets = map[string][]string{
	"ssebridge":   {"-ldflags", "-X main.version=" + Version, "./cmd/ssebridge"},
	"nats-server": {"github.com/nats-io/nats-server/v2"},
}

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// SSEBridge is the path of an ssebridge binary.
func SSEBridge() (string, error) { return get("ssebridge") }

// NATSServer is the path of a nats-server binary.
func NATSServer() (string, error) { return get("nats-server") }

func get(name string) (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ssebridge-testbin"); err != nil {
			return "", err
		}
	}
	p := filepath.Join(dir, name)
	args := append([]string{"build", "-o", p}, targets[name]...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	built[name] = p
	return p, nil
}

// ModuleRoot is the directory holding the module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("testbin: not inside the ssebridge module")
	}
	return filepath.Dir(mod), nil
}
