package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/sinks"
)

// This file adds a sink driver the way a third broker would be added: a
// package of its own (here, this test file) that registers a driver, and
// an import. Nothing in config, bridge or sinks names it, yet its block is
// checked with FILE:LINE errors and a pipeline runs through it.

// memoryOptions are the memory driver's block.
type memoryOptions struct {
	// Prefix is put before every stored event ID.
	Prefix string `yaml:"prefix"`
	// Capacity bounds the stored events (0: no bound).
	Capacity int `yaml:"capacity"`
}

// memorySink stores the IDs it is given, acknowledging every message.
type memorySink struct {
	opts memoryOptions
	mu   sync.Mutex
	ids  []string
}

func (s *memorySink) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range msgs {
		if s.opts.Capacity > 0 && len(s.ids) == s.opts.Capacity {
			return i, errors.New("memory sink: full")
		}
		s.ids = append(s.ids, s.opts.Prefix+m.Event.ID)
	}
	return len(msgs), nil
}

func (s *memorySink) Close() error { return nil }

func (s *memorySink) stored() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// memorySinks are the sinks the driver opened, by pipeline.
var memorySinks sync.Map

func init() {
	sinks.Register("memory", sinks.Driver[memoryOptions]{
		Check: func(o *memoryOptions, p sinks.Problems) {
			if o.Prefix == "" {
				p.Add("prefix", "required")
			}
			p.NonNegative("capacity", int64(o.Capacity))
		},
		Open: func(_ context.Context, _ sinks.Deps, pipeline string, o memoryOptions) (sinks.Sink, error) {
			s := &memorySink{opts: o}
			memorySinks.Store(pipeline, s)
			return s, nil
		},
	})
}

func memoryConfig(url, block string) string {
	return fmt.Sprintf(`pipelines:
  - name: mem
    source: {url: %q}
    sink:
      memory:
%s`, url, block)
}

// TestPluggedDriverBlockIsChecked: the driver's block is decoded into its
// options type and checked by its Check, every problem with FILE:LINE and
// key, like the built-in drivers' blocks.
func TestPluggedDriverBlockIsChecked(t *testing.T) {
	_, err := config.Parse("drivers.yaml", []byte(memoryConfig("http://127.0.0.1:1/feed", `        capacity: -1
        colour: red
        prefix: 7x
`)))
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse = %v, want config.Errors", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Error())
	}
	want := []string{
		"drivers.yaml:6: pipelines[0].sink.memory.capacity: must not be negative",
		"drivers.yaml:7: pipelines[0].sink.memory.colour: unknown key",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	_, err = config.Parse("drivers.yaml", []byte(memoryConfig("http://127.0.0.1:1/feed", `        capacity: lots
`)))
	// A missing key is reported at its block's line.
	if err == nil || err.Error() != `drivers.yaml:5: pipelines[0].sink.memory.prefix: required
drivers.yaml:6: pipelines[0].sink.memory.capacity: must be an integer, got "lots"` {
		t.Errorf("Parse = %v", err)
	}
}

// TestPluggedDriverRunsAPipeline: a pipeline whose sink block names the
// memory driver runs through it in the bridge: events from the feed reach
// the sink, in order, with the options from the block.
func TestPluggedDriverRunsAPipeline(t *testing.T) {
	f := newFeed(t)
	cfg, err := config.Parse("drivers.yaml", []byte(fmt.Sprintf("data_dir: %q\n", t.TempDir())+memoryConfig(f.url("/mem"), `        prefix: "ev-"
`)))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	var s *memorySink
	eventually(t, "three events in the memory sink", func() bool {
		v, ok := memorySinks.Load("mem")
		if !ok {
			return false
		}
		s = v.(*memorySink)
		return len(s.stored()) >= 3
	})
	// The feed numbers its events 1, 2, 3...
	ids := s.stored()
	for i, id := range ids {
		if want := fmt.Sprintf("ev-%d", i+1); id != want {
			t.Fatalf("stored ids %q: #%d is %q, want %q", ids, i, id, want)
		}
	}
	st, ok := pipelineStatus(t, r.base, "mem")
	if !ok || st.Sink != "memory" {
		t.Errorf("status %+v, want sink memory", st)
	}
}
