package streams

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/names"
)

// TestCheckReportsEveryProblemByField: Check reports each problem once,
// under the Config field (nested ones by their path, a list's item by its
// index), in the order of the fields; defaults applied or not, a valid
// Config has none.
func TestCheckReportsEveryProblemByField(t *testing.T) {
	var got []string
	for _, c := range []Config{
		{NATS: &NATSConfig{Subject: "a.b*", JetStream: "A.B"}, Heartbeat: -1, MaxPending: -1, MaxSubscribers: -1,
			WindowEvents: -1, WindowBytes: -1, Coalesce: -time.Second,
			Auth: &Auth{BearerTokens: []string{"t", ""}, JWT: &JWT{Audience: "a"}}},
		{Path: "s", Kafka: &KafkaConfig{Topic: "a b", Start: "now"}, Auth: &Auth{Cookie: "c"}},
		{Path: "/s", NATS: &NATSConfig{}, Kafka: &KafkaConfig{}},
		{Path: "/s", Kafka: &KafkaConfig{}},
		{Path: "/s", NATS: &NATSConfig{}},
		{Path: "/s", NATS: &NATSConfig{Subject: strings.Repeat("a", names.MaxSubjectLen+1)}},
	} {
		c.Check(func(key, _ string) { got = append(got, key) })
	}
	want := []string{"Path", "NATS.Subject", "NATS.JetStream", "Heartbeat", "MaxPending", "MaxSubscribers", "WindowEvents",
		"WindowBytes", "Coalesce", "Auth.BearerTokens[1]", "Auth.JWT",
		"Path", "Kafka.Topic", "Kafka.Start", "Auth",
		"",
		"Kafka.Topic",
		"NATS.Subject",
		"NATS.Subject"}
	if !slices.Equal(got, want) {
		t.Errorf("keys = %q\nwant   %q", got, want)
	}

	for _, c := range []Config{
		{Path: "/s", NATS: &NATSConfig{Subject: "a.*.>"}},
		{Path: "/s", NATS: &NATSConfig{JetStream: "S"}},
		// A JetStream consumer's filter travels in a request's payload.
		{Path: "/s", NATS: &NATSConfig{Subject: strings.Repeat("a", names.MaxSubjectLen+1), JetStream: "S"}},
		{Path: "/s", Kafka: &KafkaConfig{Topic: "t"}, Heartbeat: DefaultHeartbeat, MaxPending: DefaultMaxPending,
			WindowEvents: DefaultWindowEvents, WindowBytes: DefaultWindowBytes},
	} {
		c.Check(func(key, msg string) { t.Errorf("valid config %s: %s: %s", c.Path, key, msg) })
	}
}
