//go:build race

package main

// raceEnabled builds ssebridge with -race too, so that the CI smoke run
// (go run -race . -quick, after go test -race ./...) reuses the packages
// the tests compiled instead of compiling everything a second time.
const raceEnabled = true
