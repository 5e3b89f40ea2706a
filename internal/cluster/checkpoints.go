package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoints in the bucket: one key per pipeline, fenced by revision.

// ckptValue is ckpt.P: the ID (which may be "", hence Has) and the replica
// that wrote it.
type ckptValue struct {
	ID      string `json:"id"`
	Has     bool   `json:"has"`
	Replica string `json:"replica"`
}

// fence rewrites ckpt.P at its current revision, so that any save by a
// previous owner (which expects an older revision) fails from now on, and
// reads the checkpoint the new owner resumes from.
func (c *Cluster) fence(ctx context.Context, kv jetstream.KeyValue, l *lease) error {
	for range 5 {
		e, err := kv.Get(ctx, ckptKey(l.pipeline))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// No checkpoint yet: create the key (absent) to own its
			// revision; an older owner's first save then fails too.
			v, _ := json.Marshal(ckptValue{Replica: c.opts.ReplicaID})
			rev, cerr := kv.Create(ctx, ckptKey(l.pipeline), v)
			if cerr == nil {
				l.ckRev, l.ckHave = rev, false
				return nil
			}
			if errors.Is(cerr, jetstream.ErrKeyExists) {
				continue
			}
			return cerr
		}
		if err != nil {
			return err
		}
		var cv ckptValue
		if err := json.Unmarshal(e.Value(), &cv); err != nil {
			return fmt.Errorf("checkpoint of %q: %w", l.pipeline, err)
		}
		cv.Replica = c.opts.ReplicaID
		v, _ := json.Marshal(cv)
		rev, err := kv.Update(ctx, ckptKey(l.pipeline), v, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // a previous owner saved just now: read it again
		}
		if err != nil {
			return err
		}
		l.ckRev, l.ckID, l.ckHave = rev, cv.ID, cv.Has
		return nil
	}
	return errors.New("checkpoint changed five times while fencing it")
}

// Load returns pipeline's checkpoint as the fencing write read it when the
// lease was acquired (or the bucket's value when not held).
func (c *Cluster) Load(ctx context.Context, pipeline string) (string, bool, error) {
	c.mu.Lock()
	l, kv := c.held[pipeline], c.kv
	c.mu.Unlock()
	if l != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return l.ckID, l.ckHave, nil
	}
	if kv == nil {
		return "", false, errors.New("cluster: bucket not open")
	}
	e, err := kv.Get(ctx, ckptKey(pipeline))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var cv ckptValue
	if err := json.Unmarshal(e.Value(), &cv); err != nil {
		return "", false, err
	}
	return cv.ID, cv.Has, nil
}

// Save writes pipeline's checkpoint at the revision this owner last wrote:
// it fails with ErrFenced once another replica took the pipeline over, and
// with ErrNotOwner when the lease is not held here.
func (c *Cluster) Save(ctx context.Context, pipeline, id string) error {
	c.mu.Lock()
	l, kv := c.held[pipeline], c.kv
	var rev uint64
	if l != nil {
		rev = l.ckRev
	}
	c.mu.Unlock()
	if l == nil || kv == nil {
		return fmt.Errorf("pipeline %q: %w", pipeline, ErrNotOwner)
	}
	v, _ := json.Marshal(ckptValue{ID: id, Has: true, Replica: c.opts.ReplicaID})
	nrev, err := kv.Update(ctx, ckptKey(pipeline), v, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		c.mu.Lock()
		c.revokeLocked(l, "checkpoint written by another replica")
		c.mu.Unlock()
		return fmt.Errorf("pipeline %q: %w", pipeline, ErrFenced)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	l.ckRev, l.ckID, l.ckHave = nrev, id, true
	c.mu.Unlock()
	return nil
}
