package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// benchInput is one stream shape, decoded whole per benchmark iteration.
type benchInput struct {
	name   string
	stream []byte
	events int
}

var benchInputs = []benchInput{
	smallEvents(1000),
	largeEvents(20),
	manyLineEvents(100),
	nonASCIIEvents(200),
}

// nonASCIIEvents are ~500 byte JSON events of prose in Cyrillic, Chinese,
// Greek and emoji: mostly 2 to 4 byte UTF-8 sequences.
func nonASCIIEvents(n int) (in benchInput) {
	var b bytes.Buffer
	prose := "Москва — столица России, 北京是中华人民共和国的首都, Αθήνα είναι η πρωτεύουσα της Ελλάδας 🎉🚀, "
	for i := range n {
		fmt.Fprintf(&b, "id: %d\nevent: edit\ndata: {\"seq\":%d,\"title\":\"%s\",\"comment\":\"%s\"}\n\n", i, i, prose, prose)
	}
	in.name, in.stream, in.events = "nonascii", b.Bytes(), n
	return in
}

// smallEvents is the common case: ~100 byte JSON events, each with a new id.
func smallEvents(n int) (in benchInput) {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "id: %d\nevent: update\ndata: {\"seq\":%d,\"user\":\"someone\",\"page\":\"Main_Page\",\"delta\":+42}\n\n", 1000000+i, i)
	}
	in.name, in.stream, in.events = "small", b.Bytes(), n
	return in
}

// largeEvents carries 64 KiB of data in one line per event.
func largeEvents(n int) (in benchInput) {
	var b bytes.Buffer
	data := strings.Repeat("abcdefghijklmnop", 64<<10/16)
	for i := range n {
		fmt.Fprintf(&b, "id: %d\ndata: %s\n\n", i, data)
	}
	in.name, in.stream, in.events = "large64k", b.Bytes(), n
	return in
}

// manyLineEvents has 100 data lines of 60 bytes per event, with CRLF.
func manyLineEvents(n int) (in benchInput) {
	var b bytes.Buffer
	line := strings.Repeat("x", 60)
	for i := range n {
		fmt.Fprintf(&b, "id: %d\r\n", i)
		for range 100 {
			fmt.Fprintf(&b, "data: %s\r\n", line)
		}
		b.WriteString("\r\n")
	}
	in.name, in.stream, in.events = "manylines", b.Bytes(), n
	return in
}

func BenchmarkDecode(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name+"/decoder", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			r := bytes.NewReader(in.stream)
			// One decoder, as one long-lived stream would have.
			d := NewDecoder(r)
			for b.Loop() {
				r.Reset(in.stream)
				d.Reset(r)
				n := 0
				for {
					if _, err := d.Next(); err != nil {
						break
					}
					n++
				}
				if n != in.events {
					b.Fatalf("%d events, want %d", n, in.events)
				}
			}
		})
		// ReadBatch, releasing each batch at once: memory is reused.
		b.Run(in.name+"/batch", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			r := bytes.NewReader(in.stream)
			d := NewDecoder(r)
			var batch Batch
			for b.Loop() {
				r.Reset(in.stream)
				d.Reset(r)
				n := 0
				for {
					err := d.ReadBatch(&batch, 256)
					n += len(batch.Events)
					batch.Release()
					if err != nil {
						break
					}
				}
				if n != in.events {
					b.Fatalf("%d events, want %d", n, in.events)
				}
			}
		})
		// The floor: only finding the line ends, the least any parser
		// that looks at one line at a time must do.
		b.Run(in.name+"/floor", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			for b.Loop() {
				splitLines(in.stream)
			}
		})
		// The memory floor: no parsing at all, only what the decoder's
		// contract (events own their memory) makes any decoder do per
		// event: take fresh memory and copy the event's data lines (joined
		// by LF) and its id into it, at offsets found before the timer
		// starts, carved from slabs as the decoder carves them. No decoder
		// that hands out owned events can cost less than this.
		evs := ownedValues(in.stream)
		if len(evs) != in.events {
			b.Fatalf("%s: memory floor found %d events, want %d", in.name, len(evs), in.events)
		}
		b.Run(in.name+"/memfloor", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			for b.Loop() {
				copyOwned(in.stream, evs, nil)
			}
		})
		// The same copies into one reused buffer: the difference from
		// memfloor is the price of fresh memory (allocation and garbage
		// collection), not of copying.
		b.Run(in.name+"/memfloor-reused", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			reuse := make([]byte, 0, slabSize)
			for b.Loop() {
				copyOwned(in.stream, evs, &reuse)
			}
		})
		b.Run(in.name+"/scanner", func(b *testing.B) {
			b.SetBytes(int64(len(in.stream)))
			b.ReportAllocs()
			r := bytes.NewReader(in.stream)
			buf := make([]byte, 64<<10) // reused, as by the decoder
			for b.Loop() {
				r.Reset(in.stream)
				n := 0
				naiveDecode(r, buf, func(Event) { n++ })
				if n != in.events {
					b.Fatalf("%d events, want %d", n, in.events)
				}
			}
		})
	}
}

// splitLines only finds every line end of an in-memory stream: no copy,
// no parsing, no allocation.
func splitLines(s []byte) (n int) {
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		n += i
		s = s[i+1:]
	}
	return n
}

