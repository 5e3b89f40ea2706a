package route

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ssebridge/ssebridge/internal/names"
	"github.com/ssebridge/ssebridge/internal/tmpl"
)

// This file checks templates before a sink opens, for the configuration's
// errors: exactly what Compile accepts (both parse with internal/tmpl),
// worded for someone editing the file.

// Check reports why src is not a template Compile accepts, or nil.
// Unbalanced braces anywhere take precedence over the first unknown
// placeholder.
func Check(src string) error {
	_, err := parse(src)
	return err
}

// CheckSubject is Check plus the NATS publish-subject rule
// (names.PublishSubject) applied to the literal text, each placeholder
// standing for one token.
func CheckSubject(src string) error {
	parts, err := parse(src)
	if err != nil {
		return err
	}
	return names.PublishSubject(sample(parts))
}

// CheckTopic is Check plus the Kafka topic rule (names.Topic) applied to
// the literal text, each placeholder standing for one character.
func CheckTopic(src string) error {
	parts, err := parse(src)
	if err != nil {
		return err
	}
	return names.Topic(sample(parts))
}

// parse parses src with the parser Compile uses and words its errors the
// way configuration problems are reported.
func parse(src string) ([]tmpl.Part, error) {
	parts, err := tmpl.Parse(src)
	if err == nil {
		return parts, nil
	}
	var first *tmpl.Error
	for rest := src; err != nil; {
		var te *tmpl.Error
		switch {
		case !errors.As(err, &te):
			return nil, fmt.Errorf("template %q: %w", src, err)
		case te.Problem == tmpl.StrayBrace, te.Problem == tmpl.UnclosedBrace, strings.Contains(te.Name, "{"):
			// A '{' inside a placeholder is a brace opened twice.
			return nil, fmt.Errorf("unbalanced { } in %q", src)
		}
		if first == nil {
			first = te
		}
		// Parse stops at the first problem and keeps no state across a
		// placeholder, so parsing what follows the bad one looks on for
		// an unbalanced brace.
		rest = rest[te.Offset+len(te.Name)+2:]
		_, err = tmpl.Parse(rest)
	}
	return nil, fmt.Errorf("unknown placeholder {%s} in %q (use {pipeline}, {event}, {id} or {data.FIELD})", first.Name, src)
}

// sample renders parts with "x" for each placeholder, so the rest of a
// template can be checked like a literal name.
func sample(parts []tmpl.Part) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Kind == tmpl.Literal {
			b.WriteString(p.Lit)
		} else {
			b.WriteString("x")
		}
	}
	return b.String()
}
