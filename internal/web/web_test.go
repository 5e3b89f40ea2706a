package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPageIsSelfContained: the page is served from the binary, polls the
// status API and opens streams with EventSource, with nothing fetched from
// elsewhere (it must work offline next to a broker).
func TestPageIsSelfContained(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, want := range []string{`fetch("/api/status"`, "new EventSource(path)", `id="pipelines"`, `id="streams"`, `id="live"`,
		"createElementNS(NS, \"svg\")", "checkpoint_at", "events_sent", "p.owner", "lease_since"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// The SVG namespace is a name, not a resource: the charts are drawn
	// by the page itself.
	body = strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, "")
	for _, bad := range []string{"http://", "https://", "<script src", "<link ", "<img", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("page refers to an external resource (%s)", bad)
		}
	}
}
