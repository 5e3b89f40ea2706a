// Package route renders the destination of a message (NATS subject, Kafka
// topic, Kafka key) from a template, and validates what it rendered.
//
// A template mixes literal text with placeholders:
//
//	{pipeline}    the pipeline name
//	{event}       the event type ("message" when the stream named none)
//	{id}          the upstream event ID (missing when the event has none)
//	{data.PATH}   a field of the event's JSON data, PATH dotted, e.g.
//	              {data.meta.domain}; a numeric segment indexes an array
//
// Values are inserted verbatim: a data value "en.wikipedia.org" in the NATS
// template "wiki.{data.meta.domain}" yields four subject tokens, which is
// usually what one wants for hierarchical subjects. Strings, numbers (exactly
// as written in the JSON) and booleans render plainly; null, an object, an
// array, an absent field or data that is not JSON make Render fail with
// ErrMissingField or ErrNotJSON, and the sink then uses its fallback or
// counts the event as unroutable.
//
// Templates are compiled once when a sink opens; rendering allocates only
// the result and, when a {data...} placeholder is used, one JSON decode per
// message shared by every template rendered through the same Env.
package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ssebridge/ssebridge/internal/names"
	"github.com/ssebridge/ssebridge/internal/tmpl"
	"github.com/ssebridge/ssebridge/sinks"
)

// Errors that callers branch on; Render and the validators wrap them with
// the detail.
var (
	// ErrSyntax is a template that cannot be compiled. It is the parser's
	// tmpl.ErrSyntax, so either name matches with errors.Is.
	ErrSyntax = tmpl.ErrSyntax
	// ErrMissingField is a placeholder with no value for this message: an
	// event without ID for {id}, or a {data.PATH} that is absent, null or
	// not a scalar.
	ErrMissingField = errors.New("route: missing field")
	// ErrNotJSON is a {data.PATH} placeholder applied to data that is not
	// JSON.
	ErrNotJSON = errors.New("route: data is not JSON")
	// ErrInvalidSubject is a rendered string that is not a publishable NATS
	// subject.
	ErrInvalidSubject = names.ErrInvalidSubject
	// ErrInvalidTopic is a rendered string that is not a legal Kafka topic.
	ErrInvalidTopic = names.ErrInvalidTopic
)

// Template is a compiled destination template. It is immutable and safe for
// concurrent use.
type Template struct {
	src      string
	parts    []tmpl.Part
	usesData bool
}

// Compile parses a template. An unknown placeholder, an unclosed or stray
// brace, or an empty data path is an ErrSyntax error naming the offset.
// The parser is internal/tmpl, which config validates with too.
func Compile(src string) (*Template, error) {
	parts, err := tmpl.Parse(src)
	if err != nil {
		return nil, err
	}
	t := &Template{src: src, parts: parts}
	for _, p := range parts {
		t.usesData = t.usesData || p.Kind == tmpl.DataPath
	}
	return t, nil
}

// MustCompile is Compile that panics on error, for templates in code.
func MustCompile(src string) *Template {
	t, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Static reports whether the template has no placeholder, so that a sink
// can validate its destination once at open time.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.Kind != tmpl.Literal {
			return false
		}
	}
	return true
}

// UsesData reports whether rendering needs the event's JSON data.
func (t *Template) UsesData() bool { return t.usesData }

// Env is one message prepared for rendering: its JSON data is decoded at
// most once however many templates render it. An Env is not safe for
// concurrent use.
type Env struct {
	msg    *sinks.Message
	parsed bool
	data   any
	err    error
}

// NewEnv prepares m for rendering.
func NewEnv(m *sinks.Message) *Env { return &Env{msg: m} }

// Reset points e at another message, reusing it.
func (e *Env) Reset(m *sinks.Message) { *e = Env{msg: m} }

func (e *Env) json() (any, error) {
	if !e.parsed {
		e.parsed = true
		dec := json.NewDecoder(bytes.NewReader(e.msg.Event.Data))
		// Numbers keep their JSON spelling: an ID like
		// 12345678901234567890 must not become 1.2345678901234567e+19.
		dec.UseNumber()
		if err := dec.Decode(&e.data); err != nil {
			e.err = fmt.Errorf("%w: %v", ErrNotJSON, err)
		} else if _, err := dec.Token(); err == nil {
			e.err = fmt.Errorf("%w: trailing data after the JSON value", ErrNotJSON)
		}
	}
	return e.data, e.err
}

// Render renders the template for m.
func (t *Template) Render(m *sinks.Message) (string, error) {
	return t.RenderEnv(NewEnv(m))
}

