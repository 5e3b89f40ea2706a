package demo

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// documentedMetric is a row of the README's metrics table.
type documentedMetric struct {
	typ    string
	labels []string
}

// readmeMetrics parses the README's metrics reference table.
func readmeMetrics(t *testing.T) map[string]documentedMetric {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The reference table is the one headed name, type, labels, meaning.
	_, sec, ok := strings.Cut(string(b), "\n| name | type | labels | meaning |\n")
	if !ok {
		t.Fatal("README has no metrics table headed | name | type | labels | meaning |")
	}
	sec, _, _ = strings.Cut(sec, "\n\n")
	sec = "| name | type | labels | meaning |\n" + sec
	out := map[string]documentedMetric{}
	header := false
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			t.Fatalf("metrics table row without 4 cells: %q", line)
		}
		if cells[0] == "name" {
			header = slices.Equal(cells, []string{"name", "type", "labels", "meaning"})
			continue
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		name := strings.Trim(cells[0], "`")
		var labels []string
		for _, l := range strings.Split(cells[2], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		if _, dup := out[name]; dup {
			t.Errorf("README documents %s twice", name)
		}
		if cells[3] == "" {
			t.Errorf("README gives %s no meaning", name)
		}
		out[name] = documentedMetric{typ: cells[1], labels: labels}
	}
	if !header || len(out) < 10 {
		t.Fatalf("README metrics table: header %v, %d rows", header, len(out))
	}
	return out
}

// servedFamily is what /metrics says of one metric family.
type servedFamily struct {
	typ    string
	labels map[string]bool     // label names of its series (le excluded)
	values map[string][]string // label name -> values seen
	series map[string]bool     // full series lines' names with labels
}

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseExposition reads the Prometheus text format into families.
func parseExposition(t *testing.T, text string) map[string]*servedFamily {
	t.Helper()
	fams := map[string]*servedFamily{}
	for _, line := range strings.Split(text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			fams[name] = &servedFamily{typ: typ, labels: map[string]bool{}, values: map[string][]string{}, series: map[string]bool{}}
			continue
		}
		m := seriesLine.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		name := m[1]
		fam := fams[name]
		if fam == nil {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
					fam = fams[base]
				}
			}
		}
		if fam == nil {
			t.Fatalf("series %q before its # TYPE line", line)
		}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if lp[1] == "le" {
				continue
			}
			fam.labels[lp[1]] = true
			if !slices.Contains(fam.values[lp[1]], lp[2]) {
				fam.values[lp[1]] = append(fam.values[lp[1]], lp[2])
			}
		}
	}
	return fams
}

// TestMetricsReference: the README's metrics table is what /metrics
// serves: every documented metric with its type and labels, and nothing
// undocumented. Scraped right after start, every documented series of the
// demo's pipeline and stream is already there, one per reason, state and
// status, before anything happened to count.
func TestMetricsReference(t *testing.T) {
	doc := readmeMetrics(t)
	d, _ := startDemo(t)
	served := parseExposition(t, scrape(t, d.BaseURL()))

	for name, dm := range doc {
		f := served[name]
		if f == nil {
			t.Errorf("README documents %s, /metrics does not serve it", name)
			continue
		}
		if f.typ != dm.typ {
			t.Errorf("%s: README says %s, /metrics says %s", name, dm.typ, f.typ)
		}
		var labels []string
		for l := range f.labels {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		if !slices.Equal(labels, dm.labels) {
			t.Errorf("%s: README labels %q, served %q", name, dm.labels, labels)
		}
		// The demo's own series exist from start.
		switch {
		case slices.Contains(dm.labels, "pipeline") && !slices.Contains(f.values["pipeline"], Pipeline):
			t.Errorf("%s has no series for pipeline %q right after start", name, Pipeline)
		case slices.Contains(dm.labels, "stream") && !slices.Contains(f.values["stream"], StreamPath):
			t.Errorf("%s has no series for stream %q right after start", name, StreamPath)
		}
	}
	for name := range served {
		if strings.HasPrefix(name, "ssebridge_") && doc[name].typ == "" {
			t.Errorf("/metrics serves %s, the README's table does not document it", name)
		}
	}

	// One series per reason, state and status, before any happened.
	for name, want := range map[string]struct {
		label  string
		values []string
	}{
		"ssebridge_pipeline_reconnects_total":    {"reason", []string{"eof", "network", "idle_timeout", "http_5xx", "http_429", "http_4xx", "http_other", "content_type", "redirect"}},
		"ssebridge_pipeline_connection_state":    {"state", []string{"connecting", "connected", "backoff", "paused", "stopped"}},
		"ssebridge_pipeline_events_failed_total": {"reason", []string{"too_large", "unroutable"}},
		"ssebridge_stream_auth_failures_total":   {"status", []string{"401", "403"}},
	} {
		f := served[name]
		if f == nil {
			continue // reported above
		}
		for _, v := range want.values {
			if !slices.Contains(f.values[want.label], v) {
				t.Errorf("%s has no %s=%q series", name, want.label, v)
			}
		}
	}
	text := scrape(t, d.BaseURL())
	for _, series := range []string{
		`ssebridge_pipeline_reconnects_total{pipeline="demo",reason="http_5xx"}`,
		`ssebridge_stream_slow_subscriber_disconnects_total{stream="/sse/demo"}`,
		`ssebridge_stream_resume_expired_total{stream="/sse/demo"}`,
		`ssebridge_stream_subscribers_rejected_total{stream="/sse/demo"}`,
		`ssebridge_stream_auth_failures_total{status="403",stream="/sse/demo"}`,
	} {
		if v := metricValue(t, text, series); v != 0 {
			t.Errorf("%s = %v in a demo where it never happened", series, v)
		}
	}
}

// TestAlertsUseDocumentedMetrics: the example alerting rules read only
// metrics the README documents (and /metrics serves: see above), with
// label values that exist.
func TestAlertsUseDocumentedMetrics(t *testing.T) {
	doc := readmeMetrics(t)
	b, err := os.ReadFile("../../deploy/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`ssebridge_[a-z_]+`).FindAllString(string(b), -1)
	if len(names) < 4 {
		t.Fatalf("alerts.yaml names %d metrics", len(names))
	}
	for _, n := range names {
		if _, ok := doc[n]; !ok {
			t.Errorf("alerts.yaml reads %s, which the README does not document", n)
		}
	}
	for _, m := range regexp.MustCompile(`state="([a-z]+)"`).FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains([]string{"connecting", "connected", "backoff", "paused", "stopped"}, m[1]) {
			t.Errorf("alerts.yaml matches state %q, which no pipeline has", m[1])
		}
	}
}
