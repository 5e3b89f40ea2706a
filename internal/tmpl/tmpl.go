// Package tmpl parses destination templates (NATS subject, Kafka topic,
// Kafka key): literal text mixed with {pipeline}, {event}, {id} and
// {data.PATH} placeholders.
//
// It is the one parser behind both sinks/route, which renders templates,
// and bridge/config, which checks them when a file is loaded, so that a
// configuration that validates always compiles at startup. It depends on
// nothing else in the module: bridge/config cannot import sinks/route,
// which imports sinks, which imports bridge/config.
package tmpl

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is a template that cannot be parsed. Every Parse error wraps
// it; sinks/route exports the same value as route.ErrSyntax.
var ErrSyntax = errors.New("route: bad template")

// Kind is what a Part stands for.
type Kind uint8

// The kinds of Part.
const (
	// Literal is text copied as is (Part.Lit).
	Literal Kind = iota
	// Pipeline is {pipeline}, the pipeline name.
	Pipeline
	// EventType is {event}, the event type.
	EventType
	// EventID is {id}, the upstream event ID.
	EventID
	// DataPath is {data.PATH}, a field of the event's JSON data
	// (Part.Path).
	DataPath
)

// Part is one piece of a parsed template.
type Part struct {
	// Kind says what the part stands for.
	Kind Kind
	// Lit is the text of a Literal part; adjacent literal text is one part.
	Lit string
	// Path holds the non-empty, dot-separated segments of a DataPath part.
	Path []string
}

// Problem is what made a template fail to parse.
type Problem uint8

// The problems Parse reports.
const (
	// StrayBrace is a '}' that closes nothing.
	StrayBrace Problem = iota + 1
	// UnclosedBrace is a '{' with no '}' after it.
	UnclosedBrace
	// UnknownPlaceholder is a {NAME} that is none of the known ones.
	UnknownPlaceholder
	// BadDataPath is a {data.PATH} with an empty segment or a '{' in it.
	BadDataPath
)

// Error is a Parse failure. It wraps ErrSyntax.
type Error struct {
	// Src is the whole template.
	Src string
	// Offset is the byte offset of the offending brace or placeholder.
	Offset int
	// Problem says what is wrong.
	Problem Problem
	// Name is the text between the braces for UnknownPlaceholder and
	// BadDataPath, "" otherwise.
	Name string
}

// Error describes the problem with the template and where it is.
func (e *Error) Error() string {
	switch e.Problem {
	case StrayBrace:
		return fmt.Sprintf("%v %q: stray '}' at offset %d", ErrSyntax, e.Src, e.Offset)
	case UnclosedBrace:
		return fmt.Sprintf("%v %q: unclosed '{' at offset %d", ErrSyntax, e.Src, e.Offset)
	case BadDataPath:
		return fmt.Sprintf("%v %q: placeholder at offset %d: bad data path %q", ErrSyntax, e.Src, e.Offset, strings.TrimPrefix(e.Name, "data."))
	default:
		return fmt.Sprintf("%v %q: placeholder at offset %d: unknown placeholder {%s} (want {pipeline}, {event}, {id} or {data.PATH})", ErrSyntax, e.Src, e.Offset, e.Name)
	}
}

// Unwrap returns ErrSyntax, so that errors.Is(err, ErrSyntax) holds.
func (e *Error) Unwrap() error { return ErrSyntax }

// Parse splits src into parts. An unknown placeholder, an unclosed or stray
// brace, or an empty data path segment is an *Error. The empty template
// has no parts.
func Parse(src string) ([]Part, error) {
	var parts []Part
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, Part{Kind: Literal, Lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case '}':
			return nil, &Error{Src: src, Offset: i, Problem: StrayBrace}
		case '{':
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return nil, &Error{Src: src, Offset: i, Problem: UnclosedBrace}
			}
			name := src[i+1 : i+end]
			p, problem := parsePlaceholder(name)
			if problem != 0 {
				return nil, &Error{Src: src, Offset: i, Problem: problem, Name: name}
			}
			flush()
			parts = append(parts, p)
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return parts, nil
}

// parsePlaceholder parses the text between braces, which holds no '}'.
func parsePlaceholder(name string) (Part, Problem) {
	switch name {
	case "pipeline":
		return Part{Kind: Pipeline}, 0
	case "event":
		return Part{Kind: EventType}, 0
	case "id":
		return Part{Kind: EventID}, 0
	}
	rest, ok := strings.CutPrefix(name, "data.")
	if !ok {
		return Part{}, UnknownPlaceholder
	}
	segs := strings.Split(rest, ".")
	for _, s := range segs {
		if s == "" || strings.ContainsAny(s, "{") {
			return Part{}, BadDataPath
		}
	}
	return Part{Kind: DataPath, Path: segs}, 0
}
