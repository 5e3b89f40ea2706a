package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid matches (with errors.Is) every error Parse, Load and Validate
// return for a configuration that is wrong, as opposed to one that could not
// be read at all.
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in a configuration, located by file, line and key.
type Error struct {
	// File is the configuration's path; "" for a Config built in code.
	File string
	// Line is 1-based; 0 when unknown (a Config built in code).
	Line int
	// Key is the dotted path of the value, like
	// "pipelines[1].source.retry.initial".
	Key string
	// Msg says what is wrong. It never contains the value of an environment
	// variable, which may be a secret.
	Msg string

	// causes are keys whose own problem would explain this one (a sink
	// "not configured" because nats.url had a bad value): when one of them
	// was already reported, this follow-on error is dropped.
	causes []string
}

// Error formats the problem as FILE:LINE: key: message, leaving out the
// location when it is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" && e.Line > 0 {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes every *Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Errors is every problem found in a configuration, in file order. Callers
// get at it with errors.As.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Is makes Errors match ErrInvalid.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
