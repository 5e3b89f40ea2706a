// Package httptoken holds the one RFC 9110 token check that the YAML
// validation and the source worker share, so that a method or header name
// accepted by one is accepted by the other.
package httptoken

import "strings"

// Valid reports whether s is an RFC 9110 token, as HTTP methods and header
// names must be.
func Valid(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
