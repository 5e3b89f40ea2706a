package streams

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ssebridge/ssebridge/internal/names"
)

// The rules a stream's Config obeys, written once: New refuses a Config
// that breaks one, and the YAML validation (package config) reports the
// same problems under the file's keys, with file and line.

// Check reports every problem of c to report, one call per problem, in
// the order of Config's fields. key is the Config field the problem
// concerns, with the path of a nested one ("Path", "NATS.Subject",
// "Auth.BearerTokens[1]"), or "" for the Config as a whole; msg says what
// is wrong without the key, and never holds a token or a secret.
//
// Zero fields are accepted as their defaults, so Check may run before or
// after the defaults are applied. Check does not read files: a JWT public
// key that cannot be read or parsed is New's error.
func (c Config) Check(report func(key, msg string)) {
	checkPath(report, c.Path)
	switch {
	case c.NATS == nil && c.Kafka == nil:
		report("", "needs exactly one of nats or kafka")
	case c.NATS != nil && c.Kafka != nil:
		report("", "has both nats and kafka; a stream reads exactly one")
	case c.NATS != nil:
		n := c.NATS
		switch err := names.SubscribeSubject(n.Subject); {
		case n.Subject == "" && n.JetStream == "":
			report("NATS.Subject", "required") // a JetStream stream may be served whole
		case n.Subject == "":
		case err != nil:
			report("NATS.Subject", err.Error())
		case n.JetStream == "" && len(n.Subject) > names.MaxSubjectLen:
			// The core subscription's protocol line would exceed the
			// server's max_control_line: it closes the connection for
			// good, and with it every stream and sink on it.
			report("NATS.Subject", fmt.Sprintf("%d bytes, more than %d: the server would refuse the subscription and close the connection",
				len(n.Subject), names.MaxSubjectLen))
		}
		if n.JetStream != "" {
			if err := names.JetStreamStream(n.JetStream); err != nil {
				report("NATS.JetStream", err.Error())
			}
		}
	case c.Kafka != nil:
		k := c.Kafka
		if k.Topic == "" {
			report("Kafka.Topic", "required")
		} else if err := names.Topic(k.Topic); err != nil {
			report("Kafka.Topic", err.Error())
		}
		switch k.Start {
		case "", "latest", "earliest":
		default:
			report("Kafka.Start", fmt.Sprintf("must be one of latest, earliest, got %q", k.Start))
		}
	}
	for _, f := range []struct {
		key string
		n   int64
	}{
		{"Heartbeat", int64(c.Heartbeat)},
		{"MaxPending", int64(c.MaxPending)},
		{"MaxSubscribers", int64(c.MaxSubscribers)},
		{"WindowEvents", int64(c.WindowEvents)},
		{"WindowBytes", int64(c.WindowBytes)},
		{"Coalesce", int64(c.Coalesce)},
	} {
		if f.n < 0 {
			report(f.key, "must not be negative")
		}
	}
	if a := c.Auth; a != nil {
		if len(a.BearerTokens) == 0 && a.JWT == nil {
			report("Auth", "needs bearer tokens or JWT")
		}
		for j, t := range a.BearerTokens {
			if t == "" {
				report("Auth.BearerTokens["+strconv.Itoa(j)+"]", "must not be empty")
			}
		}
		// Both may be set: tokens signed either way are then accepted.
		if j := a.JWT; j != nil && j.HS256Secret == "" && j.RS256PublicKeyFile == "" {
			report("Auth.JWT", "needs an HS256 secret or an RS256 public key file")
		}
	}
}

// checkPath reports what is wrong with a stream's path. Whether it can
// be mounted on an http.ServeMux (clean, no pattern syntax) and whether
// it is free are the mounting side's rules.
func checkPath(report func(key, msg string), p string) {
	switch {
	case p == "":
		report("Path", "required")
	case !strings.HasPrefix(p, "/"):
		report("Path", fmt.Sprintf("must start with /, got %q", p))
	}
}

// checkConfig reports every problem of c at once, as one error, or nil.
func checkConfig(c Config) error {
	var probs []string
	c.Check(func(key, msg string) {
		if key != "" {
			msg = key + ": " + msg
		}
		probs = append(probs, msg)
	})
	if len(probs) == 0 {
		return nil
	}
	return errors.New(strings.Join(probs, "; "))
}
