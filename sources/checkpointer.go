package sources

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssebridge/ssebridge/checkpoint"
	"github.com/ssebridge/ssebridge/internal/logging"
)

// checkpointer saves a worker's last acknowledged event ID in the
// background, so that delivery never waits for a checkpoint's fsync: the
// writer reports what the sink acknowledged (acked) and goes on, and run
// saves the latest value every CheckpointInterval, or as soon as
// CheckpointEvery events wait. While the store fails it counts, shows and
// rate-limits the failure, and delivery never runs more than MaxUnsaved
// events ahead of the store (room, hold), so that a crash replays at most
// that many.
type checkpointer struct {
	store    checkpoint.Store
	name     string
	interval time.Duration
	every    int
	max      int
	log      *slog.Logger
	failLog  *logging.Every
	failures prometheus.Counter
	savedAt  prometheus.Gauge

	kick   chan struct{} // wakes run for an early save
	saveMu sync.Mutex    // one Save at a time (run and the final save)

	mu        sync.Mutex // guards the fields below
	id        string     // last acknowledged ID
	have      bool
	pending   int  // acknowledged events not in the store
	urgent    bool // wake asked for a save whether or not CheckpointEvery events wait
	savedID   string
	haveSaved bool
	failing   bool // the last save failed
	errText   string
	errSince  time.Time
	changed   chan struct{} // closed and replaced after every save attempt
}

func newCheckpointer(store checkpoint.Store, cfg Config, log *slog.Logger, failures prometheus.Counter, savedAt prometheus.Gauge) *checkpointer {
	return &checkpointer{
		store: store, name: cfg.Name, interval: cfg.CheckpointInterval, every: cfg.CheckpointEvery, max: cfg.MaxUnsaved,
		log: log, failLog: logging.NewEvery(5 * time.Second), failures: failures, savedAt: savedAt,
		kick: make(chan struct{}, 1), changed: make(chan struct{}),
	}
}

// loaded records the value the store held at start.
func (c *checkpointer) loaded(id string) {
	c.mu.Lock()
	c.id, c.have, c.savedID, c.haveSaved = id, true, id, true
	c.mu.Unlock()
}

// acked records that the sink acknowledged n more events, the last with id.
func (c *checkpointer) acked(id string, n int) {
	c.mu.Lock()
	c.id, c.have = id, true
	c.pending += n
	due := c.pending >= c.every
	c.mu.Unlock()
	if due {
		c.poke()
	}
}

// wake asks run for a save now (during a sink outage, what was acknowledged
// before it is saved at once, not on the next tick).
func (c *checkpointer) wake() {
	c.mu.Lock()
	c.urgent = true
	c.mu.Unlock()
	c.poke()
}

func (c *checkpointer) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// due reports whether a poke still calls for a save: acked pokes on every
// acknowledgement while CheckpointEvery events wait, so pokes made during
// a save are stale once it saved them.
func (c *checkpointer) due() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.urgent || c.pending >= c.every
	c.urgent = false
	return d
}

// run saves until stop is closed; the caller then makes the final save.
func (c *checkpointer) run(stop <-chan struct{}) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-c.kick:
			if !c.due() {
				continue
			}
		case <-t.C:
		}
		_ = c.save(false)
	}
}

// room is how many more events may be acknowledged before hold stops
// delivery.
func (c *checkpointer) room() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store == nil {
		return int(^uint(0) >> 1)
	}
	return c.max - c.pending
}

// hold blocks while MaxUnsaved events are unsaved: only for an fsync while
// the store works (the save is asked for at once), for as long as it
// fails otherwise, then calling pause(true) before waiting and pause(false)
// after. It returns an error when ctx (Run's) ends first: what is still
// queued is then neither delivered nor checkpointed, and is fetched again
// on restart.
func (c *checkpointer) hold(ctx context.Context, pause func(bool)) error {
	if c.store == nil {
		return nil
	}
	paused := false
	defer func() {
		if paused {
			pause(false)
		}
	}()
	for {
		c.mu.Lock()
		blocked := c.pending >= c.max
		failing, pending, ch := c.failing, c.pending, c.changed
		c.mu.Unlock()
		if !blocked {
			return nil
		}
		c.wake()
		if failing && !paused {
			c.log.Error("checkpoint store failing: forwarding paused until a checkpoint is saved",
				"unsaved", pending, "max_unsaved", c.max)
			pause(true)
			paused = true
		}
		if !failing {
			// An fsync under way: bounded by checkpointSaveTimeout, and
			// worth finishing even when shutting down.
			<-ch
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("checkpoint store failing at shutdown: %d acknowledged events not checkpointed (fetched again on restart): %w", pending, ctx.Err())
		}
	}
}

// save writes the last acknowledged ID when it changed. final saves are
// the shutdown ones, logged louder when they fail.
func (c *checkpointer) save(final bool) error {
	if c.store == nil {
		return nil
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	id, have, pending := c.id, c.have, c.pending
	unchanged := !have || (c.haveSaved && id == c.savedID)
	c.mu.Unlock()
	if !unchanged {
		ctx, cancel := context.WithTimeout(context.Background(), checkpointSaveTimeout)
		err := c.store.Save(ctx, c.name, id)
		cancel()
		if err != nil {
			c.failed(fmt.Errorf("save checkpoint %q: %w", id, err), pending, final)
			return err
		}
		c.savedAt.Set(float64(time.Now().UnixNano()) / 1e9)
	}
	c.mu.Lock()
	if c.failing && !unchanged {
		c.log.Info("checkpoint store recovered", "checkpoint", id)
	}
	// Events without ids leave nothing new to write: the store already
	// holds the right value, failing or not.
	c.failing, c.errText, c.errSince = false, "", time.Time{}
	c.savedID, c.haveSaved = id, c.haveSaved || have
	c.pending -= pending // acked meanwhile stays pending
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// failed records a failed save: counted, shown in Status (hence
// /api/status and /readyz), and logged at most every few seconds with the
// number of failures the line stands for, since a store that refuses every
// write fails on every tick.
func (c *checkpointer) failed(err error, pending int, final bool) {
	c.failures.Inc()
	c.mu.Lock()
	if !c.failing {
		c.errSince = time.Now()
	}
	c.failing, c.errText = true, err.Error()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if final {
		c.log.Error("checkpoint not saved at shutdown: the events after it are fetched again on restart", "unsaved", pending, "error", err)
		return
	}
	if ok, more := c.failLog.Allow(); ok {
		c.log.Warn("checkpoint not saved, will retry", "unsaved", pending, "max_unsaved", c.max,
			"failures_since_last_line", more, "error", err)
	}
}

// fill copies the checkpoint's state into st.
func (c *checkpointer) fill(st *Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveSaved {
		st.CheckpointID = c.savedID
	}
	st.CheckpointError, st.CheckpointErrorSince = c.errText, c.errSince
	st.Unsaved = uint64(c.pending)
}
