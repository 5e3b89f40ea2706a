// Package metrics holds every Prometheus collector ssebridge exports, so the
// names live in one place and follow one convention (ssebridge_..._total,
// base units).
//
// Collectors are registered on Registry, not on the global default one, so a
// test can read exactly what ssebridge exported. Labels are pipeline or
// stream names from the configuration, a bounded set.
package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// Registry is what /metrics serves.
var Registry = prometheus.NewRegistry()

// vec is a labelled collector whose series can be deleted.
type vec interface {
	prometheus.Collector
	DeletePartialMatch(prometheus.Labels) int
}

// labelled is every collector of this package with its label names, for
// Forget.
var labelled []struct {
	labels []string
	vec    vec
}

func register[V vec](v V, labels []string) V {
	Registry.MustRegister(v)
	labelled = append(labelled, struct {
		labels []string
		vec    vec
	}{labels, v})
	return v
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return register(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ssebridge", Name: name, Help: help}, labels), labels)
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return register(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ssebridge", Name: name, Help: help}, labels), labels)
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return register(prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "ssebridge", Name: name, Help: help, Buckets: buckets}, labels), labels)
}

// Forget drops every series whose label is value, in every collector that
// has that label: the series of a pipeline (label "pipeline") or a stream
// ("stream") that a reload removed. Left behind, a removed pipeline's
// checkpoint timestamp would age forever and fire the stalled-feed alert.
func Forget(label, value string) {
	for _, l := range labelled {
		if slices.Contains(l.labels, label) {
			l.vec.DeletePartialMatch(prometheus.Labels{label: value})
		}
	}
}

// Latency buckets from 0.5 ms to ~16 s: a live feed is judged in milliseconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// Pipeline (source side) metrics, labelled by pipeline.
var (
	EventsReceived  = counter("pipeline_events_received_total", "Events dispatched by the SSE decoder.", "pipeline")
	EventsForwarded = counter("pipeline_events_forwarded_total", "Events acknowledged by the sink's broker.", "pipeline")
	EventsFiltered  = counter("pipeline_events_filtered_total", "Events skipped by the pipeline's event type filter.", "pipeline")
	EventsFailed    = counter("pipeline_events_failed_total", "Events that could not be decoded or routed (oversized, unroutable).", "pipeline", "reason")
	BytesReceived   = counter("pipeline_received_bytes_total", "Bytes read from the upstream SSE connection.", "pipeline")
	Reconnects      = counter("pipeline_reconnects_total", "Upstream reconnections, by reason.", "pipeline", "reason")
	// ConnectionState is 1 for the pipeline's current state and 0 for the others.
	ConnectionState = gauge("pipeline_connection_state", "1 for the pipeline's current connection state.", "pipeline", "state")
	// CheckpointTimestamp is when the checkpoint last advanced (Unix seconds);
	// age is time() minus it.
	CheckpointTimestamp = gauge("pipeline_checkpoint_timestamp_seconds", "When the pipeline's checkpoint last advanced, Unix time.", "pipeline")
	// CheckpointFailures counts failed checkpoint saves; while they fail the
	// pipeline pauses once checkpoint_max_unsaved events are unsaved.
	CheckpointFailures = counter("pipeline_checkpoint_failures_total", "Checkpoint saves that failed (the store refused the write).", "pipeline")
	EndToEndLag        = histogram("pipeline_lag_seconds", "From event received to broker acknowledgement.", latencyBuckets, "pipeline")
)

// Sink metrics, labelled by pipeline and sink kind.
var (
	SinkPublished = counter("sink_published_total", "Messages acknowledged by the broker.", "pipeline", "sink")
	SinkFailed    = counter("sink_failed_total", "Publish attempts that failed; each message the broker refused (e.g. for permissions) counts once.", "pipeline", "sink")
	SinkLatency   = histogram("sink_publish_seconds", "Time from publish to broker acknowledgement of a batch.", latencyBuckets, "pipeline", "sink")
	// SinkDuplicates counts publishes JetStream acknowledged as duplicates:
	// an identical message (same Nats-Msg-Id) was already stored, as when a
	// crash replays events acknowledged after the last checkpoint.
	SinkDuplicates = counter("sink_duplicates_total", "Publishes the broker acknowledged as duplicates of a message it already stored (replays after a crash).", "pipeline")
)

// Reverse stream metrics, labelled by stream path.
var (
	Subscribers         = gauge("stream_subscribers", "Connected SSE subscribers.", "stream")
	StreamEventsSent    = counter("stream_events_sent_total", "Events written to SSE subscribers.", "stream")
	SlowSubscriberDrops = counter("stream_slow_subscriber_disconnects_total", "Subscribers cut off for falling behind max_pending.", "stream")
	AuthFailures        = counter("stream_auth_failures_total", "Requests refused by access control, by HTTP status.", "stream", "status")
	ResumeTooOld        = counter("stream_resume_expired_total", "Resumes whose Last-Event-ID the broker no longer holds (older than it retains, or from before the stream was recreated); they start at the earliest message.", "stream")
	SubscribersRejected = counter("stream_subscribers_rejected_total", "Subscriptions refused by max_subscribers.", "stream")
)

