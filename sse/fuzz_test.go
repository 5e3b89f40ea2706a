package sse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// FuzzDecode checks the decoder never panics, never returns anything the
// standard cannot produce, and gives the same transcript whatever the
// chunking of the input, with and without a tiny size limit.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in), uint64(len(tc.in)), uint8(tc.max))
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, max uint8) {
		for _, limit := range []int{0, int(max)%32 + 1} {
			want := decodeAllSize(t, bytes.NewReader(in), limit, "", 4096)
			if got := decodeAllSize(t, iotest.OneByteReader(bytes.NewReader(in)), limit, "", 4096); !reflect.DeepEqual(got, want) {
				t.Fatalf("one byte at a time, max %d:\n%s\nwhole:\n%s", limit, got, want)
			}
			rng := rand.New(rand.NewPCG(seed, 0))
			var chunks []string
			for s := string(in); len(s) > 0; {
				n := 1 + rng.IntN(len(s))
				chunks = append(chunks, s[:n])
				s = s[n:]
			}
			// A tiny read buffer moves every buffer boundary, partial line
			// and compaction into reach of short inputs.
			size := minBufSize + int(seed%24)
			if got := decodeAllSize(t, &chunkReader{chunks: chunks}, limit, "", size); !reflect.DeepEqual(got, want) {
				t.Fatalf("split %q, max %d, buffer %d:\n%s\nwhole:\n%s", chunks, limit, size, got, want)
			}
		}

		// Returned events must stay intact while decoding goes on: their
		// memory is carved from slabs the decoder keeps writing to.
		type kept struct {
			ev       Event
			id, data string
		}
		var keep []kept
		defer func() {
			for i, k := range keep {
				if k.ev.ID != k.id || string(k.ev.Data) != k.data {
					t.Fatalf("event %d changed after return: %q %q, was %q %q", i, k.ev.ID, k.ev.Data, k.id, k.data)
				}
			}
		}()
		d := newDecoderSize(bytes.NewReader(in), minBufSize+int(seed%64))
		d.OnComment(func(s string) {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n") {
				t.Fatalf("comment %q", s)
			}
		})
		for {
			ev, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !utf8.Valid(ev.Data) || bytes.IndexByte(ev.Data, '\r') >= 0 {
				t.Fatalf("data %q", ev.Data)
			}
			if ev.Type == "" || !utf8.ValidString(ev.Type) || strings.ContainsAny(ev.Type, "\r\n") {
				t.Fatalf("type %q", ev.Type)
			}
			if !utf8.ValidString(ev.ID) || strings.ContainsAny(ev.ID, "\r\n\x00") {
				t.Fatalf("id %q", ev.ID)
			}
			keep = append(keep, kept{ev, strings.Clone(ev.ID), string(ev.Data)})
			if ev.ID != d.LastEventID() {
				t.Fatalf("event id %q but LastEventID %q", ev.ID, d.LastEventID())
			}
		}
	})
}

// FuzzRoundTrip checks decode(encode(e)) == e for every valid event, with
// line ends in Data normalised to LF as the format requires, and that
// comments come back line by line.
func FuzzRoundTrip(f *testing.F) {
	f.Add("1", "message", []byte("hello"), "keepalive")
	f.Add("", "", []byte(""), "")
	f.Add(" id ", " type", []byte(" a\r\nb\rc\n\n"), "x\r\ny")
	f.Add("\u00e9", "\U0001F600", []byte("\x00:\uFFFD"), ":")
	f.Fuzz(func(t *testing.T, id, typ string, data []byte, comment string) {
		ev := Event{ID: id, Type: typ, Data: data}
		stream, err := AppendEvent(nil, ev)
		switch {
		case strings.ContainsAny(id, "\r\n\x00"):
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("id %q: err %v", id, err)
			}
			return
		case strings.ContainsAny(typ, "\r\n"):
			if !errors.Is(err, ErrInvalidType) {
				t.Fatalf("type %q: err %v", typ, err)
			}
			return
		case err != nil:
			t.Fatalf("valid event rejected: %v", err)
		}
		if !utf8.ValidString(id) || !utf8.ValidString(typ) || !utf8.Valid(data) || !utf8.ValidString(comment) {
			return // the decoder replaces invalid UTF-8: not a valid event
		}
		var buf bytes.Buffer
		if err := NewEncoder(&buf).Comment(comment); err != nil {
			t.Fatal(err)
		}
		stream = append(buf.Bytes(), stream...)

		d := NewDecoder(bytes.NewReader(stream))
		var comments []string
		d.OnComment(func(s string) { comments = append(comments, s) })
		got, err := d.Next()
		if err != nil {
			t.Fatalf("stream %q: %v", stream, err)
		}
		want := Event{ID: id, Type: typ, Data: normaliseEOL(data)}
		if want.Type == "" {
			want.Type = DefaultType
		}
		if got.ID != want.ID || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("stream %q\ngot  %+q\nwant %+q", stream, got, want)
		}
		if wantC := strings.Split(string(normaliseEOL([]byte(comment))), "\n"); !reflect.DeepEqual(comments, wantC) {
			t.Fatalf("comments %q want %q", comments, wantC)
		}
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("trailing: %v", err)
		}
	})
}

func normaliseEOL(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}
