package config

import (
	"net/http"
	"strings"

	"github.com/ssebridge/ssebridge/sources"
)

// Options maps the source block of the pipeline named name to the source
// worker's plain Config, with the source defaults applied: the one place
// that knows both, used by the validation (whose rules are
// sources.Config.Check) and by the runner, so that the file is checked
// exactly as it runs. TLS is left to the runner, which builds it
// (tlsconf) from s.TLS; Logger, ShutdownTimeout and the hooks are the
// runner's too.
func (s Source) Options(name string) sources.Config {
	c := sources.Config{
		Name:         name,
		URL:          s.URL,
		Method:       strings.ToUpper(s.Method),
		Body:         s.Body,
		Events:       append([]string(nil), s.Events...),
		RetryInitial: orDefault(s.Retry.Initial, DefaultRetryInitial),
		RetryMax:     orDefault(s.Retry.Max, DefaultRetryMax),
		IdleTimeout:  orDefault(s.IdleTimeout, DefaultIdleTimeout),
		MaxEventSize: s.MaxEventSize,
		QueueSize:    s.QueueSize,
		MaxUnsaved:   s.CheckpointMaxUnsaved,
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
	return c
}
