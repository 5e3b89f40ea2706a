// Package names holds the rules for the names ssebridge sends to brokers:
// NATS subjects (to publish to, to subscribe to) and Kafka topics. The
// YAML validation and the runtime routing both ask here, so a name one
// accepts the other accepts too.
package names

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidSubject is a string that is not a usable NATS subject.
	ErrInvalidSubject = errors.New("invalid NATS subject")
	// ErrInvalidTopic is a string that is not a legal Kafka topic.
	ErrInvalidTopic = errors.New("invalid Kafka topic")
)

// MaxSubjectLen bounds a rendered NATS subject. The server refuses a
// publish whose protocol line (subject, reply inbox, sizes) exceeds its
// max_control_line, 4096 bytes by default, with an error after which
// nats.go closes the connection for good: one event rendering a long
// subject would take down the bridge's shared connection. The margin
// leaves room for the JetStream reply inbox and the sizes.
const MaxSubjectLen = 4096 - 256

// PublishSubject reports whether s can be published to: non-empty, at most
// MaxSubjectLen bytes, no whitespace or control characters, no empty
// token, no wildcard token.
func PublishSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	if len(s) > MaxSubjectLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidSubject, len(s), MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w %q: whitespace or control character at offset %d", ErrInvalidSubject, s, i)
		}
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("%w %q: empty token", ErrInvalidSubject, s)
		case "*", ">":
			return fmt.Errorf("%w %q: wildcard %q cannot be published to", ErrInvalidSubject, s, tok)
		}
	}
	return nil
}

// MaxTopicLen is Kafka's limit on a topic name.
const MaxTopicLen = 249

// Topic reports whether s is a legal Kafka topic name: 1 to 249 of
// [a-zA-Z0-9._-], and not "." or "..".
func Topic(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > MaxTopicLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidTopic, len(s), MaxTopicLen)
	case s == "." || s == "..":
		return fmt.Errorf("%w %q", ErrInvalidTopic, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w %q: character %q at offset %d (allowed: letters, digits, '.', '_', '-')", ErrInvalidTopic, s, c, i)
		}
	}
	return nil
}

// SubscribeSubject reports whether s can be subscribed to, or used as a
// pattern that narrows a subscription: as PublishSubject, but the
// wildcards * (one token) and > (the last token, the rest) are allowed,
// each as a whole token. NATS reads "wiki*" as a literal token, which is
// never what a pattern means, so it is refused. There is no length limit:
// a JetStream stream's subjects and a consumer's filter travel in a
// request's payload.
func SubscribeSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w %q: whitespace or control character at offset %d", ErrInvalidSubject, s, i)
		}
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token", ErrInvalidSubject, s)
		case tok == ">" && i != len(toks)-1:
			return fmt.Errorf("%w %q: > must be the last token", ErrInvalidSubject, s)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w %q: token %q: wildcards * and > must be whole tokens", ErrInvalidSubject, s, tok)
		}
	}
	return nil
}

// JetStreamStream reports whether s can name a JetStream stream: no '.',
// '*', '>', '/', '\' or white space (the empty name is the caller's
// "required").
func JetStreamStream(s string) error {
	if strings.ContainsAny(s, ".*> \t\r\n/\\") {
		return fmt.Errorf("a JetStream stream name cannot contain '.', '*', '>', '/', '\\' or white space: %q", s)
	}
	return nil
}
