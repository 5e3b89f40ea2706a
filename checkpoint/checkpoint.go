// Package checkpoint remembers, per pipeline, the ID of the last event that
// the sink acknowledged, so that a restarted source resumes with
// Last-Event-ID instead of losing or repeating its place.
//
// Store is the seam for scale-out: the default is a file per pipeline in
// data_dir; a store shared between replicas (a JetStream key-value bucket,
// say) only has to satisfy the same two methods.
package checkpoint

import "context"

// Store persists the last acknowledged event ID of each pipeline.
//
// Implementations must be safe for concurrent use by several pipelines and
// must make Save durable before it returns: after a crash, Load returns the
// value of the last Save that returned nil (or a later one), never an older
// one and never a torn value.
type Store interface {
	// Load returns the saved ID and ok=true, or ok=false when the pipeline
	// has never saved one. An ID may legitimately be "" (a stream may reset
	// its ID), which is why presence is reported separately.
	Load(ctx context.Context, pipeline string) (id string, ok bool, err error)
	// Save records id as the pipeline's checkpoint.
	Save(ctx context.Context, pipeline, id string) error
}
