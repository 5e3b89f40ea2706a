package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// forgetPipelineMetrics drops every series of a pipeline removed by a
// reload. Left behind, its checkpoint timestamp would age forever and fire
// the "stalled feed" alert for a pipeline that no longer exists.
func forgetPipelineMetrics(name string) {
	l := prometheus.Labels{"pipeline": name}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{
		metrics.EventsReceived, metrics.EventsForwarded, metrics.EventsFiltered, metrics.EventsFailed,
		metrics.BytesReceived, metrics.Reconnects, metrics.ConnectionState, metrics.CheckpointTimestamp,
		metrics.EndToEndLag, metrics.SinkPublished, metrics.SinkFailed, metrics.SinkLatency,
		metrics.CheckpointFailures, metrics.SinkDuplicates, metrics.ClusterOwner, metrics.ClusterLeaseSince,
	} {
		v.DeletePartialMatch(l)
	}
}

// forgetStreamMetrics drops every series of a stream removed by a reload.
func forgetStreamMetrics(path string) {
	l := prometheus.Labels{"stream": path}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{
		metrics.Subscribers, metrics.StreamEventsSent, metrics.SlowSubscriberDrops, metrics.AuthFailures,
		metrics.ResumeTooOld, metrics.SubscribersRejected,
	} {
		v.DeletePartialMatch(l)
	}
}
