package sse

import "unicode/utf8"

// appendValidUTF8 appends b to dst with each maximal subpart of an
// ill-formed sequence replaced by one U+FFFD. That is the WHATWG UTF-8
// decoder's rule (and Unicode's recommended practice), which differs from
// utf8.DecodeRune's one replacement per byte: "\xE2\x82A" is "\uFFFDA" here,
// not "\uFFFD\uFFFDA".
func appendValidUTF8(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[i:i+size]...)
			i += size
			continue
		}
		dst = append(dst, "\uFFFD"...)
		i += invalidLen(b[i:])
	}
	return dst
}

// invalidLen returns the length of the maximal subpart starting at b[0],
// which is known not to begin a valid sequence: the lead byte plus the
// continuation bytes that could still have completed it.
func invalidLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c >= 0xE0 && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
	case c >= 0xF0 && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
	default:
		return 1 // not a lead byte at all
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
