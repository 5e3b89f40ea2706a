//go:build unix

package bridge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFileName is the file in data_dir whose lock marks the directory's
// owner. flock locks belong to the open file, so a second bridge in the
// same process is refused like one in another process, and the kernel
// drops the lock when the process dies: a crash never leaves it stale.
const lockFileName = ".ssebridge.lock"

// lockDataDir takes data_dir for this bridge until release is called.
// A file system without flock (some network mounts) runs unlocked, as
// before: the lock guards against a mistake, it is not needed to run.
func lockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bridge: data_dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bridge: data_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("bridge: %w: %s (give each bridge its own data_dir)", ErrDataDirInUse, dir)
		}
		return func() {}, nil
	}
	return func() { f.Close() }, nil
}
