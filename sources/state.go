package sources

import (
	"time"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// The worker's visible state: what Status, the state gauge and OnState
// report, derived from the connection and the sink.

func (w *Worker) setConnected() {
	w.mu.Lock()
	w.conn = StateConnected
	w.st.ConnectedSince = time.Now()
	w.st.NextRetryAt = time.Time{}
	w.mu.Unlock()
	w.publishState()
}

func (w *Worker) setConn(s State, nextRetry time.Time) {
	w.mu.Lock()
	w.conn = s
	w.st.ConnectedSince = time.Time{}
	w.st.NextRetryAt = nextRetry
	w.mu.Unlock()
	w.publishState()
}

func (w *Worker) setPaused(paused bool, cause error) {
	w.mu.Lock()
	changed := (w.resume != nil) != paused
	if paused && w.resume == nil {
		w.resume = make(chan struct{})
	}
	if !paused && w.resume != nil {
		close(w.resume)
		w.resume = nil
	}
	if cause != nil {
		w.st.LastError = "sink: " + cause.Error()
		w.st.LastErrorAt = time.Now()
	}
	w.mu.Unlock()
	if changed {
		w.publishState()
	}
}

// publishState recomputes the visible state and tells the gauge and
// OnState when it changed.
func (w *Worker) publishState() {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	w.mu.Lock()
	s := w.conn
	if w.resume != nil && s != StateStopped {
		s = StatePaused
	}
	w.st.State = s
	w.mu.Unlock()
	if s == w.published {
		return
	}
	w.published = s
	for _, o := range States() {
		v := 0.0
		if o == s {
			v = 1
		}
		metrics.ConnectionState.WithLabelValues(w.cfg.Name, o.String()).Set(v)
	}
	if w.cfg.OnState != nil {
		w.cfg.OnState(s)
	}
}
