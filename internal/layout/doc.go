// Package layout holds no code: its test checks the import rules of
// ARCHITECTURE.md against `go list -deps`, so that they hold whatever the
// packages are named.
package layout
