//go:build !unix

package bridge

// lockDataDir does nothing where flock does not exist: data_dir is not
// guarded against a second bridge there.
func lockDataDir(string) (release func(), err error) { return func() {}, nil }
