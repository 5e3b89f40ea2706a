package sources

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/ssebridge/ssebridge/internal/httptoken"
)

// The rules a source's Config obeys, written once: New refuses a Config
// that breaks one, and the YAML validation (package config) reports the
// same problems under the file's keys, with file and line.

// HeaderKey prefixes the key Check reports a header's problem under: the
// key is HeaderKey followed by the name as it is in Config.Header
// ("Header.X-Api-Key").
const HeaderKey = "Header."

// Check reports every problem of c to report, one call per problem, in
// the order of Config's fields. key is the name of the Config field
// ("URL", "RetryMax"), or HeaderKey and the header's name; msg says what
// is wrong without the key, and never holds a header's value or a URL's
// query or password, which may be credentials.
//
// Zero fields are accepted as their defaults, so Check may run before or
// after the defaults are applied. Check does not look at the hooks, the
// TLS configuration or the body.
func (c Config) Check(report func(key, msg string)) {
	if msg := checkURL(c.URL); msg != "" {
		report("URL", msg)
	}
	// What net/http refuses to send would fail every connection attempt,
	// retried forever as if the network were down: refuse it here.
	if c.Method != "" && !httptoken.Valid(c.Method) {
		report("Method", fmt.Sprintf("must be an HTTP method like GET or POST, got %q", c.Method))
	}
	// Sorted, so that the problems come in the same order on every run.
	for _, name := range slices.Sorted(maps.Keys(c.Header)) {
		if !httptoken.Valid(name) {
			report(HeaderKey+name, "not a valid header name")
		}
		if slices.ContainsFunc(c.Header[name], hasCTL) {
			report(HeaderKey+name, "header values cannot contain control characters or line breaks")
		}
	}
	if hasCTL(c.LastEventID) {
		report("LastEventID", "contains a control character: it cannot be sent as Last-Event-ID")
	}
	nonNegative(report, "RetryInitial", int64(c.RetryInitial))
	nonNegative(report, "RetryMax", int64(c.RetryMax))
	retryMax := c.RetryMax
	if retryMax == 0 {
		retryMax = DefaultRetryMax
	}
	if c.RetryInitial > retryMax && retryMax > 0 {
		report("RetryMax", fmt.Sprintf("must not be less than the initial delay (%s)", c.RetryInitial))
	}
	for _, f := range []struct {
		key string
		n   int64
	}{
		{"IdleTimeout", int64(c.IdleTimeout)},
		{"MaxEventSize", int64(c.MaxEventSize)},
		{"QueueSize", int64(c.QueueSize)},
		{"BatchSize", int64(c.BatchSize)},
		{"CheckpointInterval", int64(c.CheckpointInterval)},
		{"CheckpointEvery", int64(c.CheckpointEvery)},
		{"MaxUnsaved", int64(c.MaxUnsaved)},
		{"ShutdownTimeout", int64(c.ShutdownTimeout)},
	} {
		nonNegative(report, f.key, f.n)
	}
	if c.Client != nil && c.Client.Timeout > 0 {
		// It would cut every stream after Timeout, however healthy.
		report("Client", "must not have a Timeout: an event stream never ends (use IdleTimeout)")
	}
}

func nonNegative(report func(key, msg string), key string, n int64) {
	if n < 0 {
		report(key, "must not be negative")
	}
}

// checkURL says what is wrong with a feed's URL, or "". It never echoes
// the query or the fragment, where API keys usually ride, nor a password.
func checkURL(raw string) string {
	if raw == "" {
		return "required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The cause without the URL url.Error repeats. A bad port is
		// not quoted: in "https://user:key/feed" (no @) it is the key.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		cause := err.Error()
		if strings.Contains(cause, "port") {
			cause = "invalid port"
		}
		return "must be an http:// or https:// URL: " + cause
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
		return fmt.Sprintf("must be an http:// or https:// URL, got %q", u.Redacted())
	}
	return ""
}

// validate reports every problem of c at once, as one error wrapping
// ErrInvalidConfig.
func (c Config) validate() error {
	var probs []string
	c.Check(func(key, msg string) { probs = append(probs, key+": "+msg) })
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(probs, "; "))
}

// hasCTL reports whether a header value holds a byte net/http refuses to
// send: a control character other than tab.
func hasCTL(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}
