package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// TestReadBatchMatchesNext decodes every benchmark shape (small, 64 KiB,
// many lines, non-ASCII) and a mix of them with ReadBatch, releasing
// batches on another goroutine, and compares with Next.
func TestReadBatchMatchesNext(t *testing.T) {
	var mixed []byte
	for _, in := range benchInputs {
		mixed = append(mixed, in.stream...)
	}
	inputs := append(benchInputs, benchInput{name: "mixed", stream: mixed})
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			var want []Event
			d := NewDecoder(bytes.NewReader(in.stream))
			for {
				ev, err := d.Next()
				if err != nil {
					break
				}
				want = append(want, ev)
			}
			for _, max := range []int{1, 7, 256} {
				release := make(chan *Batch, 4)
				var wg sync.WaitGroup
				wg.Go(func() {
					for b := range release {
						b.Release()
					}
				})
				d := NewDecoder(shortReads{r: bytes.NewReader(in.stream), n: 3000})
				i := 0
				for {
					b := new(Batch)
					err := d.ReadBatch(b, max)
					if len(b.Events) > max {
						t.Fatalf("max %d: %d events", max, len(b.Events))
					}
					for _, ev := range b.Events {
						if i >= len(want) || ev.ID != want[i].ID || ev.Type != want[i].Type || !bytes.Equal(ev.Data, want[i].Data) {
							t.Fatalf("max %d: event %d differs", max, i)
						}
						i++
					}
					release <- b
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				close(release)
				wg.Wait()
				if i != len(want) {
					t.Fatalf("max %d: %d events, want %d", max, i, len(want))
				}
			}
		})
	}
}

// shortReads hands out reads of at most n bytes, so batches end at read
// boundaries and events span reads.
type shortReads struct {
	r io.Reader
	n int
}

func (r shortReads) Read(p []byte) (int, error) { return r.r.Read(p[:min(len(p), r.n)]) }

// TestReadBatchHeldAcrossReads holds every batch until the end of the
// stream, then checks every event: the events handed out in place from
// the read buffer must survive all the reads after them.
func TestReadBatchHeldAcrossReads(t *testing.T) {
	var stream []byte
	for _, in := range benchInputs {
		stream = append(stream, in.stream...)
	}
	var want []Event
	d := NewDecoder(bytes.NewReader(stream))
	for {
		ev, err := d.Next()
		if err != nil {
			break
		}
		want = append(want, ev)
	}
	for _, n := range []int{700, 3000, 40000} {
		d := NewDecoder(shortReads{r: bytes.NewReader(stream), n: n})
		var held []*Batch
		for {
			b := new(Batch)
			err := d.ReadBatch(b, 5)
			held = append(held, b)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		i := 0
		for _, b := range held {
			for _, ev := range b.Events {
				if i >= len(want) || ev.ID != want[i].ID || ev.Type != want[i].Type || !bytes.Equal(ev.Data, want[i].Data) {
					t.Fatalf("reads of %d: event %d changed while its batch was held", n, i)
				}
				i++
			}
			b.Release()
		}
		if i != len(want) {
			t.Fatalf("reads of %d: %d events, want %d", n, i, len(want))
		}
	}
}

// TestReadBatchDoesNotWait checks that a batch is handed over as soon as
// the input has no complete event left, instead of waiting for the rest
// of a live stream. In a synctest bubble, a ReadBatch still waiting on
// the pipe once every goroutine is blocked is exactly the bug.
func TestReadBatchDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() {
			_, _ = pw.Write([]byte("id: 1\ndata: a\n\nid: 2\ndata: b\n\ndata: partial"))
		}()
		d := NewDecoder(pr)
		var b Batch
		done := make(chan error, 1)
		go func() { done <- d.ReadBatch(&b, 256) }()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("ReadBatch waited for more input while holding complete events")
		}
		if len(b.Events) != 2 || string(b.Events[1].Data) != "b" || d.LastEventID() != "2" {
			t.Fatalf("events %q, last id %q", b.Events, d.LastEventID())
		}
		b.Release()
		// The partial event completes in a later write.
		go func() { _, _ = pw.Write([]byte("\n\n")); pw.Close() }()
		if err := d.ReadBatch(&b, 256); err != nil || len(b.Events) != 1 || string(b.Events[0].Data) != "partial" || b.Events[0].ID != "2" {
			t.Fatalf("ReadBatch = %v, %q", err, b.Events)
		}
		if err := d.ReadBatch(&b, 256); err != io.EOF || len(b.Events) != 0 {
			t.Fatalf("at the end: %v, %q", err, b.Events)
		}
	})
}

// TestReadBatchLastIDOutlivesRelease checks that the last event ID, kept
// by the decoder across batches, never lives in memory a released batch
// hands back for reuse.
func TestReadBatchLastIDOutlivesRelease(t *testing.T) {
	stream := "event: e1\nid: first\ndata: 1\n\n" + strings.Repeat("data: "+strings.Repeat("x", 100)+"\n\n", 2000)
	d := NewDecoder(strings.NewReader(stream))
	var b Batch
	if err := d.ReadBatch(&b, 1); err != nil || len(b.Events) != 1 {
		t.Fatal(err)
	}
	b.Release()
	for {
		err := d.ReadBatch(&b, 16)
		for _, ev := range b.Events {
			if ev.ID != "first" || ev.Type != DefaultType {
				t.Fatalf("event id %q type %q", ev.ID, ev.Type)
			}
		}
		b.Release()
		if err != nil {
			break
		}
	}
	if d.LastEventID() != "first" {
		t.Fatalf("LastEventID %q", d.LastEventID())
	}
}

// TestReadBatchTooLarge checks that an oversized event is reported with
// the events before it, and decoding goes on.
func TestReadBatchTooLarge(t *testing.T) {
	d := NewDecoder(strings.NewReader("data: a\n\ndata: " + strings.Repeat("x", 100) + "\n\ndata: b\n\n"))
	d.SetMaxEventSize(50)
	var b Batch
	err := d.ReadBatch(&b, 10)
	if !errors.Is(err, ErrEventTooLarge) || len(b.Events) != 1 || string(b.Events[0].Data) != "a" {
		t.Fatalf("ReadBatch = %v, %q", err, b.Events)
	}
	if err := d.ReadBatch(&b, 10); err != nil || len(b.Events) != 1 || string(b.Events[0].Data) != "b" {
		t.Fatalf("after: %v, %q", err, b.Events)
	}
}

// TestReadBatchAllocs holds the point of batches: once the pool is warm,
// a stream allocates nothing per event (a fraction for the rare new type
// or per-batch bookkeeping), whatever the event size.
func TestReadBatchAllocs(t *testing.T) {
	for _, in := range benchInputs {
		r := bytes.NewReader(in.stream)
		d := NewDecoder(r)
		var b Batch
		run := func() {
			r.Reset(in.stream)
			d.Reset(r)
			for {
				err := d.ReadBatch(&b, 256)
				b.Release()
				if err != nil {
					break
				}
			}
		}
		run() // warm the pool
		perEvent := testing.AllocsPerRun(5, run) / float64(in.events)
		if perEvent > 0.1 {
			t.Errorf("%s: %.3f allocations per event, want about 0", in.name, perEvent)
		}
		t.Logf("%s: %.4f allocations per event", in.name, perEvent)
	}
}
