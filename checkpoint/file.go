package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
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

// FileStore is the default Store: one small file per pipeline in a
// directory (data_dir).
//
// The file holds two fixed-size slots, each one line of text: a checksum
// and a JSON record with a sequence number, padded with spaces. A Save
// overwrites the slot that does not hold the newest record, in place, and
// flushes it with one fdatasync: no file is created, renamed or added to
// the directory, which makes a save several times cheaper than replacing
// the file. A crash during that write can only tear the slot being
// written, whose checksum then fails: Load takes the newest valid slot,
// which is the last Save that returned nil or a later one.
//
// The file is replaced atomically instead (a temporary file, fsynced,
// renamed over the old one, and the directory fsynced) when it does not
// exist yet, when a record outgrows the slots, and when it holds the
// single JSON record of earlier versions, which Load still reads.
//
// A store takes itself for its files' only writer (the bridge holds
// data_dir's lock): it remembers which slot its last Save wrote, and reads
// the file again only after a failure or when the file was replaced or
// resized, so a steady Save is an open, one write, an fdatasync and a
// close.
type FileStore struct {
	dir   string
	files sync.Map // pipeline name -> *pipeFile
	// beforeRename, when set by tests, runs after the temporary file is
	// durable and before it replaces the checkpoint; an error simulates a
	// crash at the worst moment.
	beforeRename func(tmp string) error
	// beforeSlotSync, when set by tests, runs after a slot was written in
	// place and before it is flushed; an error simulates a crash then.
	beforeSlotSync func(f *os.File, off int64) error
}

// pipeFile is a FileStore's state for one pipeline: the lock that
// serialises its Saves, so that concurrent Saves of one pipeline cannot
// finish in an order different from their calls, and what the last
// in-place Save left in the file, so that the next one need not read the
// file again (a store is its files' only writer: the bridge holds
// data_dir's lock).
type pipeFile struct {
	mu sync.Mutex
	// known: the file fi (same file, same size) holds the newest record,
	// sequence number seq, in slot slot. Any failure or replacement
	// clears it, and the next Save reads the file.
	known bool
	fi    os.FileInfo
	seq   uint64
	slot  int
	buf   []byte // a slot's bytes, reused
}

// fileRecord is the on-disk form. JSON keeps any ID intact (newlines, NUL
// excluded by the SSE standard anyway) and lets an operator read the file.
// Seq orders the two slots; files of earlier versions have none.
type fileRecord struct {
	Pipeline string    `json:"pipeline"`
	ID       string    `json:"id"`
	SavedAt  time.Time `json:"saved_at"`
	Seq      uint64    `json:"seq,omitempty"`
}

// minSlot is the smallest slot; a record that does not fit doubles it.
const minSlot = 4096

// crcTable is the checksum of slots (CRC-32C).
var crcTable = crc32.MakeTable(crc32.Castagnoli)

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
	if len(b) > 0 && b[0] == '{' {
		// A file of an earlier version: one JSON record.
		var rec fileRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return "", false, fmt.Errorf("checkpoint %q: corrupt file %s: %w", pipeline, s.Path(pipeline), err)
		}
		return rec.ID, true, nil
	}
	rec, _, ok := newestSlot(b)
	if !ok {
		return "", false, fmt.Errorf("checkpoint %q: corrupt file %s: no valid record", pipeline, s.Path(pipeline))
	}
	return rec.ID, true, nil
}

// Inspect returns the pipeline and ID of the newest record of a checkpoint
// file written by a FileStore (of this version or an earlier one), for
// tools that look at a data directory without opening a store in it.
func Inspect(path string) (pipeline, id string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("checkpoint: %w", err)
	}
	if len(b) > 0 && b[0] == '{' {
		var rec fileRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return "", "", fmt.Errorf("checkpoint: corrupt file %s: %w", path, err)
		}
		return rec.Pipeline, rec.ID, nil
	}
	rec, _, ok := newestSlot(b)
	if !ok {
		return "", "", fmt.Errorf("checkpoint: corrupt file %s: no valid record", path)
	}
	return rec.Pipeline, rec.ID, nil
}

