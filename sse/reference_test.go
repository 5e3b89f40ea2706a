package sse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// refEvent is an event of the reference parser.
type refEvent struct{ id, typ, data string }

// referenceDecode is the WHATWG "event stream interpretation" written as
// plainly as possible, with no buffering and no shortcuts, to check the
// decoder's values against: decode the whole stream as UTF-8 (maximal
// subparts of ill-formed sequences become U+FFFD), strip one BOM, split
// into lines at CR LF, CR or LF, and apply each line.
func referenceDecode(in []byte) (evs []refEvent, lastID string) {
	s := refUTF8(in)
	s = strings.TrimPrefix(s, "\uFEFF")
	var data strings.Builder
	typ, id := "", ""
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated line is not a line; its event is never dispatched
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		if line == "" {
			lastID = id
			if data.Len() == 0 {
				typ = ""
				continue
			}
			t := typ
			if t == "" {
				t = "message"
			}
			evs = append(evs, refEvent{id: lastID, typ: t, data: strings.TrimSuffix(data.String(), "\n")})
			data.Reset()
			typ = ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	return evs, lastID
}

// refUTF8 decodes b as the WHATWG UTF-8 decoder does, following its
// algorithm (bytes needed, bytes seen, lower and upper boundary) step by
// step rather than any code of the package.
func refUTF8(b []byte) string {
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune('\uFFFD')
			}
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen, lower, upper = 0, 0, 0, 0x80, 0xBF
			out.WriteRune('\uFFFD')
			i-- // prepend the byte to the stream: process it again
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		seen++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune('\uFFFD')
	}
	return out.String()
}

// FuzzDecodeReference compares the decoded values (every ID, type and
// data, and the last event ID) with the reference parser, reading the
// input whole, one byte at a time and through a tiny read buffer.
func FuzzDecodeReference(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in), uint8(0))
	}
	f.Add([]byte("\xEF\xBB\xBFdata: Москва\xE2\x82\r\nid: 北\xF0\x9F\x8E\n\rdata:x\rdata\n\n"), uint8(3))
	f.Add([]byte(strings.Repeat("data: é🎉\n", 40)+"\n"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, bufSeed uint8) {
		want, wantLast := referenceDecode(in)
		// The reference's last ID at EOF counts only completed events'
		// blank lines, like LastEventID.
		for _, rd := range []struct {
			name string
			r    io.Reader
			size int
		}{
			{"whole", bytes.NewReader(in), readBufSize},
			{"one byte", iotest.OneByteReader(bytes.NewReader(in)), readBufSize},
			{"tiny buffer", iotest.HalfReader(bytes.NewReader(in)), minBufSize + int(bufSeed%32)},
		} {
			d := newDecoderSize(rd.r, rd.size)
			var got []refEvent
			for {
				ev, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", rd.name, err)
				}
				got = append(got, refEvent{ev.ID, ev.Type, string(ev.Data)})
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d events, reference %d\ngot  %q\nwant %q", rd.name, len(got), len(want), got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: event %d\ngot  %q\nwant %q", rd.name, i, got[i], want[i])
				}
			}
			if d.LastEventID() != wantLast {
				t.Fatalf("%s: LastEventID %q, reference %q", rd.name, d.LastEventID(), wantLast)
			}
		}
		// ReadBatch, with each batch held while the next is read (its
		// memory must stay intact until Release): through a tiny buffer,
		// and in short reads through the default one, where single data
		// lines are handed out in place from read buffers that a read
		// replaces while a batch holds events in them.
		for _, bc := range []struct {
			r    io.Reader
			size int
		}{
			{iotest.HalfReader(bytes.NewReader(in)), minBufSize + int(bufSeed%32)},
			{iotest.OneByteReader(bytes.NewReader(in)), readBufSize},
			{shortReads{r: bytes.NewReader(in), n: 1 + int(bufSeed%64)}, readBufSize},
		} {
			d := newDecoderSize(bc.r, bc.size)
			var got []refEvent
			var prev, cur Batch
			var prevCopy []refEvent
			for {
				err := d.ReadBatch(&cur, 1+int(bufSeed%5))
				for i, ev := range prev.Events {
					if (refEvent{ev.ID, ev.Type, string(ev.Data)}) != prevCopy[i] {
						t.Fatalf("batch: held event changed: %q, was %q", ev, prevCopy[i])
					}
				}
				prev.Release()
				prevCopy = prevCopy[:0]
				for _, ev := range cur.Events {
					e := refEvent{ev.ID, ev.Type, string(ev.Data)}
					got = append(got, e)
					prevCopy = append(prevCopy, e)
				}
				prev, cur = cur, prev
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("batch: %v", err)
				}
			}
			prev.Release()
			if len(got) != len(want) {
				t.Fatalf("batch: %d events, reference %d\ngot  %q\nwant %q", len(got), len(want), got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("batch: event %d\ngot  %q\nwant %q", i, got[i], want[i])
				}
			}
			if d.LastEventID() != wantLast {
				t.Fatalf("batch: LastEventID %q, reference %q", d.LastEventID(), wantLast)
			}
		}
	})
}
