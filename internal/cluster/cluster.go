// Package cluster lets ssebridge replicas with the same configuration share
// its pipelines through a NATS JetStream key-value bucket, the broker the
// users already run: no consensus of our own.
//
// The bucket holds three kinds of keys:
//
//   - replica.ID: each live replica's presence, written with a per-message
//     TTL of lease_ttl and renewed every tick; a replica that dies vanishes
//     after lease_ttl.
//   - lease.P: the owner of pipeline P, created only when absent
//     (create-if-absent, with a TTL of lease_ttl) and renewed by its owner
//     with an update at the revision it holds (a compare-and-set, TTL
//     renewed). Two replicas can never hold it at once.
//   - ckpt.P: P's checkpoint, without TTL. A new owner first rewrites it
//     at its current revision (a fencing write), and every later save is an
//     update at the revision the owner last wrote: a replica that lost the
//     lease can no longer move the checkpoint, back or forth.
//
// Spread: every replica computes the same assignment from the sorted live
// replicas and the sorted pipeline names (round robin), so each holds
// ⌈n/r⌉ or ⌊n/r⌋ pipelines. A replica acquires only the pipelines assigned
// to it and hands over those that are not (the pipeline drains, saves its
// checkpoint, and the lease is deleted for the new assignee). Views of the
// live set may differ for a tick; that delays an acquisition, it never
// gives a lease two owners.
//
// Fencing: an owner that cannot renew for two thirds of lease_ttl (a
// network split, SIGSTOP) considers its leases lost before the server can
// expire them: Valid fails, and the source worker checks Valid before every
// write to the broker, so a stale owner publishes at most the batch it was
// writing when it froze.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// Sentinel errors.
var (
	// ErrNotOwner: the pipeline's lease is not held here (any more); a
	// checkpoint save or a publish must not happen.
	ErrNotOwner = errors.New("cluster: this replica does not hold the pipeline's lease")
	// ErrFenced: another replica wrote the checkpoint since this one took
	// the lease; it lost the lease.
	ErrFenced = errors.New("cluster: checkpoint fenced by a newer owner")
)

// Options configure a Cluster.
type Options struct {
	// Bucket is the key-value bucket, created if missing.
	Bucket string
	// LeaseTTL: a replica that stops renewing loses its leases after it.
	LeaseTTL time.Duration
	// ReplicaID names this replica; DefaultReplicaID when empty.
	ReplicaID string
	// Logger receives lease changes (nil discards).
	Logger *slog.Logger
}

// DefaultReplicaID is the host name plus a random suffix, so that two
// replicas on one host (or a restarted one) are told apart.
func DefaultReplicaID() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, h)
	if h == "" {
		h = "replica"
	}
	return h + "-" + strings.ToLower(rand.Text()[:8])
}

// Cluster is one replica's view of the bucket: it implements the bridge's
// Leaser and checkpoint.Store. Create it with New, run it with Run.
type Cluster struct {
	nc   *nats.Conn
	opts Options
	log  *slog.Logger
	poke chan struct{}

	mu        sync.Mutex
	kv        jetstream.KeyValue // nil until the bucket is open
	js        jetstream.JetStream
	pipelines []string               // configured, sorted
	want      map[string]chan *lease // pipelines waiting in Acquire
	held      map[string]*lease
	owners    map[string]Owner // last seen owner per pipeline
	live      []string         // last seen live replicas, sorted
	closed    bool
}

// Owner is who holds a pipeline's lease, as last seen.
type Owner struct {
	Replica string    `json:"replica"`
	Since   time.Time `json:"since"`
}

type lease struct {
	pipeline string
	rev      uint64    // our revision of lease.P
	since    time.Time // acquired
	renewed  time.Time // last successful renewal (monotonic)
	revoked  bool      // lost: renewal failed past the margin, or taken
	handover bool      // no longer assigned here: stopping to hand over
	lost     chan struct{}

	ckRev  uint64 // revision of ckpt.P we last wrote
	ckID   string
	ckHave bool
}

