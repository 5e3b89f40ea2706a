package httptoken

import "testing"

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"GET": true, "X-Custom_Header": true, "!#$%&'*+-.^_`|~09azAZ": true,
		"": false, "has space": false, "colon:": false, "quote\"": false, "tab\t": false, "é": false, "(paren)": false,
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}
