package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/bridge/checkpoint"
	"github.com/ssebridge/ssebridge/bridge/config"
	"github.com/ssebridge/ssebridge/internal/logging"
	"github.com/ssebridge/ssebridge/sinks"
)

// This file adapts the packages the runtime assembles (sources, streams,
// natsconn, the file checkpoint store) to the small interfaces above.

// errNotWired marks a part whose package has not landed yet.
var errNotWired = errors.New("not available in this build")

func newWorker(p config.Pipeline, sink sinks.Sink, store checkpoint.Store, log *slog.Logger) (worker, error) {
	return nil, fmt.Errorf("source worker: %w", errNotWired)
}

func isServerStopped(err error) bool { return false }

// stateReady: a pipeline is ready when it is connected or waiting out its
// backoff (a reconnect in progress is normal life for an SSE feed).
func stateReady(state string) bool {
	switch state {
	case "connected", "backoff", "reconnecting", "connecting", StateStandby:
		return true
	}
	return false
}

func newStreamServer(b *Bridge, sc config.Stream) (streamServer, error) {
	return nil, fmt.Errorf("reverse stream: %w", errNotWired)
}

func connectExternalNATS(cfg config.NATS, log *slog.Logger) (*nats.Conn, error) {
	opts := append(natsHandlers(log),
		nats.Name("ssebridge"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
	)
	return nats.Connect(cfg.URL, opts...)
}

func openCheckpointStore(dataDir string) (checkpoint.Store, error) {
	return nil, nil // until checkpoint.NewFileStore lands
}

func redactURL(u string) string { return logging.RedactURL(u) }