// New prepares a replica on nc; Run opens the bucket and keeps it.
func New(nc *nats.Conn, opts Options) *Cluster {
	if opts.ReplicaID == "" {
		opts.ReplicaID = DefaultReplicaID()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cluster{
		nc: nc, opts: opts, log: log.With("replica", opts.ReplicaID),
		poke: make(chan struct{}, 1),
		want: map[string]chan *lease{}, held: map[string]*lease{}, owners: map[string]Owner{},
	}
}

// ID is this replica's name.
func (c *Cluster) ID() string { return c.opts.ReplicaID }

// SetPipelines sets the configured pipeline names, the set the assignment
// spreads (at start and on every reload).
func (c *Cluster) SetPipelines(names []string) {
	s := slices.Clone(names)
	slices.Sort(s)
	c.mu.Lock()
	c.pipelines = slices.Compact(s)
	c.mu.Unlock()
	c.wake()
}

func (c *Cluster) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// tick is how often presence and leases are renewed and the assignment
// looked at: a sixth of the TTL, so a renewal can fail twice before the
// owner gives up at two thirds.
func (c *Cluster) tick() time.Duration { return c.opts.LeaseTTL / 6 }

// Run keeps presence and leases until ctx ends, then releases what it holds
// (Close does so too). It returns nil.
func (c *Cluster) Run(ctx context.Context) error {
	t := time.NewTicker(c.tick())
	defer t.Stop()
	for {
		c.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.poke:
		}
	}
}

// Close gives up this replica's presence so the others rebalance at once.
// The leases are released by the pipelines as they stop.
func (c *Cluster) Close(ctx context.Context) {
	c.mu.Lock()
	kv := c.kv
	c.closed = true
	c.mu.Unlock()
	if kv != nil {
		_ = kv.Delete(ctx, presenceKey(c.opts.ReplicaID))
	}
}

func presenceKey(id string) string { return "replica." + id }

// leaseKey and ckptKey name a pipeline's keys; a pipeline name may hold
// characters a key token cannot, which are hex-escaped.
func leaseKey(p string) string { return "lease." + keyToken(p) }
func ckptKey(p string) string  { return "ckpt." + keyToken(p) }

func keyToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "_%02x", ch)
		}
	}
	return b.String()
}

// open creates or binds the bucket; nil once it is open.
func (c *Cluster) open(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv := c.kv
	c.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: c.opts.Bucket, History: 1, Storage: jetstream.FileStorage,
		// Per-key TTLs need it; deleted and expired keys leave a marker
		// that long so that watchers and Create see the deletion.
		LimitMarkerTTL: c.opts.LeaseTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %q: %w", c.opts.Bucket, err)
	}
	c.mu.Lock()
	c.kv, c.js = kv, js
	c.mu.Unlock()
	return kv, nil
}

// put writes key with a TTL, expecting its current revision to be rev (0:
// absent or deleted) unless any is set. KeyValue.Update would drop the TTL.
func (c *Cluster) put(ctx context.Context, key string, value []byte, rev uint64, any bool) (uint64, error) {
	c.mu.Lock()
	js := c.js
	c.mu.Unlock()
	opts := []jetstream.PublishOpt{jetstream.WithMsgTTL(c.opts.LeaseTTL)}
	if !any {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + c.opts.Bucket + "." + key, Data: value}, opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// step is one round: presence, the live set, renewals, hand-overs and
// acquisitions.
func (c *Cluster) step(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, c.tick())
	defer cancel()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	kv, err := c.open(rctx)
	if err != nil {
		c.log.Warn("cluster bucket unavailable", "error", err)
		c.renew(rctx, nil) // only revokes what can no longer be renewed
		return
	}
	if !closed {
		if _, err := c.put(rctx, presenceKey(c.opts.ReplicaID), []byte(time.Now().UTC().Format(time.RFC3339)), 0, true); err != nil {
			c.log.Warn("cluster presence not renewed", "error", err)
		}
	}
	live, err := c.liveReplicas(rctx, kv)
	if err != nil {
		c.log.Warn("cluster members not listed", "error", err)
	}
	c.renew(rctx, kv)
	if err != nil || closed {
		return
	}
	c.mu.Lock()
	c.live = live
	assign := assignment(c.pipelines, live)
	var handovers []*lease
	for p, l := range c.held {
		if assign[p] != c.opts.ReplicaID && !l.handover && !l.revoked {
			l.handover = true
			handovers = append(handovers, l)
		}
	}
	var wanted []string
	for p := range c.want {
		if assign[p] == c.opts.ReplicaID {
			wanted = append(wanted, p)
		}
	}
	pipes := slices.Clone(c.pipelines)
	c.mu.Unlock()
	for _, l := range handovers {
		c.log.Info("handing pipeline over", "pipeline", l.pipeline, "to", assign[l.pipeline])
		close(l.lost)
	}
	slices.Sort(wanted)
	for _, p := range wanted {
		c.tryAcquire(rctx, kv, p)
	}
	c.readOwners(rctx, kv, pipes)
}

