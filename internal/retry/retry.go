// Package retry is ssebridge's one retry policy: the backoff every loop
// uses (the source's reconnections, its sink retries, the pipeline
// supervisor) and the classification that decides how a failure is
// retried. Plugins report what went wrong; the owner of the loop backs off.
package retry

import (
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Jitter is the random spread of every delay, ±25%, so that many bridges
// (or pipelines) do not retry in step.
const Jitter = 0.25

// Backoff returns the policy: exponential from initial, doubling on every
// failure, with Jitter, capped at max, never giving up. Reset it after a
// success.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(initial, max)),
		backoff.WithRandomizationFactor(Jitter),
		backoff.WithMultiplier(2),
		backoff.WithMaxInterval(max),
		backoff.WithMaxElapsedTime(0),
	)
}

// ErrNotConnected marks (wrapped) a failure whose cause is a broker that
// cannot be reached right now: nothing is wrong with the data or the
// configuration, and the work goes on as soon as the connection is back.
var ErrNotConnected = errors.New("sink not connected")

// Class is how a failure is retried.
type Class uint8

const (
	// Transient: retry with the backoff.
	Transient Class = iota
	// NotConnected: the broker is unreachable; retry soon and often (its
	// return is what matters), showing the pipeline as paused.
	NotConnected
	// Permanent: retrying will not help until someone changes something
	// (configuration, permissions); retry at the longest interval only, and
	// say so at error level.
	Permanent
)

// String names the class in logs.
func (c Class) String() string {
	switch c {
	case NotConnected:
		return "not_connected"
	case Permanent:
		return "permanent"
	}
	return "transient"
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// MarkPermanent marks err as a failure retrying alone will not fix.
func MarkPermanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Classify says how err is retried: ErrNotConnected anywhere in its chain
// makes it NotConnected, MarkPermanent makes it Permanent, anything else
// is Transient.
func Classify(err error) Class {
	var p permanent
	switch {
	case errors.Is(err, ErrNotConnected):
		return NotConnected
	case errors.As(err, &p):
		return Permanent
	}
	return Transient
}
