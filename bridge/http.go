package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssebridge/ssebridge/internal/metrics"
	"github.com/ssebridge/ssebridge/internal/web"
)

// Status is the whole runtime state, served as JSON at /api/status (the
// status page polls it) and, reduced, at /readyz.
type Status struct {
	Ready bool      `json:"ready"`
	Time  time.Time `json:"time"`
	// Replica is this replica's name and Replicas the live ones it sees
	// (cluster.enabled only).
	Replica   string           `json:"replica,omitempty"`
	Replicas  []string         `json:"replicas,omitempty"`
	NATS      *NATSStatus      `json:"nats,omitempty"`
	Kafka     *KafkaStatus     `json:"kafka,omitempty"`
	Pipelines []PipelineStatus `json:"pipelines"`
	Streams   []StreamStatus   `json:"streams"`
}

// NATSStatus is the NATS connection's state.
type NATSStatus struct {
	Mode      string `json:"mode"` // embedded or external
	Connected bool   `json:"connected"`
	Status    string `json:"status"`
	// URL is the embedded server's client URL when it listens.
	URL string `json:"url,omitempty"`
}

// Status snapshots the runtime. Ready is false when the NATS connection is
// down, no Kafka broker answers (checked at most every few seconds), or a
// pipeline is neither connected nor waiting in its backoff.
func (b *Bridge) Status() Status {
	b.mu.RLock()
	cfg, nc, ns := b.cfg, b.nc, b.ns
	pipes, strs := b.workersLocked()
	b.mu.RUnlock()

	st := Status{Ready: true, Time: time.Now().UTC(), Pipelines: []PipelineStatus{}, Streams: []StreamStatus{}}
	if c := b.cluster; c != nil {
		st.Replica, st.Replicas = c.ID(), c.Live()
	}
	if cfg.NATS.Configured() {
		ns2 := &NATSStatus{Mode: natsMode(cfg.NATS), Status: "not started"}
		if nc != nil {
			ns2.Connected = nc.IsConnected()
			ns2.Status = strings.ToLower(nc.Status().String())
		}
		if ns != nil {
			ns2.URL = ns.ClientURL()
		}
		st.NATS = ns2
		st.Ready = st.Ready && ns2.Connected
	}
	if cfg.Kafka.Configured() {
		ks := b.kafka.status(context.Background(), cfg.Kafka)
		st.Kafka = &ks
		st.Ready = st.Ready && ks.Connected
	}
	for _, p := range pipes {
		ps := p.status()
		st.Ready = st.Ready && ps.Ready
		st.Pipelines = append(st.Pipelines, ps)
	}
	for _, s := range strs {
		st.Streams = append(st.Streams, s.status())
	}
	sort.Slice(st.Pipelines, func(i, j int) bool { return st.Pipelines[i].Name < st.Pipelines[j].Name })
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].Path < st.Streams[j].Path })
	return st
}

// handler routes the HTTP server: operational endpoints, extra handlers,
// then the reverse streams by exact path.
func (b *Bridge) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := b.Status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, struct {
			Ready     bool             `json:"ready"`
			NATS      *NATSStatus      `json:"nats,omitempty"`
			Kafka     *KafkaStatus     `json:"kafka,omitempty"`
			Pipelines []PipelineStatus `json:"pipelines"`
		}{st.Ready, st.NATS, st.Kafka, st.Pipelines})
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /{$}", web.Handler())
	for pattern, h := range b.opts.Handlers {
		mux.Handle(pattern, h)
	}
	router := &streamRouter{b: b}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Streams first: their paths are the product's API, and the
		// config rejects paths that collide with the fixed ones.
		if s := router.lookup(r.URL.Path); s != nil {
			router.serve(w, r, s)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