// liveReplicas lists the replicas whose presence key is there, sorted.
func (c *Cluster) liveReplicas(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, "replica.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var live []string
	// The lister stops itself once it has sent every key, or when ctx ends
	// (then the list may be short).
	for k := range lister.Keys() {
		live = append(live, strings.TrimPrefix(k, "replica."))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(live)
	return live, nil
}

// assignment maps each pipeline to one live replica: round robin over both
// sorted lists, so every replica computes the same answer from the same
// view and the load differs by at most one.
func assignment(pipelines, live []string) map[string]string {
	out := make(map[string]string, len(pipelines))
	if len(live) == 0 {
		return out
	}
	for i, p := range pipelines {
		out[p] = live[i%len(live)]
	}
	return out
}

type leaseValue struct {
	Replica string    `json:"replica"`
	Since   time.Time `json:"since"`
}

// tryAcquire takes p's lease if it is free, fences its checkpoint and
// hands the lease to the waiting Acquire.
func (c *Cluster) tryAcquire(ctx context.Context, kv jetstream.KeyValue, p string) {
	now := time.Now()
	val, _ := json.Marshal(leaseValue{Replica: c.opts.ReplicaID, Since: now.UTC()})
	// Create-if-absent: fails while another replica holds it; succeeds
	// over a delete or expiry marker.
	rev, err := kv.Create(ctx, leaseKey(p), val, jetstream.KeyTTL(c.opts.LeaseTTL))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			c.log.Warn("pipeline lease not taken", "pipeline", p, "error", err)
		}
		return
	}
	l := &lease{pipeline: p, rev: rev, since: now, renewed: now, lost: make(chan struct{})}
	if err := c.fence(ctx, kv, l); err != nil {
		c.log.Warn("checkpoint not fenced; giving the lease back", "pipeline", p, "error", err)
		_ = kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(rev))
		return
	}
	c.mu.Lock()
	ch, ok := c.want[p]
	if ok {
		delete(c.want, p)
		c.held[p] = l
	}
	c.mu.Unlock()
	if !ok { // Acquire gave up meanwhile
		_ = kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(rev))
		return
	}
	c.log.Info("pipeline lease acquired", "pipeline", p, "checkpoint", l.ckID)
	ch <- l
}