// ownedEvent locates, in a stream, the values one dispatched event owns:
// its data values and its id value.
type ownedEvent struct {
	data [][2]int // start and end of each data value
	id   [2]int   // start and end of the id value; empty when none
	size int      // len(Data): the data values joined by LF
}

// ownedValues finds the events of a benchmark stream (LF or CRLF lines,
// "name: value" fields only) with a plain parser, outside any timing.
func ownedValues(s []byte) (evs []ownedEvent) {
	var ev ownedEvent
	for start := 0; start < len(s); {
		i := bytes.IndexByte(s[start:], '\n')
		if i < 0 {
			break
		}
		end := start + i
		if end > start && s[end-1] == '\r' {
			end--
		}
		line := s[start:end]
		switch {
		case len(line) == 0:
			if len(ev.data) > 0 {
				evs = append(evs, ev)
			}
			ev = ownedEvent{}
		case bytes.HasPrefix(line, []byte("data: ")):
			if len(ev.data) > 0 {
				ev.size++
			}
			ev.data = append(ev.data, [2]int{start + 6, end})
			ev.size += end - start - 6
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.id = [2]int{start + 4, end}
		}
		start += i + 1
	}
	return evs
}

// copyOwned copies every event's Data and ID out of s, into fresh memory
// carved as the decoder carves it, or, with reuse, into one buffer that is
// overwritten for every event. It returns the bytes copied.
func copyOwned(s []byte, evs []ownedEvent, reuse *[]byte) (n int) {
	var slab []byte
	for i := range evs {
		ev := &evs[i]
		need := ev.size + ev.id[1] - ev.id[0]
		var dst []byte
		switch {
		case reuse != nil:
			if cap(*reuse) < need {
				*reuse = make([]byte, 0, need)
			}
			dst = (*reuse)[:0]
		case need > slabMax:
			dst = make([]byte, 0, need)
		default:
			if need > cap(slab)-len(slab) {
				slab = make([]byte, 0, slabSize)
			}
			dst = slab[len(slab):]
			slab = slab[:len(slab)+need]
		}
		for j, v := range ev.data {
			if j > 0 {
				dst = append(dst, '\n')
			}
			dst = append(dst, s[v[0]:v[1]]...)
		}
		dst = append(dst, s[ev.id[0]:ev.id[1]]...)
		n += len(dst)
	}
	return n
}

// naiveDecode is the baseline: the parser most people write first, on
// bufio.Scanner lines (LF and CRLF only) and string operations.
func naiveDecode(r io.Reader, buf []byte, emit func(Event)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, DefaultMaxEventSize)
	var data strings.Builder
	var hasData bool
	id, typ := "", ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				t := typ
				if t == "" {
					t = DefaultType
				}
				emit(Event{ID: id, Type: t, Data: []byte(strings.TrimSuffix(data.String(), "\n"))})
			}
			data.Reset()
			hasData, typ = false, ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "data":
			data.WriteString(value)
			data.WriteString("\n")
			hasData = true
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	ev := Event{ID: "1000000", Type: "update", Data: []byte(`{"seq":1,"user":"someone","page":"Main_Page","delta":+42}`)}
	buf, _ := AppendEvent(nil, ev)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		dst, _ = AppendEvent(dst[:0], ev)
	}
}

// TestDecodeAllocsPerEvent holds the allocation target: at most one
// allocation per dispatched event (Data, which a new ID shares or takes
// from a slab), none for unchanged types and nothing per line. It measures
// the marginal cost of events, decoding each stream once and twice over,
// so the decoder's one-off setup and buffer growth do not count.
func TestDecodeAllocsPerEvent(t *testing.T) {
	count := func(stream []byte) float64 {
		r := bytes.NewReader(stream)
		return testing.AllocsPerRun(5, func() {
			r.Reset(stream)
			d := NewDecoder(r)
			for {
				if _, err := d.Next(); err != nil {
					break
				}
			}
		})
	}
	for _, in := range benchInputs {
		once := count(in.stream)
		twice := count(append(append([]byte(nil), in.stream...), in.stream...))
		if perEvent := (twice - once) / float64(in.events); perEvent > 1 {
			t.Errorf("%s: %.3f allocations per event, want <= 1", in.name, perEvent)
		}
		t.Logf("%s: %v allocations for %d events, %v for twice as many", in.name, once, in.events, twice)
	}
}

// TestMemFloorCopiesWhatDecoderOwns keeps the memory floor honest: it must
// copy exactly the bytes the decoder hands out (every Data and ID), or it
// would be a floor for less work than decoding.
func TestMemFloorCopiesWhatDecoderOwns(t *testing.T) {
	for _, in := range benchInputs {
		d := NewDecoder(bytes.NewReader(in.stream))
		want := 0
		for {
			ev, err := d.Next()
			if err != nil {
				break
			}
			want += len(ev.Data) + len(ev.ID)
		}
		evs := ownedValues(in.stream)
		var reuse []byte
		if got := copyOwned(in.stream, evs, nil); got != want {
			t.Errorf("%s: memory floor copies %d bytes, decoder owns %d", in.name, got, want)
		}
		if got := copyOwned(in.stream, evs, &reuse); got != want {
			t.Errorf("%s: reused memory floor copies %d bytes, decoder owns %d", in.name, got, want)
		}
	}
}
