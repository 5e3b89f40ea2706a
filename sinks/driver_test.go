package sinks

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

type testOptions struct {
	Name  string `yaml:"name"`
	Count int    `yaml:"count"`
}

type nopSink struct{ opts testOptions }

func (nopSink) Write(_ context.Context, msgs []Message) (int, error) { return len(msgs), nil }
func (nopSink) Close() error                                         { return nil }

// registerOnce keeps the test repeatable (-count): a name registers once
// per process.
var registerOnce sync.Once

func TestRegistry(t *testing.T) {
	registerOnce.Do(registerTestDriver)
	r, ok := Lookup("registry-test")
	if !ok || r.Name() != "registry-test" || r.Shared() != "nats" || r.OptionsType() != reflect.TypeFor[testOptions]() {
		t.Fatalf("Lookup = %+v, %v", r, ok)
	}
	if !slices.Contains(Drivers(), "registry-test") {
		t.Errorf("Drivers() = %v", Drivers())
	}

	var block yaml.Node
	if err := yaml.Unmarshal([]byte("{name: c, count: -1}"), &block); err != nil {
		t.Fatal(err)
	}
	opts, err := r.Decode(block.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	r.Check(opts, func(key, msg string) { got = append(got, key+": "+msg) })
	want := []string{"count: must not be negative", `name: must be one of a, b, got "c"`}
	if !slices.Equal(got, want) {
		t.Errorf("Check reported %q, want %q", got, want)
	}

	s, err := Open(t.Context(), Deps{}, "p", "registry-test", block.Content[0])
	if err != nil || s.(nopSink).opts != (testOptions{Name: "c", Count: -1}) {
		t.Errorf("Open = %+v, %v", s, err)
	}
	if s, err := Open(t.Context(), Deps{}, "p", "registry-test", nil); err != nil || s.(nopSink).opts != (testOptions{}) {
		t.Errorf("Open with no block = %+v, %v", s, err)
	}
	if _, err := Open(t.Context(), Deps{}, "p", "no-such-driver", nil); err == nil {
		t.Error("Open of an unknown driver succeeded")
	}

	for name, register := range map[string]func(){
		"twice": func() {
			Register("registry-test", Driver[testOptions]{Open: func(context.Context, Deps, string, testOptions) (Sink, error) { return nil, nil }})
		},
		"no Open": func() { Register("registry-no-open", Driver[testOptions]{}) },
		"not a struct": func() {
			Register("registry-int", Driver[int]{Open: func(context.Context, Deps, string, int) (Sink, error) { return nil, nil }})
		},
		"dotted name": func() {
			Register("a.b", Driver[testOptions]{Open: func(context.Context, Deps, string, testOptions) (Sink, error) { return nil, nil }})
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register (%s) did not panic", name)
				}
			}()
			register()
		}()
	}
}

func registerTestDriver() {
	Register("registry-test", Driver[testOptions]{
		Shared: "nats",
		Check: func(o *testOptions, p Problems) {
			p.NonNegative("count", int64(o.Count))
			p.OneOf("name", o.Name, "a", "b")
		},
		Open: func(_ context.Context, _ Deps, _ string, o testOptions) (Sink, error) { return nopSink{o}, nil },
	})
}
