package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestAppendEvent(t *testing.T) {
	cases := []struct {
		name string
		ev   Event
		want string
	}{
		{"data only", Event{Data: []byte("hi")}, "data: hi\n\n"},
		{"default type omitted", Event{Type: "message", Data: []byte("hi")}, "data: hi\n\n"},
		{"all fields", Event{ID: "7", Type: "tick", Data: []byte("hi")}, "id: 7\nevent: tick\ndata: hi\n\n"},
		{"empty data", Event{ID: "1"}, "id: 1\ndata:\n\n"},
		{"LF lines", Event{Data: []byte("a\nb\n\nc")}, "data: a\ndata: b\ndata:\ndata: c\n\n"},
		{"CR lines", Event{Data: []byte("a\rb")}, "data: a\ndata: b\n\n"},
		{"CRLF lines", Event{Data: []byte("a\r\nb\r\n")}, "data: a\ndata: b\ndata:\n\n"},
		{"CR CR", Event{Data: []byte("a\r\rb")}, "data: a\ndata:\ndata: b\n\n"},
		{"LF CR", Event{Data: []byte("a\n\rb")}, "data: a\ndata:\ndata: b\n\n"},
		{"leading space kept", Event{ID: " x", Type: " t", Data: []byte(" d")}, "id:  x\nevent:  t\ndata:  d\n\n"},
		{"colon in data", Event{Data: []byte(": not a comment")}, "data: : not a comment\n\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendEvent([]byte("prefix|"), tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix|"+tc.want {
				t.Fatalf("got %q want %q", got, "prefix|"+tc.want)
			}
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Encode(tc.ev); err != nil || buf.String() != tc.want {
				t.Fatalf("Encode wrote %q, %v", buf.String(), err)
			}
		})
	}
}

func TestAppendEventRejects(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want error
	}{
		{Event{ID: "a\nb"}, ErrInvalidID},
		{Event{ID: "a\rb"}, ErrInvalidID},
		{Event{ID: "a\x00b"}, ErrInvalidID},
		{Event{Type: "a\nb"}, ErrInvalidType},
		{Event{Type: "a\rb"}, ErrInvalidType},
	} {
		dst := []byte("keep")
		got, err := AppendEvent(dst, tc.ev)
		if !errors.Is(err, tc.want) {
			t.Errorf("%+v: err %v, want %v", tc.ev, err, tc.want)
		}
		if string(got) != "keep" {
			t.Errorf("%+v: dst changed to %q", tc.ev, got)
		}
		var buf bytes.Buffer
		if err := NewEncoder(&buf).Encode(tc.ev); !errors.Is(err, tc.want) || buf.Len() != 0 {
			t.Errorf("Encode %+v: wrote %q, %v", tc.ev, buf.String(), err)
		}
	}
}

func TestEncoderCommentAndRetry(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	for _, step := range []func() error{
		func() error { return e.Comment("") },
		func() error { return e.Comment("hello") },
		func() error { return e.Comment("two\nlines\r\ndata: injected\r") },
		func() error { return e.Retry(1500 * time.Millisecond) },
		func() error { return e.Retry(2500 * time.Microsecond) },
		func() error { return e.Encode(Event{ID: "1", Data: []byte("x")}) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := ":\n: hello\n: two\n: lines\n: data: injected\n:\nretry: 1500\nretry: 2\nid: 1\ndata: x\n\n"
	if buf.String() != want {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
	if err := e.Retry(-time.Second); !errors.Is(err, ErrInvalidRetry) {
		t.Fatalf("negative retry: %v", err)
	}

	// The decoder reads back exactly what was written.
	got := decodeAll(t, strings.NewReader(want), 0, "")
	wantT := []string{`comment ""`, `comment "hello"`, `comment "two"`, `comment "lines"`,
		`comment "data: injected"`, `comment ""`, "retry 1.5s", "retry 2ms", ev("1", "message", "x"), eof("1")}
	if got.String() != strings.Join(wantT, "\n") {
		t.Fatalf("decoded:\n%s", got)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestEncoderWriteError(t *testing.T) {
	e := NewEncoder(failWriter{})
	if err := e.Encode(Event{Data: []byte("x")}); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Encode: %v", err)
	}
	if err := e.Comment(""); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Comment: %v", err)
	}
}

// TestRoundTrip checks decode(encode(e)) == e over awkward valid events,
// all encoded into one stream so IDs and types also carry correctly from
// one event to the next.
func TestRoundTrip(t *testing.T) {
	events := []Event{
		{ID: "1", Type: "message", Data: []byte("plain")},
		{ID: "2", Type: "custom", Data: []byte("")},
		{ID: "3", Type: "message", Data: []byte("\n")},
		{ID: "4", Type: "x y", Data: []byte("multi\nline\n\n data\n")},
		{ID: " spaced ", Type: " t", Data: []byte(" lead")},
		{ID: "\u00e9\u4e16", Type: "\U0001F600", Data: []byte("\uFFFD\x00:")},
		{ID: "6", Type: "message", Data: bytes.Repeat([]byte("z"), 200000)},
	}
	var stream []byte
	for _, e := range events {
		var err error
		if stream, err = AppendEvent(stream, e); err != nil {
			t.Fatal(err)
		}
	}
	d := NewDecoder(bytes.NewReader(stream))
	for i, want := range events {
		got, err := d.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.ID != want.ID || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("event %d: got %+q want %+q", i, got, want)
		}
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("trailing: %v", err)
	}
}

func TestEncodeAllocs(t *testing.T) {
	e := NewEncoder(io.Discard)
	ev := Event{ID: "12345", Type: "update", Data: []byte("line one\nline two")}
	if n := testing.AllocsPerRun(100, func() { _ = e.Encode(ev) }); n != 0 {
		t.Fatalf("Encode allocates %v times per event; the buffer should be reused", n)
	}
}
