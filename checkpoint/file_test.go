package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(filepath.Join(dir, "sub", "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load(ctx, "p"); ok || err != nil {
		t.Fatalf("Load of a missing checkpoint = ok %v, err %v", ok, err)
	}
	for _, id := range []string{"1", "", "line\nbreak \x00 \"quoted\" é"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Load(ctx, "p")
		if err != nil || !ok || got != id {
			t.Fatalf("Load = %q, %v, %v; want %q", got, ok, err, id)
		}
	}
	// A new store on the same directory sees the value: it is on disk.
	s2, err := NewFileStore(filepath.Join(dir, "sub", "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s2.Load(ctx, "p"); !ok || got != "line\nbreak \x00 \"quoted\" é" {
		t.Errorf("reopened Load = %q, %v", got, ok)
	}
	if err := s.Save(ctx, "", "x"); !errors.Is(err, ErrEmptyPipeline) {
		t.Errorf("empty name: %v", err)
	}
}

// TestFileStoreNames: names cannot escape the directory or collide.
func TestFileStoreNames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"../escape", "..", ".", "a/b", "a%2Fb", "a b", "A", "wiki.recent", "ünï"}
	for i, n := range names {
		if err := s.Save(ctx, n, string(rune('a'+i))); err != nil {
			t.Fatalf("Save(%q): %v", n, err)
		}
	}
	for i, n := range names {
		if got, ok, err := s.Load(ctx, n); err != nil || !ok || got != string(rune('a'+i)) {
			t.Errorf("Load(%q) = %q, %v, %v", n, got, ok, err)
		}
		if p := s.Path(n); filepath.Dir(p) != dir || strings.HasPrefix(filepath.Base(p), ".") {
			t.Errorf("Path(%q) = %s", n, p)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(names) {
		t.Errorf("%d files for %d names (temporary files left?)", len(entries), len(names))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.checkpoint")); err == nil {
		t.Error("a name escaped the directory")
	}
}

// TestFileStoreCrashMidWrite: a crash after the temporary file was written
// but before the rename leaves the old value, and the next open removes the
// leftover. The file is replaced by rename when it is created, when a
// record outgrows its slots, and when it holds the one record of an earlier
// version, as here.
func TestFileStoreCrashMidWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("p"), []byte(`{"pipeline":"p","id":"old","saved_at":"2026-12-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	var leftover string
	s.beforeRename = func(tmp string) error {
		leftover = tmp
		// Simulate the process dying here: keep the temp file around
		// by copying it, since Save cleans up after an error.
		b, _ := os.ReadFile(tmp)
		return errors.Join(crash, os.WriteFile(tmp+"-copy", b, 0o600))
	}
	if err := s.Save(ctx, "p", "new"); !errors.Is(err, crash) {
		t.Fatalf("Save = %v", err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("failed Save left %s", leftover)
	}
	if got, _, _ := s.Load(ctx, "p"); got != "old" {
		t.Errorf("after a crash mid-write Load = %q, want old", got)
	}
	// A crashed process leaves its temporary file: reopening cleans it.
	if _, err := os.Stat(leftover + "-copy"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileStore(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "p.checkpoint" {
		var n []string
		for _, e := range entries {
			n = append(n, e.Name())
		}
		t.Errorf("directory after reopen = %v, want only p.checkpoint", n)
	}
}

// TestFileStoreCorrupt: a damaged file is an error naming it, not a silent
// restart from scratch.
func TestFileStoreCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFileStore(dir)
	if err := os.WriteFile(s.Path("p"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(context.Background(), "p"); err == nil || !strings.Contains(err.Error(), "p.checkpoint") {
		t.Errorf("Load of a corrupt file = %v", err)
	}
}

// TestFileStoreConcurrent: concurrent Saves of several pipelines leave the
// last value of each and no temporary file.
func TestFileStoreConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := NewFileStore(dir)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if err := s.Save(ctx, string(rune('a'+p)), string(rune('0'+i%10))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for p := range 4 {
		if got, _, _ := s.Load(ctx, string(rune('a'+p))); got != "9" {
			t.Errorf("pipeline %d = %q", p, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d files, want 4", len(entries))
	}
}

var _ Store = (*FileStore)(nil)

// TestFileStoreUnwritableDir: a checkpoint directory the process cannot
// write (a volume owned by another user, a read-only mount) is an error at
// open, naming the directory, not a bridge that runs "ready" while every
// Save fails and a restart loses its place.
func TestFileStoreUnwritableDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		// Running as root, which ignores file modes: sysfs refuses new
		// files even to root.
		f.Close()
		_ = os.Remove(f.Name())
		dir = "/sys"
	}
	s, err := NewFileStore(dir)
	if err == nil {
		t.Fatalf("NewFileStore(%s) = nil error; Save then fails with %v", dir, s.Save(context.Background(), "p", "1"))
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("error %q does not say that %s is not writable", err, dir)
	}
}
