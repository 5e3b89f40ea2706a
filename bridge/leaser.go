package bridge

import "context"

// Leaser decides which replica runs a pipeline.
//
// It is the scale-out seam: a single bridge uses LocalLeaser, which always
// grants; replicas sharing pipelines would implement it with JetStream
// key-value leases (a key per pipeline, held with a TTL and renewed), never
// with a home-made consensus.
//
// Acquire blocks until this process may run pipeline or ctx is done. lost is
// closed if the lease is taken away later (the pipeline is then stopped and
// Acquire called again); release gives the lease up and must be called once,
// after the pipeline stopped. A nil lost channel means the lease is never
// lost.
type Leaser interface {
	Acquire(ctx context.Context, pipeline string) (lost <-chan struct{}, release func(), err error)
}

// Fencer is a Leaser that can tell, before each write to the broker,
// whether this process still holds a pipeline's lease: a replica that
// froze past its lease (SIGSTOP, a network split) must not publish after
// another replica took over.
type Fencer interface {
	Valid(pipeline string) error
}

// LocalLeaser grants every pipeline at once and forever: the right answer
// when one process runs the whole configuration.
type LocalLeaser struct{}

// Acquire grants the lease unless ctx is already done.
func (LocalLeaser) Acquire(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return nil, func() {}, nil
}
