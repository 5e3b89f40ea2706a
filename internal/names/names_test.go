package names

import (
	"errors"
	"strings"
	"testing"
)

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		s        string
		pub, sub bool
	}{
		{"wiki.edit", true, true},
		{"wiki.*", false, true},
		{"wiki.>", false, true},
		{"wiki.>.x", false, false},
		{"wiki..edit", false, false},
		{"", false, false},
		{"wiki edit", false, false},
		{"wiki.\x7f", false, false},
		{"wiki\t", false, false},
		{".wiki", false, false},
		{"wiki.", false, false},
		{"wiki*", true, false},
		{"wiki.*x", true, false},
		{"wiki.a>", true, false},
		{"*.>", false, true},
		{">", false, true},
		{strings.Repeat("a", MaxSubjectLen+1), false, true},
	} {
		if err := PublishSubject(tc.s); (err == nil) != tc.pub || (err != nil && !errors.Is(err, ErrInvalidSubject)) {
			t.Errorf("PublishSubject(%.20q) = %v, want ok %v", tc.s, err, tc.pub)
		}
		if err := SubscribeSubject(tc.s); (err == nil) != tc.sub || (err != nil && !errors.Is(err, ErrInvalidSubject)) {
			t.Errorf("SubscribeSubject(%.20q) = %v, want ok %v", tc.s, err, tc.sub)
		}
	}
}

func TestTopic(t *testing.T) {
	for s, ok := range map[string]bool{
		"wikimedia.recentchange": true, "a_b-c": true, "": false, ".": false, "..": false,
		"has space": false, "a/b": false, strings.Repeat("t", MaxTopicLen): true, strings.Repeat("t", MaxTopicLen+1): false,
	} {
		if err := Topic(s); (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalidTopic)) {
			t.Errorf("Topic(%.20q) = %v, want ok %v", s, err, ok)
		}
	}
}
