package config

import (
	"strings"
	"testing"
)

// TestListItemsKeepTheirIndex: a list item that is empty ("- " with
// nothing after it) or rejected (a single value where a pipeline belongs)
// used to vanish from the decoded list, so every later item moved up one
// index: its problems were reported under the wrong index and line, or
// hidden as a follow-on of the rejected item. Each item keeps its place,
// an empty one is reported, and every problem is located where it is.
func TestListItemsKeepTheirIndex(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"empty item", `nats: {embedded: true}
pipelines:
  -
  - name: a
    source: {url: ftp://x/}
    sink: {nats: {subject: s}}
`, []string{
			`f.yaml:3: pipelines[0]: empty list item (a '-' with nothing after it)`,
			`f.yaml:5: pipelines[1].source.url: must be an http:// or https:// URL, got "ftp://x/"`,
		}},
		{"rejected item", `nats: {embedded: true}
pipelines:
  - bogus
  - name: a
    source: {url: ftp://x/}
    sink: {nats: {subject: s}}
`, []string{
			`f.yaml:3: pipelines[0]: must be a mapping, not a single value`,
			`f.yaml:5: pipelines[1].source.url: must be an http:// or https:// URL, got "ftp://x/"`,
		}},
		{"duplicate after an empty item", `nats: {embedded: true}
streams:
  - ~
  - {path: /a, nats: {subject: s}}
  - {path: /a, nats: {subject: s}}
`, []string{
			`f.yaml:3: streams[0]: empty list item (a '-' with nothing after it)`,
			`f.yaml:5: streams[2].path: duplicate stream path "/a" (also streams[1] at line 4)`,
		}},
		{"empty string item", `nats: {embedded: true}
pipelines:
  - name: a
    source: {url: http://x/, events: [~, message]}
    sink: {nats: {subject: s}}
`, []string{
			`f.yaml:4: pipelines[0].source.events[0]: empty list item (a '-' with nothing after it)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("f.yaml", []byte(tc.yaml), func(string) (string, bool) { return "", false })
			if err == nil {
				t.Fatal("accepted")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Fatalf("errors:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
