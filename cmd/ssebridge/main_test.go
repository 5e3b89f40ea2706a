package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/internal/testbin"
)

// threeMistakes has an unknown key, a bad duration and a sink naming a
// broker that is not configured.
const threeMistakes = `nats:
  url: nats://127.0.0.1:4222
pipelines:
  - name: wiki
    source:
      url: https://stream.wikimedia.org/v2/stream/recentchange
      idle_timeout: 90
    sink:
      kafka: {topic: wiki}
streams:
  - path: /sse/wiki
    nats: {subject: "wiki.>"}
    heartbeet: 15s
`

// cliFiles writes the test configurations and returns their paths.
func cliFiles(t *testing.T) (bad, good string) {
	t.Helper()
	dir := t.TempDir()
	bad = filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(threeMistakes), 0o600); err != nil {
		t.Fatal(err)
	}
	good, err := filepath.Abs("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return bad, good
}

func wantThreeMistakes(t *testing.T, bad, stderr string) {
	t.Helper()
	want := bad + `:7: pipelines[0].source.idle_timeout: must be a duration like 90s or 1m30s, got "90"
` + bad + `:9: pipelines[0].sink.kafka: Kafka is not configured: set kafka.brokers
` + bad + `:13: streams[0].heartbeet: unknown key (did you mean heartbeat?)
`
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
}

func TestDispatch(t *testing.T) {
	bad, good := cliFiles(t)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // exact, unless "" and stdoutHas set
		stdoutHas  string
		stderrHas  string
		emptyError bool
	}{
		{name: "validate ok", args: []string{"validate", "-config", good}, code: 0, stdout: "ok\n", emptyError: true},
		{name: "validate double dash flag", args: []string{"validate", "--config=" + good}, code: 0, stdout: "ok\n", emptyError: true},
		{name: "validate problems", args: []string{"validate", "-config", bad}, code: 1, stderrHas: bad + ":7: "},
		{name: "validate missing file", args: []string{"validate", "-config", bad + ".nope"}, code: 1, stderrHas: "no such file"},
		{name: "validate without -config", args: []string{"validate"}, code: 2, stderrHas: "-config is required"},
		{name: "validate unknown flag", args: []string{"validate", "-conf", good}, code: 2, stderrHas: "flag provided but not defined: -conf"},
		{name: "validate stray argument", args: []string{"validate", "-config", good, "extra"}, code: 2, stderrHas: `unexpected argument "extra"`},
		{name: "validate help", args: []string{"validate", "-h"}, code: 0, stderrHas: "usage: ssebridge validate -config FILE"},
		{name: "version", args: []string{"version"}, code: 0, stdoutHas: "ssebridge dev " + runtime.Version(), emptyError: true},
		{name: "version argument", args: []string{"version", "-x"}, code: 2, stderrHas: "usage: ssebridge version"},
		{name: "version stray argument", args: []string{"version", "x"}, code: 2, stderrHas: `unexpected argument "x"`},
		{name: "version help", args: []string{"version", "-h"}, code: 0, stderrHas: "usage: ssebridge version"},
		{name: "run without -config", args: []string{"run"}, code: 2, stderrHas: "-config is required"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderrHas: `unknown command "frobnicate"`},
		{name: "unknown command shows usage", args: []string{"-config"}, code: 2, stderrHas: "usage: ssebridge <command>"},
		{name: "no command", args: nil, code: 2, stderrHas: "usage: ssebridge <command>"},
		{name: "help", args: []string{"help"}, code: 0, stdoutHas: "validate     check a configuration file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if tt.stdout != "" && stdout.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stdout.String(), tt.stdoutHas) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.stdoutHas)
			}
			if !strings.Contains(stderr.String(), tt.stderrHas) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.stderrHas)
			}
			if tt.emptyError && stderr.Len() > 0 {
				t.Errorf("unexpected stderr %q", stderr.String())
			}
		})
	}

	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"validate", "-config", bad}, &stdout, &stderr); code != 1 || stdout.Len() != 0 {
		t.Fatalf("validate bad: code %d, stdout %q", code, stdout.String())
	}
	wantThreeMistakes(t, bad, stderr.String())
}

