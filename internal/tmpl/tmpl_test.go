package tmpl

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	parts, err := Parse("wiki.{pipeline}.{event}.{id}.{data.meta.domain}!")
	if err != nil {
		t.Fatal(err)
	}
	want := []Part{
		{Kind: Literal, Lit: "wiki."}, {Kind: Pipeline}, {Kind: Literal, Lit: "."},
		{Kind: EventType}, {Kind: Literal, Lit: "."}, {Kind: EventID}, {Kind: Literal, Lit: "."},
		{Kind: DataPath, Path: []string{"meta", "domain"}}, {Kind: Literal, Lit: "!"},
	}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("Parse = %+v\nwant %+v", parts, want)
	}
	if parts, err := Parse(""); err != nil || len(parts) != 0 {
		t.Errorf(`Parse("") = %v, %v`, parts, err)
	}
}

// Callers branch on the Problem and report Name, so both must be right.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		src     string
		problem Problem
		offset  int
		name    string
	}{
		{"a}", StrayBrace, 1, ""},
		{"a.{pipeline", UnclosedBrace, 2, ""},
		{"x{type}", UnknownPlaceholder, 1, "type"},
		{"{data}", UnknownPlaceholder, 0, "data"},
		{"{data.a..b}", BadDataPath, 0, "data.a..b"},
		{"{data.a{b}", BadDataPath, 0, "data.a{b"},
	} {
		_, err := Parse(tc.src)
		var te *Error
		if !errors.Is(err, ErrSyntax) || !errors.As(err, &te) {
			t.Errorf("Parse(%q) = %v, want an *Error wrapping ErrSyntax", tc.src, err)
			continue
		}
		if te.Problem != tc.problem || te.Offset != tc.offset || te.Name != tc.name || te.Src != tc.src {
			t.Errorf("Parse(%q) = %+v, want problem %d at %d name %q", tc.src, *te, tc.problem, tc.offset, tc.name)
		}
	}
}