// renew renews every held lease; a lease that cannot be renewed for two
// thirds of the TTL, or that another replica took, is revoked (lost).
func (c *Cluster) renew(ctx context.Context, kv jetstream.KeyValue) {
	c.mu.Lock()
	held := make([]*lease, 0, len(c.held))
	for _, l := range c.held {
		if !l.revoked {
			held = append(held, l)
		}
	}
	c.mu.Unlock()
	for _, l := range held {
		var err error
		var rev uint64
		if kv != nil {
			val, _ := json.Marshal(leaseValue{Replica: c.opts.ReplicaID, Since: l.since.UTC()})
			rev, err = c.put(ctx, leaseKey(l.pipeline), val, l.rev, false)
		} else {
			err = errors.New("bucket unavailable")
		}
		c.mu.Lock()
		switch {
		case err == nil:
			l.rev, l.renewed = rev, time.Now()
		case isWrongSeq(err):
			c.revokeLocked(l, "taken by another replica")
		case time.Since(l.renewed) >= c.opts.LeaseTTL*2/3:
			c.revokeLocked(l, "not renewed for two thirds of lease_ttl: "+err.Error())
		}
		c.mu.Unlock()
	}
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// revokeLocked marks l lost. c.mu is held.
func (c *Cluster) revokeLocked(l *lease, why string) {
	if l.revoked {
		return
	}
	l.revoked = true
	c.log.Warn("pipeline lease lost", "pipeline", l.pipeline, "why", why)
	if !l.handover {
		close(l.lost)
	}
}

// readOwners records who holds each pipeline, for status and metrics.
func (c *Cluster) readOwners(ctx context.Context, kv jetstream.KeyValue, pipes []string) {
	owners := make(map[string]Owner, len(pipes))
	for _, p := range pipes {
		e, err := kv.Get(ctx, leaseKey(p))
		if err != nil {
			continue
		}
		var lv leaseValue
		if json.Unmarshal(e.Value(), &lv) == nil {
			owners[p] = Owner(lv)
		}
	}
	c.mu.Lock()
	prev := c.owners
	c.owners = owners
	c.mu.Unlock()
	for _, p := range pipes {
		o, ok := owners[p]
		if old, had := prev[p]; had && (!ok || old.Replica != o.Replica) {
			metrics.ClusterOwner.DeleteLabelValues(p, old.Replica)
		}
		if !ok {
			metrics.ClusterLeaseSince.DeleteLabelValues(p)
			continue
		}
		metrics.ClusterOwner.WithLabelValues(p, o.Replica).Set(1)
		metrics.ClusterLeaseSince.WithLabelValues(p).Set(float64(o.Since.UnixNano()) / 1e9)
	}
}

// Acquire blocks until this replica holds pipeline's lease or ctx ends. lost
// is closed when the lease is lost or handed over; release gives it up
// once the pipeline stopped (deleting the key, so the next owner starts at
// once). It implements the bridge's Leaser.
func (c *Cluster) Acquire(ctx context.Context, pipeline string) (<-chan struct{}, func(), error) {
	ch := make(chan *lease, 1)
	c.mu.Lock()
	c.want[pipeline] = ch
	c.mu.Unlock()
	c.wake()
	select {
	case l := <-ch:
		return l.lost, func() { c.release(l) }, nil
	case <-ctx.Done():
		c.mu.Lock()
		if c.want[pipeline] == ch {
			delete(c.want, pipeline)
		}
		c.mu.Unlock()
		select {
		case l := <-ch:
			c.release(l)
		default:
		}
		return nil, nil, ctx.Err()
	}
}

func (c *Cluster) release(l *lease) {
	c.mu.Lock()
	if c.held[l.pipeline] == l {
		delete(c.held, l.pipeline)
	}
	kv, revoked, rev := c.kv, l.revoked, l.rev
	if !l.revoked && !l.handover {
		close(l.lost)
	}
	l.revoked = true
	c.mu.Unlock()
	if kv != nil && !revoked {
		ctx, cancel := context.WithTimeout(context.Background(), c.tick())
		defer cancel()
		if err := kv.Delete(ctx, leaseKey(l.pipeline), jetstream.LastRevision(rev)); err != nil {
			c.log.Warn("lease not released; it expires by itself", "pipeline", l.pipeline, "error", err)
		} else {
			c.log.Info("pipeline lease released", "pipeline", l.pipeline)
		}
	}
	c.wake()
}

// Valid reports whether this replica may still publish pipeline's events:
// it holds the lease and renewed it less than two thirds of the TTL ago.
func (c *Cluster) Valid(pipeline string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.held[pipeline]
	if l == nil || l.revoked || time.Since(l.renewed) >= c.opts.LeaseTTL*2/3 {
		return fmt.Errorf("pipeline %q: %w", pipeline, ErrNotOwner)
	}
	return nil
}

// Owner is who holds pipeline's lease as last seen, and whether it is this
// replica.
func (c *Cluster) Owner(pipeline string) (o Owner, mine bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.held[pipeline]; l != nil && !l.revoked {
		return Owner{Replica: c.opts.ReplicaID, Since: l.since}, true
	}
	return c.owners[pipeline], false
}

// Live is the last seen set of live replicas, sorted.
func (c *Cluster) Live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.live)
}
