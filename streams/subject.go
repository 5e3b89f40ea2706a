package streams

import "strings"

// NATS subjects are dot-separated tokens; "*" matches exactly one token and
// ">" (last token only) matches one or more. These helpers implement just
// enough of that grammar to narrow a stream to part of its subject space.
// They take patterns that names.SubscribeSubject accepts (Config.Check
// and parseRequest see to it).

// subjectWithin reports whether every subject matched by pattern sub is also
// matched by pattern outer, i.e. whether sub narrows outer.
func subjectWithin(sub, outer string) bool {
	s := strings.Split(sub, ".")
	o := strings.Split(outer, ".")
	for i, ot := range o {
		if ot == ">" {
			// ">" needs at least one more token, which sub has if it
			// has any token left (">" and "*" included).
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		st := s[i]
		switch {
		case ot == "*":
			if st == ">" {
				return false // ">" spans several tokens, "*" only one
			}
		case st != ot:
			return false
		}
	}
	return len(s) == len(o)
}

// subjectMatches reports whether the literal subject subj matches pattern.
func subjectMatches(pattern, subj string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subj, ".")
		switch pt {
		case ">":
			return true
		case "*":
		default:
			if pt != st {
				return false
			}
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subj = prest, srest
	}
}

// subjectsOverlap reports whether some literal subject matches both
// patterns a and b.
func subjectsOverlap(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		switch {
		case as[i] == ">" || bs[i] == ">":
			return true // both have a token here, the rest is free
		case as[i] == "*" || bs[i] == "*" || as[i] == bs[i]:
		default:
			return false
		}
	}
	return len(as) == len(bs)
}
