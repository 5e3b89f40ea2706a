package sinktest

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// Block encodes a driver's options as the YAML block sinks.Open decodes,
// so a driver's test opens its sinks through the registry as the runner
// does.
func Block(t testing.TB, opts any) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(opts); err != nil {
		t.Fatalf("encode %T: %v", opts, err)
	}
	return &n
}
