package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ssebridge/ssebridge/internal/demo"
	"github.com/ssebridge/ssebridge/internal/syncbuf"
	"github.com/ssebridge/ssebridge/internal/testbin"
)

func TestRunExitCodes(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("data_dir: x\nhttp:\n  adr: 127.0.0.1:1\npipelines:\n  - name: p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-config", bad}, 1, bad + ":3:"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{}, 2, "usage: ssebridge run"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-config", bad, "extra"}, 2, "usage"},
	} {
		var out, errb bytes.Buffer
		if code := dispatch(append([]string{"run"}, tc.args...), &out, &errb); code != tc.code {
			t.Errorf("run %q = %d, want %d; stderr %s", tc.args, code, tc.code, errb.String())
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("run %q: stderr %q lacks %q", tc.args, errb.String(), tc.want)
		}
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func binaryConfig(dataDir, addr, feed string, pipelines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nshutdown_timeout: 10s\nhttp:\n  addr: %s\nnats:\n  embedded: true\nlog:\n  format: json\npipelines:\n", dataDir, addr)
	for _, p := range pipelines {
		fmt.Fprintf(&b, "  - name: %s\n    source:\n      url: %s/%s\n      retry: {initial: 100ms, max: 1s}\n    sink:\n      nats:\n        subject: \"t.%s\"\n        jetstream: true\n        stream: {name: T%s, subjects: [\"t.%s\"]}\n", p, feed, p, p, strings.ToUpper(p), p)
	}
	return b.String()
}

type statusDoc struct {
	Ready     bool `json:"ready"`
	Pipelines []struct {
		Name        string `json:"name"`
		State       string `json:"state"`
		Forwarded   uint64 `json:"forwarded"`
		LastEventID string `json:"last_event_id"`
	} `json:"pipelines"`
}

func getStatus(base string) (statusDoc, error) {
	var st statusDoc
	resp, err := http.Get(base + "/api/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func waitStatus(t *testing.T, base, what string, cond func(statusDoc) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := getStatus(base)
		if err == nil && cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last status %+v, err %v)", what, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOperationsBinary builds the binary once for the signal tests of
// run and demo.
func TestOperationsBinary(t *testing.T) {
	bin, err := testbin.SSEBridge()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("RunSignals", func(t *testing.T) { testRunSignals(t, bin) })
	t.Run("Demo", func(t *testing.T) { testDemoBinary(t, bin) })
}

// testRunSignals: SIGHUP reloads the edited file (a pipeline added, one
// removed, a broken file ignored) and SIGTERM drains, writes checkpoints
// and exits 0.
func testRunSignals(t *testing.T, bin string) {
	dir := t.TempDir()

	up := httptest.NewServer(&demo.Feed{Interval: 20 * time.Millisecond})
	defer up.Close()
	defer up.CloseClientConnections()

	addr := freeAddr(t)
	base := "http://" + addr
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "bridge.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(binaryConfig(dataDir, addr, up.URL, "one", "two"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-config", cfgPath)
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("ssebridge stderr:\n%s", stderr.String())
		}
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	has := func(st statusDoc, name string) bool {
		for _, p := range st.Pipelines {
			if p.Name == name && p.State == "connected" && p.Forwarded > 0 {
				return true
			}
		}
		return false
	}
	waitStatus(t, base, "both pipelines forwarding", func(st statusDoc) bool { return st.Ready && has(st, "one") && has(st, "two") })

	// A broken file is logged and ignored.
	write("pipelines: [\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Then a good one: "two" removed, "three" added.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "keeping the running one") {
		if time.Now().After(deadline) {
			t.Fatal("broken config on SIGHUP was not reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := getStatus(base); len(st.Pipelines) != 2 {
		t.Fatalf("a broken reload changed the pipelines: %+v", st)
	}
	write(binaryConfig(dataDir, addr, up.URL, "one", "three"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base, "reload: three added, two removed", func(st statusDoc) bool {
		return len(st.Pipelines) == 2 && has(st, "one") && has(st, "three")
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no exit within 60s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"bridge stopped"`) {
		t.Fatal("no clean-stop log line")
	}
	for _, p := range []string{"one", "two", "three"} {
		matches, _ := filepath.Glob(filepath.Join(dataDir, "checkpoints", "*"+p+"*"))
		if len(matches) == 0 {
			t.Errorf("no checkpoint file for %s", p)
		}
	}
}

// testDemoBinary: the demo prints its URLs, the printed curl URL streams
// ticks, SIGTERM exits 0 and the default data dir is removed.
func testDemoBinary(t *testing.T, bin string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "-addr", freeAddr(t), "-interval", "100ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("demo stderr:\n%s", stderr.String())
		}
	}()
	var out strings.Builder
	var streamURL, dataDir string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(out.String(), " tail ") {
		line := sc.Text()
		out.WriteString(line + "\n")
		if _, rest, ok := strings.Cut(line, "(data in "); ok {
			dataDir, _, _ = strings.Cut(rest, ")")
		}
		if _, u, ok := strings.Cut(line, "curl -N "); ok {
			streamURL = strings.TrimSpace(u)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if streamURL == "" || dataDir == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("demo output lacks the curl line or the data dir:\n%s", out.String())
	}
	// The printed tail command is the binary as it was started, and it
	// works when pasted.
	tailLine := bin + " tail " + streamURL
	if !strings.Contains(out.String(), "or:              "+tailLine+"\n") {
		t.Errorf("no tail line %q:\n%s", tailLine, out.String())
	}
	tailOut, err := exec.CommandContext(ctx, bin, "tail", "-n", "2", streamURL).Output()
	if err != nil || strings.Count(string(tailOut), `"event":"tick"`) != 2 {
		t.Errorf("the printed tail command: %v, output %q", err, tailOut)
	}
	// A page of another origin may read the stream (-cors defaults to *).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamURL, nil)
	req.Header.Set("Origin", "http://localhost:9999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q, want *", got)
	}
	ids := 0
	br := bufio.NewScanner(resp.Body)
	for ids < 3 && br.Scan() {
		if strings.HasPrefix(br.Text(), "id: ") {
			ids++
		}
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if ids < 3 {
		t.Fatalf("read %d events from %s", ids, streamURL)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir %s not removed: %v", dataDir, err)
	}
}
