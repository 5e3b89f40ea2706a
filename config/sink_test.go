package config

import (
	"reflect"
	"slices"
	"testing"

	kafkasink "github.com/ssebridge/ssebridge/sinks/kafka"
)

// A sink block is its driver's: checked against the driver's options type
// and by the driver's Check, every problem at its line under its key.
func TestSinkBlockProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		vars map[string]string
		want []string
	}{
		{"misspelt driver", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      natss: {subject: s}
`, nil, []string{
			"f.yaml:8: pipelines[0].sink: needs exactly one of kafka or nats",
			"f.yaml:9: pipelines[0].sink.natss: unknown sink driver (did you mean nats?)",
		}},
		{"unknown driver", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      rabbitmq: {queue: q}
`, nil, []string{
			"f.yaml:8: pipelines[0].sink: needs exactly one of kafka or nats",
			"f.yaml:9: pipelines[0].sink.rabbitmq: unknown sink driver (registered: kafka, nats)",
		}},
		{"type and rule problems together", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: "a b"
        batch_size: many
        batch_timeout: 5
        compression: brotli
`, nil, []string{
			`f.yaml:10: pipelines[0].sink.kafka.topic: invalid Kafka topic "a b": character ' ' at offset 1 (allowed: letters, digits, '.', '_', '-')`,
			`f.yaml:11: pipelines[0].sink.kafka.batch_size: must be an integer, got "many"`,
			`f.yaml:12: pipelines[0].sink.kafka.batch_timeout: must be a duration like 90s or 1m30s, got "5"`,
			`f.yaml:13: pipelines[0].sink.kafka.compression: must be one of none, gzip, snappy, lz4, zstd, got "brotli"`,
		}},
		{"environment value not echoed", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: "${SUBJECT}"}
`, map[string]string{"SUBJECT": "a b"}, []string{
			`f.yaml:9: pipelines[0].sink.nats.subject: invalid NATS subject the value from the environment: whitespace or control character at offset 1`,
		}},
		{"window too large", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      nats: {subject: s, jetstream: true, max_in_flight: 10000000}
`, nil, []string{
			"f.yaml:9: pipelines[0].sink.nats.max_in_flight: must be at most 65536, got 10000000",
		}},
		{"empty block", header + `pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {nats: }
`, nil, []string{
			"f.yaml:8: pipelines[0].sink.nats.subject: required",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := problems(t, tt.src, tt.vars); !slices.Equal(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// A reload compares pipelines with reflect.DeepEqual: a sink block that
// moved in the file, or was requoted, is the same sink.
func TestSinkBlocksCompareByValue(t *testing.T) {
	a, err := parse("f.yaml", []byte(header+`pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {kafka: {topic: t, batch_size: 10, create_topic: &ct {partitions: 3}}}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parse("f.yaml", []byte(header+`# a comment

pipelines:
  - name: a
    source: {url: "http://x"}
    sink:
      kafka:
        topic: "t"   # quoted now
        batch_size: ${N}
        create_topic: {partitions: 3}
`), env(map[string]string{"N": "10"}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Pipelines[0], b.Pipelines[0]) {
		t.Errorf("equal sinks differ:\n%#v\n%#v", a.Pipelines[0].Sink.Block, b.Pipelines[0].Sink.Block)
	}
	c, err := parse("f.yaml", []byte(header+`pipelines:
  - name: a
    source: {url: "http://x"}
    sink: {kafka: {topic: t, batch_size: 11, create_topic: {partitions: 3}}}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.Pipelines[0], c.Pipelines[0]) {
		t.Error("a changed batch_size compares equal")
	}
}

// A Config built in code names its sink with NewSink and the driver's
// options; Validate checks it through the driver as Load does.
func TestValidateSinkBuiltInCode(t *testing.T) {
	c := &Config{
		Kafka: Kafka{Brokers: []string{"127.0.0.1:9092"}},
		Pipelines: []Pipeline{{
			Name:   "a",
			Source: Source{URL: "http://x"},
			Sink:   NewSink(kafkasink.Kind, kafkasink.Options{Topic: "t", RequiredAcks: kafkasink.RequiredAcksNone}),
		}},
	}
	if err := c.Validate(); err == nil || err.Error() != "pipelines[0].sink.kafka.required_acks: none is refused: writes are not acknowledged, so any failed write loses events already checkpointed; use all (the default)" {
		t.Errorf("Validate() = %v", err)
	}
	c.Pipelines[0].Sink = Sink{Kind: "rabbitmq"}
	if err := c.Validate(); err == nil || err.Error() != "pipelines[0].sink.rabbitmq: unknown sink driver (registered: kafka, nats)" {
		t.Errorf("Validate() = %v", err)
	}
	c.Pipelines[0].Sink = NewSink(kafkasink.Kind, map[string]any{"topic": []string{"not", "a", "string"}})
	if err := c.Validate(); err == nil {
		t.Error("a block of the wrong shape validated")
	}
}
