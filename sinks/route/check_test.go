package route

import "testing"

// The configuration accepts exactly the placeholders Compile compiles, so
// a file that validates never fails to compile its templates at startup.
func TestCheckAgreesWithCompile(t *testing.T) {
	for _, ok := range []string{"wiki", "wiki.{event}", "{pipeline}.{id}", "w.{data.meta.domain}", "{data.$schema}", "{data.items.0}"} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v", ok, err)
		}
		if _, err := Compile(ok); err != nil {
			t.Errorf("Compile(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"{type}", "{data.}", "{data}", "{data..x}", "a{", "a}", "{{id}}", "{ID}"} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%q) accepted", bad)
		}
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) accepted", bad)
		}
	}
	for src, want := range map[string]string{
		"a.{type}.{": `unbalanced { } in "a.{type}.{"`,
		"a.{type}.b": `unknown placeholder {type} in "a.{type}.b" (use {pipeline}, {event}, {id} or {data.FIELD})`,
		"wiki.>":     `invalid NATS subject "wiki.>": wildcard ">" cannot be published to`,
		"wiki..{id}": `invalid NATS subject "wiki..x": empty token`,
		"{event} x":  `invalid NATS subject "x x": whitespace or control character at offset 1`,
	} {
		if err := CheckSubject(src); err == nil || err.Error() != want {
			t.Errorf("CheckSubject(%q) = %v, want %s", src, err, want)
		}
	}
	if err := CheckTopic("{event}.ok"); err != nil {
		t.Errorf("CheckTopic = %v", err)
	}
	if err := CheckTopic("{event} no"); err == nil {
		t.Error("CheckTopic accepted a space")
	}
}
