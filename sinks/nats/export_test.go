package nats_test

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

func metricsFailed(pipeline string) prometheus.Counter {
	return metrics.EventsFailed.WithLabelValues(pipeline, "too_large")
}
