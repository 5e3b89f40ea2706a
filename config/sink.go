package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// NewSink builds the Sink of driver kind from opts, a value of the driver's
// options type (natssink.Options, kafkasink.Options), for configurations
// built in code. It panics if opts cannot be encoded as YAML, which is a
// programming error.
func NewSink(kind string, opts any) Sink {
	var n yaml.Node
	if err := n.Encode(opts); err != nil {
		panic(fmt.Sprintf("config.NewSink(%q): %v", kind, err))
	}
	return Sink{Kind: kind, Block: normalize(&n)}
}

// UnmarshalYAML takes the one driver key of a sink mapping and its block.
// Load has checked the mapping before (one known driver, its block against
// the driver's options type) and reported what was wrong.
func (s *Sink) UnmarshalYAML(n *yaml.Node) error {
	switch {
	case n.Kind != yaml.MappingNode:
		return fmt.Errorf("sink must be a mapping")
	case len(n.Content) == 0:
		*s = Sink{}
		return nil
	case len(n.Content) > 2:
		return fmt.Errorf("sink has more than one driver")
	}
	*s = Sink{Kind: n.Content[0].Value}
	if v := n.Content[1]; !isNull(resolve(v)) {
		s.Block = normalize(v)
	}
	return nil
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// normalize returns a deep copy of n with aliases replaced by copies of
// what they name, and without what does not change the decoded value
// (positions, comments, anchors, quoting style), so that equal blocks
// compare equal. Load bounds the document's size, aliases included.
func normalize(n *yaml.Node) *yaml.Node {
	n = resolve(n)
	// The resolved tag keeps what the style meant ("1" quoted is a
	// string) and makes an untagged value equal to a tagged one.
	c := &yaml.Node{Kind: n.Kind, Tag: n.ShortTag(), Value: n.Value}
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, sub := range n.Content {
			c.Content[i] = normalize(sub)
		}
	}
	return c
}
