package sinks

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Driver is what a sink driver registers. O is its options: a struct whose
// yaml tags are the keys of the driver's block in a pipeline's sink, and
// whose zero fields stand for the driver's defaults (applied by Open, in
// one place in the driver).
type Driver[O any] struct {
	// Shared names the bridge-wide connection the driver publishes
	// through: the top-level block of that name ("nats" or "kafka"),
	// handed to Open in Deps. The configuration reports a sink whose
	// shared connection is not configured. "" when the driver's own block
	// says everything it needs.
	Shared string
	// Check reports every problem of opts to p, each under its key
	// relative to the driver's block ("subject", "stream.name"). The
	// configuration calls it after opts decoded without error; values
	// of the wrong type or unknown keys never reach it. Optional.
	Check func(opts *O, p Problems)
	// Open opens a sink for pipeline. It must not be nil.
	Open func(ctx context.Context, deps Deps, pipeline string, opts O) (Sink, error)
}

// Problems receives the problems a driver's Check finds: key is relative
// to the driver's block, msg says what is wrong (never a secret's value).
// The configuration turns each into a FILE:LINE: key: message error.
type Problems func(key, msg string)

// Add reports a problem at key.
func (p Problems) Add(key, format string, args ...any) { p(key, fmt.Sprintf(format, args...)) }

// NonNegative reports n < 0 at key.
func (p Problems) NonNegative(key string, n int64) {
	if n < 0 {
		p(key, "must not be negative")
	}
}

// OneOf reports a value that is none of allowed; "" stands for the
// default and is accepted.
func (p Problems) OneOf(key, value string, allowed ...string) {
	if value != "" && !slices.Contains(allowed, value) {
		p.Add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

// Registered is a driver as the configuration and the runner use it,
// without its options type parameter.
type Registered struct {
	name       string
	shared     string
	optionsTyp reflect.Type
	check      func(opts any, p Problems)
	open       func(ctx context.Context, deps Deps, pipeline string, opts any) (Sink, error)
}

// Name is the name the driver registered under.
func (r *Registered) Name() string { return r.name }

// Shared is the driver's Driver.Shared.
func (r *Registered) Shared() string { return r.shared }

// OptionsType is the driver's options type (a struct), which its block
// decodes into.
func (r *Registered) OptionsType() reflect.Type { return r.optionsTyp }

// Decode decodes block (nil: an empty block) into a new value of the
// driver's options and returns a pointer to it. It does not check the
// values: see Check.
func (r *Registered) Decode(block *yaml.Node) (any, error) {
	opts := reflect.New(r.optionsTyp).Interface()
	if block != nil {
		if err := block.Decode(opts); err != nil {
			return nil, fmt.Errorf("sink %s: %w", r.name, err)
		}
	}
	return opts, nil
}

// Check runs the driver's Check on opts, a pointer Decode returned.
func (r *Registered) Check(opts any, p Problems) {
	if r.check != nil {
		r.check(opts, p)
	}
}

var (
	driversMu sync.RWMutex
	drivers   = map[string]*Registered{}
)

// Register makes a driver available under name, the key of its block in a
// pipeline's sink. It panics when name is registered twice or d has no
// Open, since those are programming errors, not runtime conditions.
func Register[O any](name string, d Driver[O]) {
	t := reflect.TypeFor[O]()
	switch {
	case d.Open == nil:
		panic("sinks: Register " + name + ": Open is nil")
	case t.Kind() != reflect.Struct:
		panic("sinks: Register " + name + ": options must be a struct, not " + t.String())
	case name == "" || strings.ContainsAny(name, ". []"):
		panic(fmt.Sprintf("sinks: Register: %q is not a driver name", name))
	}
	r := &Registered{
		name:       name,
		shared:     d.Shared,
		optionsTyp: t,
		open: func(ctx context.Context, deps Deps, pipeline string, opts any) (Sink, error) {
			return d.Open(ctx, deps, pipeline, *opts.(*O))
		},
	}
	if d.Check != nil {
		r.check = func(opts any, p Problems) { d.Check(opts.(*O), p) }
	}
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("sinks: Register called twice for driver " + name)
	}
	drivers[name] = r
}

// Lookup returns the driver registered as name.
func Lookup(name string) (*Registered, bool) {
	driversMu.RLock()
	defer driversMu.RUnlock()
	r, ok := drivers[name]
	return r, ok
}

// Drivers lists the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open decodes block with the driver registered as kind and opens a sink
// for pipeline. The configuration has checked block already.
func Open(ctx context.Context, deps Deps, pipeline, kind string, block *yaml.Node) (Sink, error) {
	r, ok := Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("pipeline %q: sink %q: no such driver (have %s)", pipeline, kind, strings.Join(Drivers(), ", "))
	}
	opts, err := r.Decode(block)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", pipeline, err)
	}
	s, err := r.open(ctx, deps, pipeline, opts)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: sink %s: %w", pipeline, kind, err)
	}
	return s, nil
}
