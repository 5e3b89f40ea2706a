// Command bench measures ssebridge's ingest speed against hand-written
// bridges and the Go SSE libraries, and writes BENCHMARKS.md.
//
// It lives in a module of its own so that its baselines (other SSE
// libraries, extra clients) never enter the product's module.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	quick := flag.Bool("quick", false, "a smoke run of a few seconds")
	flag.Parse()
	size, rounds := 6<<20, 9
	if *quick {
		size, rounds = 256<<10, 2
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	if _, _, _, err := runDecode(size, rounds, logf); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
