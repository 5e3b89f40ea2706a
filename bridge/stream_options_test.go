package bridge

import (
	"reflect"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/streams"
)

// TestStreamDefaultsAgree: streams applies its own defaults to a
// configuration built in code; they must be the YAML ones.
func TestStreamDefaultsAgree(t *testing.T) {
	if streams.DefaultHeartbeat != config.DefaultStreamHeartbeat ||
		streams.DefaultMaxPending != config.DefaultStreamMaxPending ||
		streams.DefaultWindowEvents != config.DefaultStreamWindowEvents ||
		streams.DefaultWindowBytes != config.DefaultStreamWindowBytes {
		t.Errorf("streams defaults (%v, %d, %d, %d) differ from config's (%v, %d, %d, %d)",
			streams.DefaultHeartbeat, streams.DefaultMaxPending, streams.DefaultWindowEvents, streams.DefaultWindowBytes,
			config.DefaultStreamHeartbeat, config.DefaultStreamMaxPending, config.DefaultStreamWindowEvents, config.DefaultStreamWindowBytes)
	}
}

// TestStreamOptions: every field of a stream's YAML block reaches the
// streams package.
func TestStreamOptions(t *testing.T) {
	sc := config.Stream{
		Path:           "/js",
		NATS:           &config.NATSStream{Subject: "a.>", JetStream: &config.JetStreamSelector{Stream: "S"}},
		Heartbeat:      config.Duration(7 * time.Second),
		MaxPending:     9,
		MaxSubscribers: 11,
		WindowEvents:   13,
		WindowBytes:    17,
		Auth: &config.Auth{BearerTokens: []string{"t"}, Cookie: "c",
			JWT: &config.JWT{HS256Secret: "s", RS256PublicKeyFile: "f", Audience: "a", Claim: "cl"}},
		CORS: &config.CORS{AllowedOrigins: []string{"*"}, AllowCredentials: true},
	}
	want := streams.Config{
		Path:           "/js",
		NATS:           &streams.NATSConfig{Subject: "a.>", JetStream: "S"},
		Heartbeat:      7 * time.Second,
		MaxPending:     9,
		MaxSubscribers: 11,
		WindowEvents:   13,
		WindowBytes:    17,
		Auth: &streams.Auth{BearerTokens: []string{"t"}, Cookie: "c",
			JWT: &streams.JWT{HS256Secret: "s", RS256PublicKeyFile: "f", Audience: "a", Claim: "cl"}},
		CORS: &streams.CORS{AllowedOrigins: []string{"*"}, AllowCredentials: true},
	}
	if got := streamOptions(sc); !reflect.DeepEqual(got, want) {
		t.Errorf("streamOptions = %+v, want %+v", got, want)
	}
	k := streamOptions(config.Stream{Path: "/k", Kafka: &config.KafkaStream{Topic: "t", Start: "earliest"}})
	if k.NATS != nil || k.Kafka == nil || *k.Kafka != (streams.KafkaConfig{Topic: "t", Start: "earliest"}) {
		t.Errorf("kafka stream mapped to %+v", k)
	}
}