// Save implements Store.
func (s *FileStore) Save(ctx context.Context, pipeline, id string) error {
	if pipeline == "" {
		return ErrEmptyPipeline
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v, _ := s.files.LoadOrStore(pipeline, new(pipeFile))
	pf := v.(*pipeFile)
	pf.mu.Lock()
	defer pf.mu.Unlock()

	path := s.Path(pipeline)
	done, seq, err := s.saveInPlace(pf, path, pipeline, id)
	if !done {
		pf.known = false
	}
	if err != nil {
		return fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	if done {
		return nil
	}
	rec, err := encodeSlot(fileRecord{Pipeline: pipeline, ID: id, SavedAt: time.Now().UTC(), Seq: seq + 1})
	if err != nil {
		return fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	size := minSlot
	for size < len(rec) {
		size *= 2
	}
	b := make([]byte, 2*size)
	pad(b[:size], rec)
	pad(b[size:], nil)
	if err := s.writeAtomic(path, b); err != nil {
		return fmt.Errorf("checkpoint %q: %w", pipeline, err)
	}
	return nil
}

// saveInPlace overwrites the older slot of the file at path with id, when
// the file has slots and the record fits. done is false when the file must
// be replaced instead, with seq the newest sequence number it holds. The
// file is read only when pf does not know it already.
func (s *FileStore) saveInPlace(pf *pipeFile, path, pipeline, id string) (done bool, seq uint64, err error) {
	// The file could be written without the directory, but a directory the
	// store cannot replace files in is a failing store all the same: a
	// record may outgrow the slots at any time.
	if !writable(s.dir) {
		return false, 0, fmt.Errorf("directory %s is not writable", s.dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		// Missing, or read-only in a writable directory: replace it, as
		// earlier versions always did.
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	n := st.Size()
	if n < 2*minSlot || n%2 != 0 || n > 1<<30 {
		return false, 0, nil // not slots: replace it
	}
	slot := 0
	if pf.known && os.SameFile(st, pf.fi) && n == pf.fi.Size() {
		seq, slot = pf.seq, pf.slot
	} else {
		pf.known = false
		b := make([]byte, n)
		if _, err := f.ReadAt(b, 0); err != nil {
			return false, 0, fmt.Errorf("read %s: %w", path, err)
		}
		newest, i, ok := newestSlot(b)
		if !ok {
			return false, 0, nil // no valid slot: replace the file
		}
		seq, slot = newest.Seq, i
	}
	rec, err := encodeSlot(fileRecord{Pipeline: pipeline, ID: id, SavedAt: time.Now().UTC(), Seq: seq + 1})
	if err != nil {
		return false, 0, err
	}
	size := int(n / 2)
	if len(rec) > size {
		return false, seq, nil
	}
	// The slot that does not hold the newest record.
	off := int64(size * (1 - slot))
	if cap(pf.buf) < size {
		pf.buf = make([]byte, size)
	}
	buf := pf.buf[:size]
	pad(buf, rec)
	if _, err := f.WriteAt(buf, off); err != nil {
		return false, 0, fmt.Errorf("write %s: %w", path, err)
	}
	if s.beforeSlotSync != nil {
		if err := s.beforeSlotSync(f, off); err != nil {
			return false, 0, err
		}
	}
	if err := datasync(f); err != nil {
		return false, 0, fmt.Errorf("fdatasync %s: %w", path, err)
	}
	pf.known, pf.fi, pf.seq, pf.slot = true, st, seq+1, 1-slot
	return true, 0, nil
}

// encodeSlot is a slot's line without its padding: eight hex digits of the
// CRC-32C of the JSON record, a space, the record.
func encodeSlot(rec fileRecord) ([]byte, error) {
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 9+len(js)+1)
	b = fmt.Appendf(b, "%08x ", crc32.Checksum(js, crcTable))
	b = append(b, js...)
	return append(b, '\n'), nil
}

// pad fills slot with line and spaces, and ends it with a newline.
func pad(slot, line []byte) {
	n := copy(slot, line)
	for i := n; i < len(slot)-1; i++ {
		slot[i] = ' '
	}
	slot[len(slot)-1] = '\n'
}

// newestSlot returns the valid record with the highest sequence number of
// a two-slot file, and its slot (0 or 1).
func newestSlot(b []byte) (rec fileRecord, slot int, ok bool) {
	if len(b) < 2*minSlot || len(b)%2 != 0 {
		return rec, 0, false
	}
	size := len(b) / 2
	for i := range 2 {
		r, valid := decodeSlot(b[i*size : (i+1)*size])
		if valid && (!ok || r.Seq > rec.Seq) {
			rec, slot, ok = r, i, true
		}
	}
	return rec, slot, ok
}

// decodeSlot parses one slot; false when it is empty or torn.
func decodeSlot(b []byte) (fileRecord, bool) {
	var rec fileRecord
	end := bytes.IndexByte(b, '\n')
	if end < 10 || b[8] != ' ' {
		return rec, false
	}
	sum, err := strconv.ParseUint(string(b[:8]), 16, 32)
	if err != nil {
		return rec, false
	}
	js := b[9:end]
	if crc32.Checksum(js, crcTable) != uint32(sum) || json.Unmarshal(js, &rec) != nil || rec.Seq == 0 {
		return fileRecord{}, false
	}
	return rec, true
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
