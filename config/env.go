package config

import (
	"fmt"
	"strings"
)

// Lookup finds an environment variable; os.LookupEnv in production, a map in
// tests.
type Lookup func(name string) (value string, ok bool)

// expand replaces ${VAR} and ${VAR:-default} in s with values from lookup;
// $$ is a literal dollar and a $ followed by anything else stays as it is.
// ${VAR:-default} uses default when VAR is unset or empty, like the shell,
// and the default may itself hold references (${A:-${B:-x}}), expanded only
// when it is used.
//
// Error messages name variables, never their values: a value may be a
// secret.
func expand(s string, lookup Lookup) (out string, expanded bool, err error) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			expanded = true
		case '{':
			end := closingBrace(s[i+2:])
			if end < 0 {
				return "", false, fmt.Errorf("unterminated ${ (write $$ for a literal dollar)")
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validEnvName(name) {
				return "", false, fmt.Errorf("invalid environment variable name %q in ${%s}", name, name)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && (!ok || v == ""):
				if v, _, err = expand(def, lookup); err != nil {
					return "", false, fmt.Errorf("default of ${%s}: %w", name, err)
				}
			case !ok:
				return "", false, fmt.Errorf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
			}
			b.WriteString(v)
			i += 2 + end
			expanded = true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), expanded, nil
}

// closingBrace returns the index in s of the } that closes a ${ whose body
// starts s, skipping nested ${...} and $$, or -1 when there is none.
func closingBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '$':
			i++
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			depth++
			i++
		case s[i] == '}':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

// validEnvName accepts the portable shell variable names: a letter or
// underscore, then letters, digits and underscores.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
