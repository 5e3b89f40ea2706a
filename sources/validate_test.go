package sources

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestNewRejectsUnsendableRequests: a URL, method or header that net/http
// can never send is a configuration error from New, not a "connection
// error" retried forever (ssebridge tail printed "reconnecting" until
// interrupted).
func TestNewRejectsUnsendableRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"url", Config{URL: "http://exa mple.com/"}, "url"},
		{"no host", Config{URL: "http:///feed"}, "url"},
		{"method", Config{URL: "http://127.0.0.1:1/", Method: "GE T"}, "method"},
		{"header name", Config{URL: "http://127.0.0.1:1/", Header: http.Header{"X A": {"v"}}}, "header"},
		{"header value", Config{URL: "http://127.0.0.1:1/", Header: http.Header{"X-A": {"a\x01b"}}}, "header"},
		{"start id", Config{URL: "http://127.0.0.1:1/", LastEventID: "a\x01b"}, "lasteventid"},
	} {
		_, err := New(tc.cfg, newTestSink(), nil)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig about %s", tc.name, err, tc.want)
		}
	}
	// What net/http sends fine stays accepted: tabs and UTF-8 in values.
	if _, err := New(Config{URL: "https://example.org/s?x=1", Method: "REPORT",
		Header: http.Header{"X-A": {"a\tb é"}}, LastEventID: "é 1"}, newTestSink(), nil); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
