package nats_test

import (
	"strings"
	"testing"

	"github.com/ssebridge/ssebridge/internal/testbroker"
	natssink "github.com/ssebridge/ssebridge/sinks/nats"
)

// TestDefaultMaxInFlight: a block without max_in_flight (or with 0) gets
// DefaultMaxInFlight, applied by the driver itself.
func TestDefaultMaxInFlight(t *testing.T) {
	b := testbroker.StartNATS(t)
	e := jsEnv{nc: connect(t, b.URL())}
	s := e.open(t, "p", natssink.Options{Subject: "d", JetStream: true, Stream: &natssink.StreamOptions{Name: "D"}})
	if got, want := s.String(), "max_in_flight 256"; !strings.Contains(got, want) || natssink.DefaultMaxInFlight != 256 {
		t.Errorf("String() = %q, want it to say %q", got, want)
	}
}