// Cluster metrics (cluster.enabled only), labelled by pipeline.
var (
	// ClusterOwner is 1 for the replica this replica last saw holding the
	// pipeline's lease; no series while nobody holds it.
	ClusterOwner = gauge("cluster_pipeline_owner", "1 for the replica holding the pipeline's lease, as this replica last saw it.", "pipeline", "replica")
	// ClusterLeaseSince is when the current owner took the lease; the
	// lease's age is time() minus it.
	ClusterLeaseSince = gauge("cluster_lease_acquired_timestamp_seconds", "When the current owner took the pipeline's lease, Unix time.", "pipeline")
)

// Label values of the labelled series, the bounded sets InitPipeline and
// InitStream create at zero.
var (
	// ReconnectReasons are Reconnects' reason values: the sources.Reason*
	// constants (metrics cannot import sources; a test keeps them equal).
	ReconnectReasons = []string{"eof", "idle_timeout", "network", "http_5xx", "http_429", "http_4xx", "http_other", "content_type", "redirect"}
	// ConnectionStates are ConnectionState's state values: the names of
	// sources.States().
	ConnectionStates = []string{"connecting", "connected", "backoff", "paused", "stopped"}
	// FailureReasons are EventsFailed's reason values.
	FailureReasons = []string{"too_large", "unroutable"}
	// AuthStatuses are AuthFailures' status values.
	AuthStatuses = []string{"401", "403"}
)

// InitPipeline creates every series of a configured pipeline, so that each
// exists from the first scrape (Prometheus's convention: rate() and alerts
// on a series that appears only at its first increment miss that
// increment). Counters and histograms start at zero, the per-state gauge
// at 0 for every state; sink is the sink kind ("nats", "kafka"; "" skips
// the sink series). The checkpoint timestamp starts at the current time,
// not 0, which would read as a checkpoint 50 years old: its age then
// counts from the pipeline's start until the first checkpoint; a value
// already set (the pipeline restarted by a reload) is kept.
func InitPipeline(pipeline, sink string) {
	for _, c := range []*prometheus.CounterVec{EventsReceived, EventsForwarded, EventsFiltered, BytesReceived} {
		c.WithLabelValues(pipeline)
	}
	for _, r := range FailureReasons {
		EventsFailed.WithLabelValues(pipeline, r)
	}
	for _, r := range ReconnectReasons {
		Reconnects.WithLabelValues(pipeline, r)
	}
	for _, st := range ConnectionStates {
		ConnectionState.WithLabelValues(pipeline, st)
	}
	CheckpointFailures.WithLabelValues(pipeline)
	EndToEndLag.WithLabelValues(pipeline)
	if sink != "" {
		SinkPublished.WithLabelValues(pipeline, sink)
		SinkFailed.WithLabelValues(pipeline, sink)
		SinkLatency.WithLabelValues(pipeline, sink)
	}
	if sink == "nats" { // only JetStream reports duplicates
		SinkDuplicates.WithLabelValues(pipeline)
	}
	ck := CheckpointTimestamp.WithLabelValues(pipeline)
	if GaugeValue(ck) == 0 {
		ck.SetToCurrentTime()
	}
}

// InitStream creates every series of a configured reverse stream at zero
// (see InitPipeline for why).
func InitStream(path string) {
	Subscribers.WithLabelValues(path)
	for _, c := range []*prometheus.CounterVec{StreamEventsSent, SlowSubscriberDrops, ResumeTooOld, SubscribersRejected} {
		c.WithLabelValues(path)
	}
	for _, code := range AuthStatuses {
		AuthFailures.WithLabelValues(path, code)
	}
}

// CheckpointTime is when pipeline's checkpoint last advanced, as
// CheckpointTimestamp says (the pipeline's start before its first
// checkpoint); zero for a pipeline never initialised.
func CheckpointTime(pipeline string) time.Time {
	v := GaugeValue(CheckpointTimestamp.WithLabelValues(pipeline))
	if v <= 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v*1e9)).UTC()
}

// StreamSent is how many events stream path has written to subscribers
// since the process started.
func StreamSent(path string) uint64 {
	return uint64(CounterValue(StreamEventsSent.WithLabelValues(path)))
}

// GaugeValue reads a gauge's current value.
func GaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if g.Write(&m) != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}

// CounterValue reads a counter's current value (the status page's stream
// rates come from it).
func CounterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
