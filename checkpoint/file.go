package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// fileExt is the suffix of checkpoint files; tmpMarker marks files being
// written, which a crash may leave behind and NewFileStore removes.
const (
	fileExt   = ".checkpoint"
	tmpMarker = ".tmp-"
)

// ErrEmptyPipeline is returned when a pipeline name is empty: it would map
// every unnamed pipeline to one file.
var ErrEmptyPipeline = errors.New("checkpoint: empty pipeline name")

// FileStore is the default Store: one small JSON file per pipeline in a
// directory (data_dir), replaced atomically on every Save.
//
// A Save writes a temporary file in the same directory, fsyncs it, renames it
// over the old file and fsyncs the directory, so after a crash the file holds
// either the old or the new value, never a mix, and a Save that returned nil
// survives a power loss.
type FileStore struct {
	dir string
	// locks serialises Saves per pipeline, so that concurrent Saves of one
	// pipeline cannot finish in an order different from their calls.
	locks sync.Map // pipeline name -> *sync.Mutex
	// beforeRename, when set by tests, runs after the temporary file is
	// durable and before it replaces the checkpoint; an error simulates a
	// crash at the worst moment.
	beforeRename func(tmp string) error
}

// fileRecord is the on-disk form. JSON keeps any ID intact (newlines, NUL
// excluded by the SSE standard anyway) and lets an operator read the file.
type fileRecord struct {
	Pipeline string    `json:"pipeline"`
	ID       string    `json:"id"`
	SavedAt  time.Time `json:"saved_at"`
}

// NewFileStore opens (creating it if needed) a checkpoint directory and
// checks that it can write there. It removes temporary files left by a
// crash during an earlier Save.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("checkpoint: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: create %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tmpMarker) {
			_ = os.Remove(filepath.Join(dir, e.Name())) // best effort: a leftover is harmless
		}
	}
	// Fail now rather than on every Save: a store that cannot write would
	// let pipelines run while their place is never kept.
	f, err := os.CreateTemp(dir, ".probe"+tmpMarker+"*")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: directory %s is not writable: %w", dir, err)
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return &FileStore{dir: dir}, nil
}

// Path returns the file that holds pipeline's checkpoint.
func (s *FileStore) Path(pipeline string) string {
	return filepath.Join(s.dir, escapeName(pipeline)+fileExt)
}

// Load implements Store.
func (s *FileStore) Load(ctx context.Context, pipeline string) (string, bool, error) {
	if pipeline == "" {
		return "", false, ErrEmptyPipeline
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	b, err := os.ReadFile(s.Path(pipeline))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	var rec fileRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", false, fmt.Errorf("checkpoint %q: corrupt file %s: %w", pipeline, s.Path(pipeline), err)
	}
	return rec.ID, true, nil
}

// Save implements Store.
func (s *FileStore) Save(ctx context.Context, pipeline, id string) error {
	if pipeline == "" {
		return ErrEmptyPipeline
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	mu, _ := s.locks.LoadOrStore(pipeline, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	b, err := json.Marshal(fileRecord{Pipeline: pipeline, ID: id, SavedAt: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	if err := s.writeAtomic(s.Path(pipeline), b); err != nil {
		return fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	return nil
}

func (s *FileStore) writeAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(s.dir, "."+filepath.Base(path)+tmpMarker+"*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if s.beforeRename != nil {
		if err = s.beforeRename(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	// The rename is durable only once the directory entry is on disk.
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", s.dir, err)
	}
	return nil
}

// escapeName maps a pipeline name to a file name that cannot leave the
// directory or collide with another name: bytes outside [A-Za-z0-9_-] are
// written as %XX (the dot too, so "." and ".." stay ordinary names and no
// checkpoint file starts with a dot like temporary files do).
func escapeName(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
