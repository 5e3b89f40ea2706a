package sources

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// State is where a worker is in its life.
type State int32

// The states of a worker. Paused wins over the connection states: it means
// the sink is failing and reading waits for it.
const (
	// StateConnecting: a request is on its way.
	StateConnecting State = iota
	// StateConnected: the feed answered with an event stream.
	StateConnected
	// StateBackoff: waiting before reconnecting (see Status.NextRetryAt).
	StateBackoff
	// StatePaused: the sink is failing; reading waits until it recovers.
	StatePaused
	// StateStopped: Run returned (cancelled, 204, or a fatal error).
	StateStopped
)

var stateNames = [...]string{"connecting", "connected", "backoff", "paused", "stopped"}

// States lists every state, e.g. to reset a per-state gauge.
func States() []State {
	return []State{StateConnecting, StateConnected, StateBackoff, StatePaused, StateStopped}
}

// String returns the lower-case name used in logs, metrics and the status page.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Status is a snapshot of a worker, for /readyz and the status page.
type Status struct {
	Name  string
	State State
	// LastEventID is the ID of the last event the sink acknowledged (or
	// the resume ID before any); HasLastEventID tells "" from none.
	LastEventID    string
	HasLastEventID bool
	// CheckpointID is the ID last saved to the checkpoint store.
	CheckpointID string
	// CheckpointError is why the last checkpoint save failed, empty once
	// one succeeded; CheckpointErrorSince is when the failures began.
	// Unsaved counts the acknowledged events the checkpoint lags behind.
	CheckpointError      string
	CheckpointErrorSince time.Time
	Unsaved              uint64
	// Received counts events dispatched by the decoder, Forwarded those
	// acknowledged by the sink, Filtered those skipped by the event type
	// filter, Failed those skipped as too large.
	Received, Forwarded, Filtered, Failed uint64
	// Reconnects counts connection attempts after a failure or a drop.
	Reconnects uint64
	// LastError is the last connection or sink error, LastErrorAt when it
	// happened.
	LastError   string
	LastErrorAt time.Time
	// ConnectedSince is when the current connection was established
	// (zero when not connected).
	ConnectedSince time.Time
	// NextRetryAt is when the next reconnection is due (zero unless
	// State is StateBackoff).
	NextRetryAt time.Time
}

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrServerStopped ends Run when the feed answers 204 No Content: the
	// server asked clients to stop reconnecting.
	ErrServerStopped = errors.New("server answered 204 No Content: no more events")
	// ErrIdleTimeout: the connection was silent for IdleTimeout.
	ErrIdleTimeout = errors.New("idle timeout: no bytes from the server")
	// ErrStreamEnded: the server closed the stream.
	ErrStreamEnded = errors.New("server closed the stream")
	// ErrContentType: the response is not text/event-stream.
	ErrContentType = errors.New("response Content-Type is not text/event-stream")
	// ErrContentEncoding: the response is compressed with an encoding the
	// worker cannot decode (only gzip is); it happens when Header sets
	// Accept-Encoding, which turns off net/http's own decompression.
	ErrContentEncoding = errors.New("unsupported response Content-Encoding")
	// ErrBadRedirect: a redirect without a usable Location, or too many.
	ErrBadRedirect = errors.New("unusable redirect")
	// ErrShutdownTimeout: Run's flush after cancellation did not finish in
	// ShutdownTimeout; undelivered events were not checkpointed and will
	// be fetched again on restart.
	ErrShutdownTimeout = errors.New("shutdown timeout: in-flight events not delivered")
	// ErrInvalidConfig wraps every Config problem reported by New.
	ErrInvalidConfig = errors.New("invalid source configuration")
)

// StatusError is an HTTP answer other than a 2xx event stream.
type StatusError struct {
	Code   int
	Status string
	// RetryAfter is the parsed Retry-After header (429, 503), 0 if none.
	RetryAfter time.Duration
}

// Error describes the status, and the Retry-After delay when there was one.
func (e *StatusError) Error() string {
	s := "unexpected HTTP status " + e.Status
	if e.Status == "" {
		s = fmt.Sprintf("unexpected HTTP status %d %s", e.Code, http.StatusText(e.Code))
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (Retry-After %v)", e.RetryAfter)
	}
	return s
}

// Permanent reports whether the status means a configuration problem
// (a 4xx other than 408 and 429): retried, but only at the maximum backoff.
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != http.StatusRequestTimeout && e.Code != http.StatusTooManyRequests
}

// maxRetryAfter caps a server's Retry-After: a bogus value (or a clock
// years ahead) must not stop a source for longer than a day.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads delay-seconds or an HTTP date, capped at
// maxRetryAfter; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			secs = int64(maxRetryAfter / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}