// RenderEnv renders the template for the message of e.
func (t *Template) RenderEnv(e *Env) (string, error) {
	if len(t.parts) == 1 && t.parts[0].Kind == tmpl.Literal {
		return t.parts[0].Lit, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.Kind {
		case tmpl.Literal:
			b.WriteString(p.Lit)
		case tmpl.Pipeline:
			b.WriteString(e.msg.Pipeline)
		case tmpl.EventType:
			b.WriteString(e.msg.Event.Type)
		case tmpl.EventID:
			if e.msg.Event.ID == "" {
				return "", fmt.Errorf("%w: {id}: the event has no ID", ErrMissingField)
			}
			b.WriteString(e.msg.Event.ID)
		case tmpl.DataPath:
			v, err := e.json()
			if err != nil {
				return "", err
			}
			s, err := lookup(v, p.Path)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		}
	}
	return b.String(), nil
}

func lookup(v any, path []string) (string, error) {
	for i, seg := range path {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return "", fmt.Errorf("%w: {data.%s}: no field %q", ErrMissingField, strings.Join(path, "."), seg)
			}
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(x) {
				return "", fmt.Errorf("%w: {data.%s}: no element %q in an array of %d", ErrMissingField, strings.Join(path, "."), seg, len(x))
			}
			v = x[n]
		default:
			return "", fmt.Errorf("%w: {data.%s}: %q is not an object", ErrMissingField, strings.Join(path, "."), strings.Join(path[:i], "."))
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "", fmt.Errorf("%w: {data.%s} is null", ErrMissingField, strings.Join(path, "."))
	default:
		return "", fmt.Errorf("%w: {data.%s} is not a string, number or boolean", ErrMissingField, strings.Join(path, "."))
	}
}

// MaxSubjectLen bounds a rendered NATS subject (see names.MaxSubjectLen).
const MaxSubjectLen = names.MaxSubjectLen

// ValidSubject reports whether s can be published to (names.PublishSubject).
func ValidSubject(s string) error { return names.PublishSubject(s) }

// MaxTopicLen is Kafka's limit on a topic name.
const MaxTopicLen = names.MaxTopicLen

// ValidTopic reports whether s is a legal Kafka topic name (names.Topic).
func ValidTopic(s string) error { return names.Topic(s) }

// Router turns a message into a destination: the template, validated, or
// else the fallback.
type Router struct {
	primary  *Template
	fallback *Template // nil: none
	validate func(string) error
}

// Decision is where a message goes.
type Decision struct {
	// Dest is the rendered, validated destination.
	Dest string
	// FellBack is the reason the primary template was not used, nil when it
	// was.
	FellBack error
}

// ErrUnroutable is returned by Route when neither the template nor the
// fallback gives a valid destination.
var ErrUnroutable = errors.New("route: unroutable")

// NewRouter compiles the template and the optional fallback (""), checking
// static ones with validate right away so a typo fails at startup.
func NewRouter(template, fallback string, validate func(string) error) (*Router, error) {
	if template == "" {
		return nil, fmt.Errorf("%w: empty template", ErrSyntax)
	}
	r := &Router{validate: validate}
	var err error
	if r.primary, err = Compile(template); err != nil {
		return nil, err
	}
	if r.primary.Static() {
		if err := validate(template); err != nil {
			return nil, err
		}
	}
	if fallback != "" {
		if r.fallback, err = Compile(fallback); err != nil {
			return nil, fmt.Errorf("fallback: %w", err)
		}
		if r.fallback.Static() {
			if err := validate(fallback); err != nil {
				return nil, fmt.Errorf("fallback: %w", err)
			}
		}
	}
	return r, nil
}

// NewSubjectRouter is NewRouter for NATS subjects.
func NewSubjectRouter(template, fallback string) (*Router, error) {
	return NewRouter(template, fallback, ValidSubject)
}

// NewTopicRouter is NewRouter for Kafka topics.
func NewTopicRouter(template, fallback string) (*Router, error) {
	return NewRouter(template, fallback, ValidTopic)
}

// Route decides the destination of the message of e. The error wraps
// ErrUnroutable and the reason(s).
func (r *Router) Route(e *Env) (Decision, error) {
	dest, err := r.try(r.primary, e)
	if err == nil {
		return Decision{Dest: dest}, nil
	}
	if r.fallback == nil {
		return Decision{}, fmt.Errorf("%w: template %q: %w", ErrUnroutable, r.primary, err)
	}
	fb, ferr := r.try(r.fallback, e)
	if ferr != nil {
		return Decision{}, fmt.Errorf("%w: template %q: %w; fallback %q: %w", ErrUnroutable, r.primary, err, r.fallback, ferr)
	}
	return Decision{Dest: fb, FellBack: err}, nil
}

func (r *Router) try(t *Template, e *Env) (string, error) {
	s, err := t.RenderEnv(e)
	if err != nil {
		return "", err
	}
	if err := r.validate(s); err != nil {
		return "", err
	}
	return s, nil
}
