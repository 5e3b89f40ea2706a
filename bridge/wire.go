package bridge

import (
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/logging"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sources"
)

// This file adapts the packages the runtime assembles (sources, streams,
// natsconn, the file checkpoint store) to the small interfaces above.

// sourceWorker adapts sources.Worker to worker.
type sourceWorker struct{ *sources.Worker }

func (w sourceWorker) Status() PipelineStatus {
	st := w.Worker.Status()
	ps := PipelineStatus{
		State:       st.State.String(),
		LastEventID: st.LastEventID,
		Received:    st.Received,
		Forwarded:   st.Forwarded,
		Filtered:    st.Filtered,
		Failed:      st.Failed,
		Reconnects:  st.Reconnects,
		LastError:   st.LastError,
		Since:       st.ConnectedSince,

		CheckpointError:      st.CheckpointError,
		CheckpointErrorSince: st.CheckpointErrorSince,
		Unsaved:              st.Unsaved,
	}
	if !st.LastErrorAt.IsZero() {
		ps.LastErrorAt = st.LastErrorAt
	}
	if st.State == sources.StateBackoff {
		ps.NextRetryAt = st.NextRetryAt
	}
	return ps
}

func newWorker(p config.Pipeline, sink sinks.Sink, store checkpoint.Store, log *slog.Logger, shutdownTimeout time.Duration, fence func() error) (worker, error) {
	sc, err := sourceConfig(p)
	if err != nil {
		return nil, err
	}
	sc.Logger = log
	sc.ShutdownTimeout = shutdownTimeout
	sc.Fence = fence
	var prev sources.State = -1
	sc.OnState = func(s sources.State) {
		// One line per state change, never per event.
		if s != prev {
			// sources logs connects and drops at info with their cause.
			log.Debug("pipeline state", "pipeline", p.Name, "state", s.String())
			prev = s
		}
	}
	w, err := sources.New(sc, sink, store)
	if err != nil {
		return nil, err
	}
	return sourceWorker{w}, nil
}

// isServerStopped: the feed answered 204, asking clients to stop.
func isServerStopped(err error) bool { return errors.Is(err, sources.ErrServerStopped) }

// stateReady: a pipeline is ready when it is connected or waiting out its
// backoff; connecting again after a drop is part of that cycle, while a
// first connection that has not answered yet, a paused sink, a failing
// checkpoint store, a failed set up or a stopped feed are not ready.
func stateReady(st PipelineStatus) bool {
	if st.CheckpointError != "" {
		return false
	}
	switch st.State {
	case "connected", "backoff", StateStandby:
		return true
	case "connecting":
		return st.Reconnects > 0
	}
	return false
}

// connectExternalNATS dials nats.url; an unreachable server is not an
// error (the connection comes up with the server and /readyz says 503
// until then).
func connectExternalNATS(cfg config.NATS, name string, log *slog.Logger) (*nats.Conn, error) {
	return natsconn.Connect(natsConfig(cfg), name, log)
}

// openCheckpointStore is the default store: a file per pipeline in
// data_dir/checkpoints.
func openCheckpointStore(dataDir string) (checkpoint.Store, error) {
	return checkpoint.NewFileStore(filepath.Join(dataDir, "checkpoints"))
}

func redactURL(u string) string { return logging.RedactURL(u) }
