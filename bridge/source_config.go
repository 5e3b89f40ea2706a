package bridge

import (
	"fmt"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
	"github.com/ssebridge/ssebridge/sources"
)

// sourceConfig is the source worker's Config for a pipeline of the YAML
// file: config's mapping (the one the validation checked) plus the TLS
// configuration built from the file's block. The caller still sets Logger
// and ShutdownTimeout (a global setting) and may set the hooks.
func sourceConfig(p config.Pipeline) (sources.Config, error) {
	c := p.Source.Options(p.Name)
	tc, err := tlsconf.Build(tlsConfig(p.Source.TLS))
	if err != nil {
		return sources.Config{}, fmt.Errorf("pipeline %q: source: %w", p.Name, err)
	}
	c.TLS = tc
	return c, nil
}
