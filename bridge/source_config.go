package bridge

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
	"github.com/ssebridge/ssebridge/sources"
)

// sourceConfig maps a pipeline of the YAML file to the source worker's
// plain Config, applying the source defaults: the one place where the
// YAML types meet the sources package. The caller still sets Logger and
// ShutdownTimeout (a global setting) and may set the hooks.
func sourceConfig(p config.Pipeline) (sources.Config, error) {
	s := p.Source
	c := sources.Config{
		Name:         p.Name,
		URL:          s.URL,
		Method:       strings.ToUpper(s.Method),
		Body:         s.Body,
		Events:       append([]string(nil), s.Events...),
		RetryInitial: s.Retry.Initial.D(),
		RetryMax:     s.Retry.Max.D(),
		IdleTimeout:  s.IdleTimeout.D(),
		MaxEventSize: s.MaxEventSize,
		QueueSize:    s.QueueSize,
		MaxUnsaved:   s.CheckpointMaxUnsaved,
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = config.DefaultRetryInitial
	}
	if c.RetryMax == 0 {
		c.RetryMax = config.DefaultRetryMax
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = config.DefaultIdleTimeout
	}
	if len(s.Headers) > 0 {
		c.Header = make(http.Header, len(s.Headers))
		for k, v := range s.Headers {
			c.Header.Set(k, v)
		}
		// The worker owns Last-Event-ID (the acknowledged ID on every
		// reconnection) and drops it from Header; a configured one means
		// "start after this event" when no checkpoint exists yet.
		if id := c.Header.Get("Last-Event-ID"); id != "" {
			c.LastEventID = id
		}
		c.Header.Del("Last-Event-ID")
	}
	tc, err := tlsconf.Build(tlsConfig(s.TLS))
	if err != nil {
		return sources.Config{}, fmt.Errorf("pipeline %q: source: %w", p.Name, err)
	}
	c.TLS = tc
	return c, nil
}
