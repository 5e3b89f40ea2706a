package natsconn

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/nats-io/nats.go"
)

// Core NATS has no acknowledgements: a PUB the server refuses for lack of
// permission is answered only by an asynchronous
// -ERR 'Permissions Violation for Publish to "subj"' and the connection stays
// up. nats.go records it synchronously as the connection's LastError (in the
// read loop, so before it handles the PONG of any later PING) and hands it
// to the ErrorHandler later, from its callback goroutine. Violations turns
// that into something a publisher can ask after its flush: "was any of my
// subjects refused since I started?".
//
// The registry is per connection because the bridge shares one connection
// between all its pipelines: a violation names its subject, so one
// pipeline's refusal never fails another pipeline's write (unless both
// publish to the refused subject, which is then refused for both).

// publishViolationPrefix starts the text of a publish refusal; the server
// formats the subject with %q (nats-server's pubPermissionViolation).
const publishViolationPrefix = "Permissions Violation for Publish to "

// maxRefusedSubjects bounds the memory of distinct refused subjects. A
// template subject can render unboundedly many; past the bound the history
// is forgotten and every Mark taken before counts as refused for every
// subject (a spurious retry, never a loss).
const maxRefusedSubjects = 1024

// recentErrs is how many handled permission errors Sync can recognise.
const recentErrs = 64

// Mark is a position in a connection's history of publish violations,
// returned by Violations.Sync.
type Mark uint64

// Violations records the publish permission violations the server reported
// on one connection, in the order it reported them. Get it with Watch; it
// is safe for concurrent use.
type Violations struct {
	nc weak.Pointer[nats.Conn] // weak: the registry must not keep a closed connection alive

	mu       sync.Mutex
	seq      uint64            // publish violations recorded
	subjects map[string]uint64 // refused subject → seq of its latest refusal
	floor    uint64            // refusals up to floor were forgotten
	recent   [recentErrs]error // last permission errors handled (identity), ring
	next     int               // next slot of recent
	pre      error             // the connection's LastError when the watch began
	wake     chan struct{}     // closed and replaced whenever an error is handled
}

var (
	watchMu sync.Mutex
	watched = map[weak.Pointer[nats.Conn]]*Violations{}
)

// Watch returns the violation record of nc, installing it on first use: it
// wraps nc's ErrorHandler (the previous handler, such as the logging one of
// Handlers, still runs after it). It works for any *nats.Conn, not only
// those built by Connect. Violations reported before the first Watch are
// not recorded. The record lives as long as nc does.
//
// A later nc.SetErrorHandler by someone else would remove the wrapper; the
// Sync of a write that saw a violation then waits until its context ends
// and fails (the batch is retried, never lost). Nothing in ssebridge does
// that.
func Watch(nc *nats.Conn) *Violations {
	if nc == nil {
		return nil
	}
	key := weak.Make(nc)
	watchMu.Lock()
	defer watchMu.Unlock()
	if v, ok := watched[key]; ok {
		return v
	}
	v := &Violations{nc: key, subjects: map[string]uint64{}, wake: make(chan struct{})}
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		v.record(err)
		if prev != nil {
			prev(c, sub, err)
		}
	})
	// Read after installing: an error set before this point went to the
	// old handler only and must not be waited for; one set after goes
	// through v.record.
	v.mu.Lock()
	v.pre = nc.LastError()
	v.mu.Unlock()
	watched[key] = v
	runtime.AddCleanup(nc, func(k weak.Pointer[nats.Conn]) {
		watchMu.Lock()
		delete(watched, k)
		watchMu.Unlock()
	}, key)
	return v
}

// PublishViolationSubject returns the subject of a publish permission
// violation error as reported to an ErrorHandler, and false for any other
// error (including subscription and reply-subject violations).
func PublishViolationSubject(err error) (string, bool) {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return "", false
	}
	msg := err.Error()
	i := strings.Index(msg, publishViolationPrefix)
	if i < 0 {
		return "", false
	}
	subj, err := strconv.Unquote(msg[i+len(publishViolationPrefix):])
	if err != nil || subj == "" {
		return "", false
	}
	return subj, true
}

// record runs on nats.go's callback goroutine, in the order the errors
// were read from the server.
func (v *Violations) record(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.recent[v.next] = err
	v.next = (v.next + 1) % recentErrs
	if subj, ok := PublishViolationSubject(err); ok {
		v.seq++
		if _, known := v.subjects[subj]; !known && len(v.subjects) >= maxRefusedSubjects {
			clear(v.subjects)
			v.floor = v.seq - 1
		}
		v.subjects[subj] = v.seq
	}
	close(v.wake)
	v.wake = make(chan struct{})
}

// handled reports whether err went through record (or predates Watch).
// v.mu is held.
func (v *Violations) handled(err error) bool {
	if err == v.pre {
		return true
	}
	for _, e := range v.recent {
		if e == err {
			return true
		}
	}
	return false
}

// Sync waits until every permission violation the connection has read from
// the server so far is recorded, and returns the current position. Called
// after a successful flush it therefore covers every refusal of the
// messages published before the flush, since the server answers a PUB's
// -ERR before the PONG of a later PING.
//
// It relies on nats.go keeping the newest error as LastError: when that is
// a permission violation, the callback goroutine is waited for until it has
// handled it (and so every error queued before it). The wait is usually
// nothing at all. It fails only when ctx ends first.
//
// Limits: a reconnect clears LastError (callers must treat a reconnect
// during a batch as a failure anyway), and another asynchronous error (a
// slow consumer on some subscription) arriving between a refusal and the
// PONG hides the refusal from this check if the callback goroutine has not
// reached it yet.
func (v *Violations) Sync(ctx context.Context) (Mark, error) {
	nc := v.nc.Value()
	var target error
	if nc != nil {
		target = nc.LastError()
	}
	for {
		v.mu.Lock()
		if target == nil || !errors.Is(target, nats.ErrPermissionViolation) || v.handled(target) {
			m := Mark(v.seq)
			v.mu.Unlock()
			return m, nil
		}
		wake := v.wake
		v.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, fmt.Errorf("natsconn: waiting for the error callback to report %q: %w", target, ctx.Err())
		}
		// A newer permission error, once handled, implies target was:
		// the callbacks run in order. Waiting for the newest also copes
		// with target falling out of the recent ring.
		if cur := nc.LastError(); cur != nil && errors.Is(cur, nats.ErrPermissionViolation) {
			target = cur
		}
	}
}

// RefusedSince reports whether the server refused a publish to subject
// after m (a Mark from Sync). Call Sync first to make the answer complete.
func (v *Violations) RefusedSince(m Mark, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if uint64(m) < v.floor {
		return true
	}
	return v.subjects[subject] > uint64(m)
}

// Changed is closed the next time an error is recorded; a publisher waiting
// for acknowledgements can select on it to notice a refusal early.
func (v *Violations) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.wake
}
