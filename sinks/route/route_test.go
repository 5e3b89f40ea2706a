package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

func msg(id, typ, data string) *sinks.Message {
	return &sinks.Message{Pipeline: "wiki", Event: sse.Event{ID: id, Type: typ, Data: []byte(data)}}
}

const wikiData = `{"meta":{"domain":"en.wikipedia.org","id":12345678901234567890},"bot":false,"rev":{"len":1.50},"tags":["a","b"],"none":null,"obj":{},"sp":"has space"}`

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		m    *sinks.Message
		want string
		err  error
	}{
		{"static.subject", msg("", "message", "not json"), "static.subject", nil},
		{"{pipeline}.{event}", msg("", "edit", ""), "wiki.edit", nil},
		{"p-{pipeline}-{id}", msg("42", "message", ""), "p-wiki-42", nil},
		{"{id}", msg("", "message", ""), "", ErrMissingField},
		{"wiki.{data.meta.domain}", msg("1", "message", wikiData), "wiki.en.wikipedia.org", nil},
		// Big integers keep their exact spelling, floats their digits.
		{"{data.meta.id}", msg("1", "message", wikiData), "12345678901234567890", nil},
		{"{data.rev.len}", msg("1", "message", wikiData), "1.50", nil},
		{"bot.{data.bot}", msg("1", "message", wikiData), "bot.false", nil},
		{"{data.tags.1}", msg("1", "message", wikiData), "b", nil},
		{"{data.tags.2}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.tags.x}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.meta.nope}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.bot.deeper}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.none}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.obj}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.tags}", msg("1", "message", wikiData), "", ErrMissingField},
		{"{data.a}", msg("1", "message", "plain text"), "", ErrNotJSON},
		{"{data.a}", msg("1", "message", `{"a":1} {"a":2}`), "", ErrNotJSON},
		{"{data.a}", msg("1", "message", ""), "", ErrNotJSON},
		{"{data.a}", msg("1", "message", `"string"`), "", ErrMissingField},
		{"x.{data.a.b}", msg("1", "message", "{\"a\":{\"b\":\"\u00e9t\u00e9\"}}\n"), "x.\u00e9t\u00e9", nil},
	} {
		tm, err := Compile(tc.tmpl)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.tmpl, err)
		}
		got, err := tm.Render(tc.m)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("Render(%q, %q) = %q, %v; want %q, %v", tc.tmpl, tc.m.Event.Data, got, err, tc.want, tc.err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, src := range []string{"{", "a.{pipeline", "a}", "{unknown}", "{data}", "{data.}", "{data.a..b}", "{}", "{Pipeline}", "{data.a{b}"} {
		if _, err := Compile(src); !errors.Is(err, ErrSyntax) {
			t.Errorf("Compile(%q) err = %v, want ErrSyntax", src, err)
		}
	}
}

func TestEnvDecodesOnce(t *testing.T) {
	m := msg("1", "message", `{"a":"x","b":"y"}`)
	e := NewEnv(m)
	a, b := MustCompile("{data.a}"), MustCompile("{data.b}")
	if s, _ := a.RenderEnv(e); s != "x" {
		t.Fatalf("a = %q", s)
	}
	// Changing the data after the first render proves the parse is reused.
	m.Event.Data = []byte(`not json`)
	if s, err := b.RenderEnv(e); s != "y" || err != nil {
		t.Fatalf("b = %q, %v; want the cached parse", s, err)
	}
	e.Reset(m)
	if _, err := b.RenderEnv(e); !errors.Is(err, ErrNotJSON) {
		t.Fatalf("after Reset err = %v, want ErrNotJSON", err)
	}
}

