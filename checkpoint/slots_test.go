package checkpoint

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func mustLoad(t *testing.T, s *FileStore, pipeline string) string {
	t.Helper()
	id, ok, err := s.Load(context.Background(), pipeline)
	if err != nil || !ok {
		t.Fatalf("Load = %q, %v, %v", id, ok, err)
	}
	return id
}

// TestFileStoreSlots: saves after the first overwrite the file's two slots
// in turn, in place: the file keeps its size and inode, and stays
// readable text.
func TestFileStoreSlots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "p", "1"); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(s.Path("p"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"2", "3", "", "4"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, "p"); got != id {
			t.Fatalf("Load = %q, want %q", got, id)
		}
	}
	st2, err := os.Stat(s.Path("p"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st1, st2) || st2.Size() != 2*minSlot {
		t.Errorf("file replaced or resized: %d bytes, same file %v", st2.Size(), os.SameFile(st1, st2))
	}
	b, _ := os.ReadFile(s.Path("p"))
	if lines := strings.Fields(string(b)); len(lines) != 4 || !strings.Contains(lines[1], `"id":"4"`) && !strings.Contains(lines[3], `"id":"4"`) {
		t.Errorf("file = %q", strings.Join(lines, " "))
	}
}

// TestFileStoreTornSlot: a crash while a slot is being overwritten leaves
// a slot whose checksum fails; Load returns the record of the other slot,
// the last Save that returned nil, and later Saves overwrite the torn slot,
// never the valid one.
func TestFileStoreTornSlot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
	}
	crash := errors.New("crash")
	s.beforeSlotSync = func(f *os.File, off int64) error {
		// Only the start of the new record reached the disk.
		_, err := f.WriteAt([]byte(strings.Repeat("\x00", 40)), off+20)
		return errors.Join(crash, err)
	}
	if err := s.Save(ctx, "p", "3-long-enough-to-be-torn"); !errors.Is(err, crash) {
		t.Fatalf("Save = %v", err)
	}
	s.beforeSlotSync = nil
	// A restarted process, with a store of its own.
	s2, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s2, "p"); got != "2" {
		t.Fatalf("after a torn slot Load = %q, want 2", got)
	}
	if err := s2.Save(ctx, "p", "4"); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s2, "p"); got != "4" {
		t.Fatalf("Load = %q, want 4", got)
	}
	// "4" went to the torn slot: "2" is still in the other one, so the
	// next save goes there, and a torn write of it would leave "4".
	s2.beforeSlotSync = func(f *os.File, off int64) error {
		_, err := f.WriteAt([]byte("xx"), off)
		return errors.Join(crash, err)
	}
	if err := s2.Save(ctx, "p", "5"); !errors.Is(err, crash) {
		t.Fatalf("Save = %v", err)
	}
	if got := mustLoad(t, s2, "p"); got != "4" {
		t.Fatalf("after a second torn slot Load = %q, want 4", got)
	}
}

// TestFileStoreLongID: a record larger than a slot replaces the file with
// larger slots; shorter IDs then go in place again.
func TestFileStoreLongID(t *testing.T) {
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 3*minSlot)
	for _, id := range []string{"1", long, "3", long + "x", "5"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, "p"); got != id {
			t.Fatalf("Load = %.20q (%d bytes), want %.20q (%d bytes)", got, len(got), id, len(id))
		}
	}
	st, _ := os.Stat(s.Path("p"))
	if st.Size() != 2*8*minSlot {
		t.Errorf("file of %d bytes, want two slots of %d", st.Size(), 8*minSlot)
	}
}

// TestFileStoreEarlierVersion: the single JSON record of earlier versions
// loads, and the next Save converts the file.
func TestFileStoreEarlierVersion(t *testing.T) {
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("p"), []byte(`{"pipeline":"p","id":"41","saved_at":"2026-12-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "p"); got != "41" {
		t.Fatalf("Load = %q", got)
	}
	for _, id := range []string{"42", "43"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, "p"); got != id {
			t.Fatalf("Load = %q, want %q", got, id)
		}
	}
}

// TestFileStoreCorruptSlots: a file of slots none of which is valid is an
// error naming it, and a Save replaces it.
func TestFileStoreCorruptSlots(t *testing.T) {
	ctx := context.Background()
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("p"), make([]byte, 2*minSlot), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "p"); err == nil || !strings.Contains(err.Error(), "p.checkpoint") {
		t.Errorf("Load of a corrupt file = %v", err)
	}
	if err := s.Save(ctx, "p", "1"); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "p"); got != "1" {
		t.Fatalf("Load = %q", got)
	}
}

// TestInspect: a tool reads the pipeline and ID of either layout.
func TestInspect(t *testing.T) {
	s, err := NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("old"), []byte(`{"pipeline":"old","id":"7","saved_at":"2026-12-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if err := s.Save(context.Background(), "new", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, id string }{{"old", "7"}, {"new", "3"}} {
		p, id, err := Inspect(s.Path(tc.name))
		if err != nil || p != tc.name || id != tc.id {
			t.Errorf("Inspect(%s) = %q, %q, %v", tc.name, p, id, err)
		}
	}
	if _, _, err := Inspect(s.Path("missing")); err == nil {
		t.Error("Inspect of a missing file: no error")
	}
}

// TestFileStoreFileReplaced: a Save reads the file again when it is no
// longer the one the store last wrote in place (another inode, another
// size), instead of trusting what it remembers of it.
func TestFileStoreFileReplaced(t *testing.T) {
	ctx := context.Background()
	dir, other := t.TempDir(), t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
	}
	// Another inode of the same size, whose records are newer.
	s2, err := NewFileStore(other)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x1", "x2", "x3", "x4", "x5"} {
		if err := s2.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(s2.Path("p"), s.Path("p")); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "p", "3"); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "p"); got != "3" {
		t.Fatalf("after the file was replaced Load = %q, want 3", got)
	}
	// The same inode rewritten in the format of earlier versions.
	if err := os.WriteFile(s.Path("p"), []byte(`{"pipeline":"p","id":"old","saved_at":"2026-12-01T00:00:00Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"4", "5"} {
		if err := s.Save(ctx, "p", id); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, "p"); got != id {
			t.Fatalf("after the file was rewritten Load = %q, want %q", got, id)
		}
	}
}
