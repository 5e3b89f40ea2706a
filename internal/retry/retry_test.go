package retry

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	base := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{base, Transient},
		{fmt.Errorf("nats publish: %w: %w", ErrNotConnected, base), NotConnected},
		{MarkPermanent(fmt.Errorf("topic: %w", base)), Permanent},
		{fmt.Errorf("sink: %w", MarkPermanent(base)), Permanent},
		// Not connected wins: the broker's return may fix it.
		{MarkPermanent(fmt.Errorf("%w", ErrNotConnected)), NotConnected},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !errors.Is(MarkPermanent(base), base) || MarkPermanent(nil) != nil {
		t.Error("MarkPermanent must keep the chain and leave nil alone")
	}
}

func TestBackoffGrowsWithJitterUpToMax(t *testing.T) {
	b := Backoff(100*time.Millisecond, time.Second)
	for i, interval := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		interval *= time.Millisecond
		d := b.NextBackOff()
		lo, hi := time.Duration(float64(interval)*(1-Jitter)), time.Duration(float64(interval)*(1+Jitter))
		if d < lo || d > hi {
			t.Errorf("delay %d = %v, want in [%v, %v]", i, d, lo, hi)
		}
	}
	if got := Backoff(time.Minute, time.Second).InitialInterval; got != time.Second {
		t.Errorf("initial above max: InitialInterval = %v, want the max", got)
	}
}
