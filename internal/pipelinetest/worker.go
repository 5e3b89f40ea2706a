// Package pipelinetest runs a source worker into a sink for end-to-end
// tests of the sink drivers: it sits outside sinks/ so that no package
// under sinks depends on sources.
package pipelinetest

import (
	"context"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sinks/sinktest"
	"github.com/ssebridge/ssebridge/sources"
)

// Worker is a sources.Worker running in the background for an end-to-end
// test, with fast retries so outages in tests resolve in milliseconds.
type Worker struct {
	*sources.Worker
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// StartWorker runs a source worker for pipeline reading url into sink,
// checkpointing in store (nil: none). It is stopped when the test ends.
func StartWorker(t testing.TB, pipeline, url string, sink sinks.Sink, store checkpoint.Store) *Worker {
	t.Helper()
	w, err := sources.New(sources.Config{
		Name: pipeline, URL: url,
		RetryInitial: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		CheckpointInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wk := &Worker{Worker: w, cancel: cancel, done: make(chan error, 1)}
	go func() { wk.done <- w.Run(ctx) }()
	t.Cleanup(func() { wk.Stop() })
	return wk
}

// Stop cancels the worker and waits for Run to return, returning its
// error; it is idempotent. Stop is not safe for concurrent use.
func (w *Worker) Stop() error {
	if !w.ended {
		w.cancel()
		w.err = <-w.done
		w.ended = true
	}
	return w.err
}

// WaitAcked waits until the worker's last acknowledged event ID is id.
func (w *Worker) WaitAcked(t testing.TB, id string) {
	t.Helper()
	sinktest.WaitFor(t, "worker acknowledged "+id, func() bool { return w.Status().LastEventID == id })
}
