package layout

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ssebridge/ssebridge"

// deps lists what pkg (a path under the module) depends on, transitively,
// without its tests.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var ds []string
	for _, l := range strings.Fields(string(out)) {
		if l != module+"/"+pkg {
			ds = append(ds, l)
		}
	}
	return ds
}

// packages lists the module's packages under dir ("" for all).
func packages(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", module+"/"+pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	var ps []string
	for _, l := range strings.Fields(string(out)) {
		ps = append(ps, strings.TrimPrefix(l, module+"/"))
	}
	return ps
}

func own(ds []string) []string {
	var out []string
	for _, d := range ds {
		if p, ok := strings.CutPrefix(d, module+"/"); ok {
			out = append(out, p)
		}
	}
	return out
}

// TestLeaves: the codec, the message, the checkpoint store interface and
// the token check import nothing of the module but what is listed.
func TestLeaves(t *testing.T) {
	for pkg, allowed := range map[string][]string{
		"sse":                nil,
		"message":            {"sse"},
		"checkpoint":         nil,
		"internal/httptoken": nil,
	} {
		for _, d := range own(deps(t, pkg)) {
			if !slices.Contains(allowed, d) {
				t.Errorf("leaf %s imports %s", pkg, d)
			}
		}
	}
}

var brokerClients = []string{"github.com/nats-io/", "github.com/segmentio/kafka-go", "github.com/twmb/franz-go"}

// TestSourcesStandAlone: sources reads a feed into any Sink. It depends on
// no broker client, no sink, no runner and no YAML types or parser.
func TestSourcesStandAlone(t *testing.T) {
	for _, d := range deps(t, "sources") {
		p, own := strings.CutPrefix(d, module+"/")
		switch {
		case own && (p == "bridge" || strings.HasPrefix(p, "bridge/") || strings.HasPrefix(p, "sinks") || strings.HasPrefix(p, "streams")):
			t.Errorf("sources depends on %s", p)
		case d == "gopkg.in/yaml.v3":
			t.Errorf("sources depends on yaml.v3")
		}
		for _, c := range brokerClients {
			if strings.HasPrefix(d, c) {
				t.Errorf("sources depends on the broker client %s", d)
			}
		}
	}
}

// TestNoPluginDependsOnTheRunner: sinks and streams never import sources,
// the runner (package bridge), the cluster or the YAML types (config).
func TestNoPluginDependsOnTheRunner(t *testing.T) {
	plugins := append(packages(t, "sinks/..."), packages(t, "streams/...")...)
	for _, pkg := range plugins {
		for _, d := range own(deps(t, pkg)) {
			if d == "sources" || d == "bridge" || strings.HasPrefix(d, "bridge/") || d == "internal/cluster" || d == "config" {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}

// plainOptions are the trees that take options of their own: the runner
// maps the YAML to them (bridge/*_config.go, bridge/stream.go), so none of
// their packages depends on the YAML types. yaml says whether yaml.v3 is
// allowed: a sink driver's options are its block, which it may decode
// itself. A tree that joins them is one more line.
var plainOptions = []struct {
	pattern string
	yaml    bool
}{
	{"sse", false},
	{"message", false},
	{"checkpoint", false},
	{"sources/...", false},
	{"streams/...", false},
	{"sinks/...", true},
	{"internal/natsconn", false},
	{"internal/kafkaconn", false},
	{"internal/tlsconf", false},
}

// TestPlainOptions: no package of the trees in plainOptions depends on the
// YAML types (package config), nor on yaml.v3 unless the tree may decode
// YAML itself.
func TestPlainOptions(t *testing.T) {
	for _, tree := range plainOptions {
		for _, pkg := range packages(t, tree.pattern) {
			for _, d := range deps(t, pkg) {
				if d == module+"/config" || (d == "gopkg.in/yaml.v3" && !tree.yaml) {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}

// TestArchitectureDocNamesEveryPackage: ARCHITECTURE.md, the map of the
// layout, names every package of the module, so a new one is placed on
// it when it is added.
func TestArchitectureDocNamesEveryPackage(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		for _, f := range strings.Split(sc.Text(), "`") {
			named[strings.TrimSuffix(f, "/")] = true
		}
	}
	for _, p := range packages(t, "...") {
		if !named[p] {
			t.Errorf("ARCHITECTURE.md does not name package %s (write it as `%s/`)", p, p)
		}
	}
}

// maxFileLines bounds a non-test Go file, so that each is one a reader can
// hold (issue 13).
const maxFileLines = 650

// TestFilesAReaderCanHold: no non-test Go file of the module is over
// maxFileLines lines (bench/, a module of its own, is not the product).
func TestFilesAReaderCanHold(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && p != root {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n := bytes.Count(b, []byte("\n")); n > maxFileLines {
			rel, _ := filepath.Rel(root, p)
			t.Errorf("%s has %d lines, more than %d: split it by responsibility", rel, n, maxFileLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
