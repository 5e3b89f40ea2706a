package checkpoint

import (
	"os"
	"syscall"
)

// datasync flushes f's data (and the metadata needed to read it back) to
// disk: a slot overwritten in place changes no size, so fdatasync skips
// the inode times fsync would also write.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// writable reports whether the process may create and replace files in
// dir.
func writable(dir string) bool {
	return syscall.Access(dir, 2 /* W_OK */) == nil
}
