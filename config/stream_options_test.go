package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/streams"
)

// TestStreamDefaultsAgree: streams applies its own defaults to a
// configuration built in code; they must be the YAML ones.
func TestStreamDefaultsAgree(t *testing.T) {
	if streams.DefaultHeartbeat != DefaultStreamHeartbeat ||
		streams.DefaultMaxPending != DefaultStreamMaxPending ||
		streams.DefaultWindowEvents != DefaultStreamWindowEvents ||
		streams.DefaultWindowBytes != DefaultStreamWindowBytes {
		t.Errorf("streams defaults (%v, %d, %d, %d) differ from config's (%v, %d, %d, %d)",
			streams.DefaultHeartbeat, streams.DefaultMaxPending, streams.DefaultWindowEvents, streams.DefaultWindowBytes,
			DefaultStreamHeartbeat, DefaultStreamMaxPending, DefaultStreamWindowEvents, DefaultStreamWindowBytes)
	}
}

// TestStreamOptions: every field of a stream's YAML block reaches the
// streams package.
func TestStreamOptions(t *testing.T) {
	sc := Stream{
		Path:           "/js",
		NATS:           &NATSStream{Subject: "a.>", JetStream: &JetStreamSelector{Stream: "S"}},
		Heartbeat:      Duration(7 * time.Second),
		MaxPending:     9,
		MaxSubscribers: 11,
		WindowEvents:   13,
		WindowBytes:    17,
		Coalesce:       Duration(19 * time.Millisecond),
		Auth: &Auth{BearerTokens: []string{"t"}, Cookie: "c",
			JWT: &JWT{HS256Secret: "s", RS256PublicKeyFile: "f", Audience: "a", Claim: "cl"}},
		CORS: &CORS{AllowedOrigins: []string{"*"}, AllowCredentials: true},
	}
	want := streams.Config{
		Path:           "/js",
		NATS:           &streams.NATSConfig{Subject: "a.>", JetStream: "S"},
		Heartbeat:      7 * time.Second,
		MaxPending:     9,
		MaxSubscribers: 11,
		WindowEvents:   13,
		WindowBytes:    17,
		Coalesce:       19 * time.Millisecond,
		Auth: &streams.Auth{BearerTokens: []string{"t"}, Cookie: "c",
			JWT: &streams.JWT{HS256Secret: "s", RS256PublicKeyFile: "f", Audience: "a", Claim: "cl"}},
		CORS: &streams.CORS{AllowedOrigins: []string{"*"}, AllowCredentials: true},
	}
	if got := sc.Options(); !reflect.DeepEqual(got, want) {
		t.Errorf("Options() = %+v, want %+v", got, want)
	}
	k := (Stream{Path: "/k", Kafka: &KafkaStream{Topic: "t", Start: "earliest"}}).Options()
	if k.NATS != nil || k.Kafka == nil || *k.Kafka != (streams.KafkaConfig{Topic: "t", Start: "earliest"}) {
		t.Errorf("kafka stream mapped to %+v", k)
	}
}
