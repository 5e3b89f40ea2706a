//go:build !linux

package checkpoint

import "os"

// datasync flushes f to disk.
func datasync(f *os.File) error { return f.Sync() }

// writable reports whether the process may create and replace files in
// dir; without a cheap check, the write itself finds out.
func writable(string) bool { return true }