// TestBinary checks what a user sees from a real build: exit statuses and
// the version set with -ldflags.
func TestBinary(t *testing.T) {
	bad, good := cliFiles(t)
	bin, err := testbin.SSEBridge()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			code = exit.ExitCode()
		default:
			t.Fatalf("%v: %v", args, err)
		}
		return code, o.String(), e.String()
	}

	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "ssebridge "+testbin.Version+" "+runtime.Version()) {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := run("validate", "-config", good); code != 0 || out != "ok\n" {
		t.Errorf("validate good: %d %q", code, out)
	}
	code, out, errOut := run("validate", "-config", bad)
	if code != 1 || out != "" {
		t.Errorf("validate bad: %d %q", code, out)
	}
	wantThreeMistakes(t, bad, errOut)
	if code, _, errOut := run("nope"); code != 2 || !strings.Contains(errOut, "usage:") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := run("validate", "-bogus"); code != 2 || !strings.Contains(errOut, "-bogus") {
		t.Errorf("unknown flag: %d %q", code, errOut)
	}
}

// TestEveryCommandUsage: every command takes -h (exit 0) and answers a bad
// flag with exit 2, both with the one usage style: "usage: ssebridge NAME",
// a description, then the flags under "flags:".
func TestEveryCommandUsage(t *testing.T) {
	if len(commands) < 6 {
		t.Fatalf("only %d commands registered", len(commands))
	}
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := dispatch([]string{name, "-h"}, &stdout, &stderr); code != 0 {
				t.Errorf("-h: exit %d, stderr %q", code, stderr.String())
			}
			help := stderr.String()
			if !strings.HasPrefix(help, "usage: ssebridge "+name) || stdout.Len() != 0 {
				t.Errorf("-h: stdout %q, stderr %q, want the usage on stderr", stdout.String(), help)
			}
			lines := strings.Split(help, "\n")
			if len(lines) < 3 || lines[1] != "" || lines[2] == "" {
				t.Errorf("-h: want the usage line, a blank line and a description:\n%s", help)
			}
			if strings.Contains(help, "Usage of") {
				t.Errorf("-h prints Go's default usage:\n%s", help)
			}
			if name != "version" && !strings.Contains(help, "\nflags:\n  -") {
				t.Errorf("-h lists no flags:\n%s", help)
			}
			stdout.Reset()
			stderr.Reset()
			if code := dispatch([]string{name, "-no-such-flag"}, &stdout, &stderr); code != 2 {
				t.Errorf("bad flag: exit %d", code)
			}
			if !strings.Contains(stderr.String(), "flag provided but not defined: -no-such-flag\nusage: ssebridge "+name) {
				t.Errorf("bad flag: stderr %q", stderr.String())
			}
		})
	}
}

// readmeSection returns the text of the README's "## title" section.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no %q section", title)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	return sec
}

// fencedBlocks returns the contents of the section's ``` blocks.
func fencedBlocks(sec string) []string {
	var blocks []string
	for {
		_, rest, ok := strings.Cut(sec, "```")
		if !ok {
			return blocks
		}
		_, rest, _ = strings.Cut(rest, "\n") // the info string
		block, after, ok := strings.Cut(rest, "```")
		if !ok {
			return blocks
		}
		lines := strings.Split(strings.TrimSpace(block), "\n")
		for i := range lines {
			lines[i] = strings.TrimSpace(lines[i]) // blocks inside list items are indented
		}
		blocks = append(blocks, strings.Join(lines, "\n"))
		sec = after
	}
}

// TestReadmeSetUp: the set-up section keeps exactly its two commands, says
// how long the first run takes and why, and the build-once path for a
// second try is in the Quickstart with the commands a user pastes.
func TestReadmeSetUp(t *testing.T) {
	setup := readmeSection(t, "Set up")
	if got := fencedBlocks(setup); !slices.Equal(got, []string{"go run ./cmd/ssebridge demo", "go test -race ./..."}) {
		t.Errorf("Set up commands %q, want exactly the demo and the test suite", got)
	}
	for _, want := range []string{"first run", "minutes", "downloads", "compiles", "Quickstart"} {
		if !strings.Contains(setup, want) {
			t.Errorf("Set up does not say %q", want)
		}
	}
	quick := fencedBlocks(readmeSection(t, "Quickstart"))
	if len(quick) == 0 || quick[0] != "go build -o ssebridge ./cmd/ssebridge\n./ssebridge demo" {
		t.Errorf("Quickstart starts with %q, want go build then ./ssebridge demo", quick)
	}
}
