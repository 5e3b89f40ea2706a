package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// parseDir parses the non-test Go files of a directory of the module.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func str(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// TestLabelValuesMatchSources: the reasons and states InitPipeline creates
// are exactly those sources uses (its Reason* constants and state names),
// and the failure reasons those the source and sinks count, so a reason
// added there cannot be missing from the series created at start.
func TestLabelValuesMatchSources(t *testing.T) {
	var reasons, states []string
	for _, f := range parseDir(t, "sources") {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if strings.HasPrefix(name.Name, "Reason") && i < len(n.Values) {
						if v, ok := str(n.Values[i]); ok {
							reasons = append(reasons, v)
						}
					}
					if name.Name == "stateNames" && i < len(n.Values) {
						if cl, ok := n.Values[i].(*ast.CompositeLit); ok {
							for _, e := range cl.Elts {
								if v, ok := str(e); ok {
									states = append(states, v)
								}
							}
						}
					}
				}
			}
			return true
		})
	}
	if len(reasons) < 5 || len(states) < 4 {
		t.Fatalf("did not find sources' reasons %q and states %q", reasons, states)
	}
	if got, want := sorted(ReconnectReasons), sorted(reasons); !slices.Equal(got, want) {
		t.Errorf("ReconnectReasons %q, sources.Reason* %q", got, want)
	}
	if got, want := sorted(ConnectionStates), sorted(states); !slices.Equal(got, want) {
		t.Errorf("ConnectionStates %q, sources' state names %q", got, want)
	}

	var failures []string
	for _, dir := range []string{"sources", "sinks/nats", "sinks/kafka"} {
		for _, f := range parseDir(t, dir) {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "WithLabelValues" {
					return true
				}
				if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "EventsFailed" {
					if v, ok := str(call.Args[1]); ok {
						failures = append(failures, v)
					}
				}
				return true
			})
		}
	}
	if got, want := sorted(FailureReasons), sorted(failures); !slices.Equal(got, want) {
		t.Errorf("FailureReasons %q, reasons counted by sources and sinks %q", got, want)
	}
}

// series gathers Registry into "name{l1=v1,...}" -> metric.
func series(t *testing.T) map[string]*dto.Metric {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m
		}
	}
	return out
}

// TestInitPipelineAndStream: every series of a pipeline and of a stream
// exists after Init, at zero; the checkpoint timestamp at the start time,
// kept when the pipeline is initialised again.
func TestInitPipelineAndStream(t *testing.T) {
	before := float64(time.Now().Unix())
	InitPipeline("p1", "nats")
	InitStream("/s1")
	got := series(t)
	var want []string
	for _, n := range []string{"pipeline_events_received_total", "pipeline_events_forwarded_total", "pipeline_events_filtered_total", "pipeline_received_bytes_total"} {
		want = append(want, "ssebridge_"+n+"{pipeline=p1}")
	}
	for _, r := range []string{"eof", "network", "idle_timeout", "http_5xx", "http_429", "http_4xx", "http_other", "content_type", "redirect"} {
		want = append(want, "ssebridge_pipeline_reconnects_total{pipeline=p1,reason="+r+"}")
	}
	for _, r := range []string{"too_large", "unroutable"} {
		want = append(want, "ssebridge_pipeline_events_failed_total{pipeline=p1,reason="+r+"}")
	}
	for _, st := range []string{"connecting", "connected", "backoff", "paused", "stopped"} {
		want = append(want, "ssebridge_pipeline_connection_state{pipeline=p1,state="+st+"}")
	}
	want = append(want,
		"ssebridge_pipeline_lag_seconds{pipeline=p1}",
		"ssebridge_pipeline_checkpoint_failures_total{pipeline=p1}",
		"ssebridge_sink_duplicates_total{pipeline=p1}",
		"ssebridge_sink_published_total{pipeline=p1,sink=nats}",
		"ssebridge_sink_failed_total{pipeline=p1,sink=nats}",
		"ssebridge_sink_publish_seconds{pipeline=p1,sink=nats}",
		"ssebridge_stream_subscribers{stream=/s1}",
		"ssebridge_stream_events_sent_total{stream=/s1}",
		"ssebridge_stream_slow_subscriber_disconnects_total{stream=/s1}",
		"ssebridge_stream_resume_expired_total{stream=/s1}",
		"ssebridge_stream_subscribers_rejected_total{stream=/s1}",
		"ssebridge_stream_auth_failures_total{status=401,stream=/s1}",
		"ssebridge_stream_auth_failures_total{status=403,stream=/s1}",
	)
	for _, name := range want {
		m, ok := got[name]
		if !ok {
			t.Errorf("%s not created", name)
			continue
		}
		if v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount()); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
	ck := CheckpointTimestamp.WithLabelValues("p1")
	if v := GaugeValue(ck); v < before || v > float64(time.Now().Unix()+1) {
		t.Errorf("checkpoint timestamp %v, want the start time (%v)", v, before)
	}
	ck.Set(42)
	InitPipeline("p1", "nats")
	if v := GaugeValue(ck); v != 42 {
		t.Errorf("a second InitPipeline reset the checkpoint timestamp to %v", v)
	}
	Reconnects.WithLabelValues("p1", "eof").Add(3)
	InitPipeline("p1", "nats")
	if v := CounterValue(Reconnects.WithLabelValues("p1", "eof")); v != 3 {
		t.Errorf("a second InitPipeline reset a counter to %v", v)
	}
}
