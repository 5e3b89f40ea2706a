// Command bench measures ssebridge's ingest speed against hand-written
// bridges and the Go SSE libraries, and writes BENCHMARKS.md.
//
// It lives in a module of its own so that its baselines (other SSE
// libraries, extra clients) never enter the product's module.
package main

import (
	"fmt"
	"os"

	"github.com/ssebridge/ssebridge/sse"
)

func main() {
	// Placeholder until the scenarios land: prove the product's codec links.
	_ = sse.Event{}
	fmt.Fprintln(os.Stderr, "bench: no scenarios yet")
}
