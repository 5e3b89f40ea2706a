package sse

import (
	"encoding/binary"
	"unicode/utf8"
)

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

// The UTF-8 validator is a shift-based DFA: a state is a bit offset, and
// the row of a byte holds every state's successor at that state's offset,
// so one step is a table load (independent of the state) and one shift.
// That makes the state chain one instruction per byte, where
// utf8.Valid's branches on every multi-byte sequence mispredict on text
// mixing scripts. The error state is 0: a row's unset fields lead there,
// and it leads only to itself.
const (
	dfaError  = 0
	dfaAccept = 6  // between sequences
	dfaTail1  = 12 // one continuation byte left
	dfaTail2  = 18 // two left
	dfaE0     = 24 // after E0: A0..BF, then one more
	dfaED     = 30 // after ED: 80..9F (no surrogates), then one more
	dfaTail3  = 36 // three left
	dfaF0     = 42 // after F0: 90..BF, then two more
	dfaF4     = 48 // after F4: 80..8F (up to U+10FFFF), then two more
)

// utf8DFA is the transition table, one row per byte value.
var utf8DFA = func() (t [256]uint64) {
	set := func(lo, hi int, from, to uint64) {
		for b := lo; b <= hi; b++ {
			t[b] |= to << from
		}
	}
	set(0x00, 0x7F, dfaAccept, dfaAccept)
	set(0xC2, 0xDF, dfaAccept, dfaTail1)
	set(0xE0, 0xE0, dfaAccept, dfaE0)
	set(0xE1, 0xEC, dfaAccept, dfaTail2)
	set(0xED, 0xED, dfaAccept, dfaED)
	set(0xEE, 0xEF, dfaAccept, dfaTail2)
	set(0xF0, 0xF0, dfaAccept, dfaF0)
	set(0xF1, 0xF3, dfaAccept, dfaTail3)
	set(0xF4, 0xF4, dfaAccept, dfaF4)
	set(0x80, 0xBF, dfaTail1, dfaAccept)
	set(0x80, 0xBF, dfaTail2, dfaTail1)
	set(0xA0, 0xBF, dfaE0, dfaTail1)
	set(0x80, 0x9F, dfaED, dfaTail1)
	set(0x80, 0xBF, dfaTail3, dfaTail2)
	set(0x90, 0xBF, dfaF0, dfaTail2)
	set(0x80, 0x8F, dfaF4, dfaTail2)
	return t
}()

// utf8State runs the validator over b from state s and returns the state
// after it: dfaAccept when b ends between sequences with all valid so far,
// dfaError once anything was invalid, otherwise inside a sequence.
// Between sequences, 32-byte blocks of ASCII are skipped with word tests.
func utf8State(s uint64, b []byte) uint64 {
	const highs = 0x8080808080808080
	if s == dfaAccept {
		// Most streams are mostly ASCII: skip 64-byte blocks of it first.
		for len(b) >= 64 {
			c := b[:64:64]
			w := binary.LittleEndian.Uint64(c) | binary.LittleEndian.Uint64(c[8:]) |
				binary.LittleEndian.Uint64(c[16:]) | binary.LittleEndian.Uint64(c[24:]) |
				binary.LittleEndian.Uint64(c[32:]) | binary.LittleEndian.Uint64(c[40:]) |
				binary.LittleEndian.Uint64(c[48:]) | binary.LittleEndian.Uint64(c[56:])
			if w&highs != 0 {
				break
			}
			b = b[64:]
		}
	}
	for len(b) >= 32 {
		if s == dfaAccept {
			w := binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
				binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
			if w&highs == 0 {
				b = b[32:]
				continue
			}
		}
		for k := 0; k < 32; k += 8 {
			c := b[k : k+8 : k+8]
			s = utf8DFA[c[0]] >> (s & 63)
			s = utf8DFA[c[1]] >> (s & 63)
			s = utf8DFA[c[2]] >> (s & 63)
			s = utf8DFA[c[3]] >> (s & 63)
			s = utf8DFA[c[4]] >> (s & 63)
			s = utf8DFA[c[5]] >> (s & 63)
			s = utf8DFA[c[6]] >> (s & 63)
			s = utf8DFA[c[7]] >> (s & 63)
		}
		s &= 63
		if s == dfaError {
			return dfaError
		}
		b = b[32:]
	}
	for _, c := range b {
		s = utf8DFA[c] >> (s & 63)
	}
	return s & 63
}

// validUTF8Fast reports whether b is valid UTF-8, as utf8.Valid does.
func validUTF8Fast(b []byte) bool {
	return utf8State(dfaAccept, b) == dfaAccept
}
