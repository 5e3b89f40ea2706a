package streams

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestTokenRoundTripAndRejection(t *testing.T) {
	tag := topicTag("edits")
	pos := position{0: 0, 1: 1 << 40, 7: 12345}
	tok := encodeToken(tag, pos)
	if len(tok) > 40 {
		t.Errorf("token for 3 partitions is %d bytes, want compact", len(tok))
	}
	got, err := decodeToken(tok, tag)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(got) != len(pos) {
		t.Fatalf("decoded %v, want %v", got, pos)
	}
	for p, off := range pos {
		if got[p] != off {
			t.Errorf("partition %d: %d, want %d", p, got[p], off)
		}
	}
	if _, err := decodeToken(tok, topicTag("other")); !errors.Is(err, ErrForeignLastEventID) {
		t.Errorf("other topic: %v, want ErrForeignLastEventID", err)
	}
	// Every single-character change or truncation is caught.
	for i := range tok {
		for _, c := range []byte{'A', 'z', '0', '_'} {
			if tok[i] == c {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if _, err := decodeToken(bad, tag); err == nil {
				t.Errorf("altered token %q accepted", bad)
			}
		}
		if _, err := decodeToken(tok[:i], tag); err == nil {
			t.Errorf("truncated token %q accepted", tok[:i])
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(topicTag("t"), position{0: 1, 2: 3}))
	f.Add("")
	f.Add("AQAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := decodeToken(s, topicTag("t"))
		if err != nil {
			if !errors.Is(err, ErrInvalidLastEventID) && !errors.Is(err, ErrForeignLastEventID) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		// Whatever decodes re-encodes to a token meaning the same.
		again, err := decodeToken(encodeToken(topicTag("t"), pos), topicTag("t"))
		if err != nil || len(again) != len(pos) {
			t.Fatalf("re-encode of %v: %v %v", pos, again, err)
		}
	})
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		sub, outer string
		within     bool
	}{
		{"wiki.en.>", "wiki.>", true},
		{"wiki.*.edit", "wiki.>", true},
		{"wiki.>", "wiki.>", true},
		{"wiki.en.edit", "wiki.*.edit", true},
		{"wiki.*.edit", "wiki.*.edit", true},
		{"wiki.>", "wiki.en.>", false},
		{"wiki.>", "wiki.*", false},
		{"wiki", "wiki.>", false},
		{"wiki.en", "wiki.*.edit", false},
		{"wiki.de.>", "wiki.en.>", false},
		{"wiki.en.edit.x", "wiki.*.edit", false},
		{"a.b", ">", true},
	} {
		if got := subjectWithin(tc.sub, tc.outer); got != tc.within {
			t.Errorf("subjectWithin(%q, %q) = %v, want %v", tc.sub, tc.outer, got, tc.within)
		}
	}
	for _, tc := range []struct {
		pattern, subj string
		match         bool
	}{
		{"wiki.en.>", "wiki.en.page", true},
		{"wiki.en.>", "wiki.en.page.x", true},
		{"wiki.en.>", "wiki.en", false},
		{"wiki.*.edit", "wiki.de.edit", true},
		{"wiki.*.edit", "wiki.de.new", false},
		{"wiki.*", "wiki.de.edit", false},
		{"wiki", "wiki", true},
		{"wiki", "wikipedia", false},
	} {
		if got := subjectMatches(tc.pattern, tc.subj); got != tc.match {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tc.pattern, tc.subj, got, tc.match)
		}
	}
	// A ?subject= filter obeys the rule of a configured subject
	// (names.SubscribeSubject).
	for _, bad := range []string{"", "a..b", "a.>.b", "a.b*", "a b", ".a", "a.", "a\x00"} {
		r := httptest.NewRequest(http.MethodGet, "/s?subject="+url.QueryEscape(bad), nil)
		if _, err := parseRequest(r); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "invalid NATS subject") {
			t.Errorf("subject=%q: parseRequest = %v, want the subject refused", bad, err)
		}
	}
}

func TestNewRejectsBadConfigAtOnce(t *testing.T) {
	cfgs := []Config{
		{Path: "nopath", NATS: &NATSConfig{Subject: "a"}},
		{Path: "/both", NATS: &NATSConfig{Subject: "a"}, Kafka: &KafkaConfig{Topic: "t"}},
		{Path: "/none"},
		{Path: "/start", Kafka: &KafkaConfig{Topic: "t", Start: "middle"}},
		{Path: "/js", NATS: &NATSConfig{}},
		{Path: "/subj", NATS: &NATSConfig{Subject: "a..b"}},
		{Path: "/jwt", NATS: &NATSConfig{Subject: "a"}, Auth: &Auth{JWT: &JWT{}}},
		{Path: "/key", NATS: &NATSConfig{Subject: "a"}, Auth: &Auth{JWT: &JWT{RS256PublicKeyFile: "/does/not/exist.pem"}}},
		{Path: "/nats", NATS: &NATSConfig{Subject: "a"}},
		{Path: "/kafka", Kafka: &KafkaConfig{Topic: "t"}},
	}
	_, err := New(cfgs, Deps{})
	if err == nil {
		t.Fatal("New accepted a bad configuration")
	}
	msg := err.Error()
	for _, want := range []string{
		`"nopath": Path: must start with /`, `"/both": has both nats and kafka`, `"/none": needs exactly one of nats or kafka`,
		`"/start": Kafka.Start: must be one of latest, earliest, got "middle"`, `"/js": NATS.Subject: required`,
		`"/subj": NATS.Subject: invalid NATS subject`, `"/jwt": Auth.JWT: needs an HS256 secret`, "/does/not/exist.pem",
		`"/nats": NATS subject but no NATS connection`, `"/kafka": Kafka topic but no Kafka brokers`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}