func TestValidSubject(t *testing.T) {
	for s, ok := range map[string]bool{
		"a": true, "a.b.c": true, "wiki.en.wikipedia.org": true, "a-b_c:d": true, "a*b": true, "\u00e9t\u00e9": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a\tb": false, "a\nb": false, "a\x00b": false,
		"a.*": false, "a.>": false, ">": false, "*.b": false, "a\x7f": false,
	} {
		err := ValidSubject(s)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalidSubject)) {
			t.Errorf("ValidSubject(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}

func TestValidTopic(t *testing.T) {
	for s, ok := range map[string]bool{
		"a": true, "wiki.edits": true, "A-b_c.9": true, strings.Repeat("x", 249): true, "...": true,
		"": false, ".": false, "..": false, strings.Repeat("x", 250): false, "a b": false, "a/b": false, "a:b": false, "\u00e9": false,
	} {
		err := ValidTopic(s)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalidTopic)) {
			t.Errorf("ValidTopic(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}

func TestRouter(t *testing.T) {
	if _, err := NewSubjectRouter("bad subject", ""); !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("static invalid template accepted: %v", err)
	}
	if _, err := NewTopicRouter("ok", "bad/fallback"); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("static invalid fallback accepted: %v", err)
	}
	if _, err := NewTopicRouter("", ""); !errors.Is(err, ErrSyntax) {
		t.Fatalf("empty template accepted: %v", err)
	}

	r, err := NewSubjectRouter("wiki.{data.meta.domain}", "wiki.unroutable")
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Route(NewEnv(msg("1", "message", wikiData)))
	if err != nil || d.Dest != "wiki.en.wikipedia.org" || d.FellBack != nil {
		t.Fatalf("Route = %+v, %v", d, err)
	}
	d, err = r.Route(NewEnv(msg("1", "message", `{"meta":{}}`)))
	if err != nil || d.Dest != "wiki.unroutable" || !errors.Is(d.FellBack, ErrMissingField) {
		t.Fatalf("missing field: Route = %+v, %v; want fallback", d, err)
	}
	// A rendered value that makes the subject invalid also falls back.
	d, err = r.Route(NewEnv(msg("1", "message", `{"meta":{"domain":"a b"}}`)))
	if err != nil || d.Dest != "wiki.unroutable" || !errors.Is(d.FellBack, ErrInvalidSubject) {
		t.Fatalf("invalid render: Route = %+v, %v; want fallback", d, err)
	}

	r, _ = NewTopicRouter("t-{data.k}", "")
	if _, err := r.Route(NewEnv(msg("1", "message", `{"k":"a/b"}`))); !errors.Is(err, ErrUnroutable) || !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("no fallback: err = %v, want ErrUnroutable wrapping ErrInvalidTopic", err)
	}
	r, _ = NewTopicRouter("t-{data.k}", "fb-{id}")
	if _, err := r.Route(NewEnv(msg("", "message", `{}`))); !errors.Is(err, ErrUnroutable) {
		t.Fatalf("failing fallback: err = %v, want ErrUnroutable", err)
	}
}

// FuzzCompileRender checks that no template or data crashes rendering, that
// a compiled template remembers its source, and that whatever a router
// accepts is valid.
func FuzzCompileRender(f *testing.F) {
	f.Add("wiki.{data.meta.domain}", []byte(wikiData), "7")
	f.Add("{pipeline}.{event}.{id}", []byte("x"), "")
	f.Add("{data.a.0.b}", []byte(`{"a":[{"b":true}]}`), "1")
	f.Add("{", []byte("{"), "}")
	f.Fuzz(func(t *testing.T, tmpl string, data []byte, id string) {
		tm, err := Compile(tmpl)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Compile error not ErrSyntax: %v", err)
			}
			return
		}
		if tm.String() != tmpl {
			t.Fatalf("String() = %q, want %q", tm.String(), tmpl)
		}
		m := &sinks.Message{Pipeline: "p", Event: sse.Event{ID: id, Type: "message", Data: data}}
		if _, err := tm.Render(m); err != nil && !errors.Is(err, ErrMissingField) && !errors.Is(err, ErrNotJSON) {
			t.Fatalf("Render error of unexpected kind: %v", err)
		}
		for _, v := range []func(string) error{ValidSubject, ValidTopic} {
			r, err := NewRouter(tmpl, "", v)
			if err != nil {
				continue
			}
			if d, err := r.Route(NewEnv(m)); err == nil && v(d.Dest) != nil {
				t.Fatalf("Route accepted invalid destination %q", d.Dest)
			}
		}
	})
}
