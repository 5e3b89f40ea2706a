package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// transcript is everything a Decoder reported, in order, so chunking
// tests can compare whole runs.
type transcript []string

func (t transcript) String() string { return strings.Join(t, "\n") }

// decodeAll runs a Decoder over r until a final error and records events,
// comments, retries, size errors and the last event ID at the end.
func decodeAll(t testing.TB, r io.Reader, max int, startID string) transcript {
	t.Helper()
	return decodeAllSize(t, r, max, startID, readBufSize)
}

// decodeAllSize is decodeAll with a read buffer of bufSize bytes.
func decodeAllSize(t testing.TB, r io.Reader, max int, startID string, bufSize int) transcript {
	t.Helper()
	d := newDecoderSize(r, bufSize)
	d.SetMaxEventSize(max)
	if startID != "" {
		d.SetLastEventID(startID)
	}
	var out transcript
	d.OnComment(func(s string) { out = append(out, fmt.Sprintf("comment %q", s)) })
	d.OnRetry(func(r time.Duration) { out = append(out, fmt.Sprintf("retry %v", r)) })
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("decoder does not terminate")
		}
		ev, err := d.Next()
		switch {
		case err == nil:
			out = append(out, fmt.Sprintf("event id=%q type=%q data=%q", ev.ID, ev.Type, ev.Data))
		case errors.Is(err, ErrEventTooLarge):
			out = append(out, "too large")
		case err == io.EOF:
			return append(out, fmt.Sprintf("EOF last=%q", d.LastEventID()))
		default:
			return append(out, "error "+err.Error())
		}
	}
}

func ev(id, typ, data string) string {
	return fmt.Sprintf("event id=%q type=%q data=%q", id, typ, data)
}

func eof(last string) string { return fmt.Sprintf("EOF last=%q", last) }

var decodeCases = []struct {
	name string
	in   string
	max  int
	want []string
}{
	{"empty stream", "", 0, []string{eof("")}},
	{"simple LF", "data: hello\n\n", 0, []string{ev("", "message", "hello"), eof("")}},
	{"CRLF", "data: hello\r\n\r\n", 0, []string{ev("", "message", "hello"), eof("")}},
	{"CR only", "data: hello\r\r", 0, []string{ev("", "message", "hello"), eof("")}},
	{"mixed line ends", "data: a\rdata: b\r\ndata: c\n\r\n", 0, []string{ev("", "message", "a\nb\nc"), eof("")}},
	{"CR CR is two line ends", "data: a\r\rdata: b\r\r", 0, []string{ev("", "message", "a"), ev("", "message", "b"), eof("")}},
	{"LF LF is two line ends", "data: a\n\ndata: b\n\n", 0, []string{ev("", "message", "a"), ev("", "message", "b"), eof("")}},
	{"LF CR is two line ends", "data: a\n\r", 0, []string{ev("", "message", "a"), eof("")}},
	{"CR LF CR LF", "data: a\r\n\r\n", 0, []string{ev("", "message", "a"), eof("")}},
	{"multi-line data joined with LF", "data: a\ndata: b\ndata:\ndata: c\n\n", 0, []string{ev("", "message", "a\nb\n\nc"), eof("")}},
	{"one space stripped", "data:  two\n\n", 0, []string{ev("", "message", " two"), eof("")}},
	{"no space", "data:x\n\n", 0, []string{ev("", "message", "x"), eof("")}},
	{"tab not stripped", "data:\tx\n\n", 0, []string{ev("", "message", "\tx"), eof("")}},
	{"colon in value kept", "data: a: b\n\n", 0, []string{ev("", "message", "a: b"), eof("")}},
	{"field without colon", "data\n\n", 0, []string{ev("", "message", ""), eof("")}},
	{"field without colon twice", "data\ndata\n\n", 0, []string{ev("", "message", "\n"), eof("")}},
	{"empty data line dispatches", "data:\n\n", 0, []string{ev("", "message", ""), eof("")}},
	{"no data no dispatch", "event: x\n\n", 0, []string{eof("")}},
	{"type reset after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", 0, []string{ev("", "a", "1"), ev("", "message", "2"), eof("")}},
	{"type reset after empty event", "event: a\n\ndata: 2\n\n", 0, []string{ev("", "message", "2"), eof("")}},
	{"empty event name is message", "event:\ndata: 1\n\n", 0, []string{ev("", "message", "1"), eof("")}},
	{"last event field wins", "event: a\nevent: b\ndata: 1\n\n", 0, []string{ev("", "b", "1"), eof("")}},
	{"field names case sensitive", "Data: x\nDATA: y\n\n", 0, []string{eof("")}},
	{"unknown fields ignored", "foo: bar\ndata: x\nbaz\n\n", 0, []string{ev("", "message", "x"), eof("")}},
	{"field name with space is unknown", "data : x\n\n", 0, []string{eof("")}},
	{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", 0, []string{ev("1", "message", "a"), ev("1", "message", "b"), eof("1")}},
	{"id changes", "id: 1\ndata: a\n\nid: 2\ndata: b\n\n", 0, []string{ev("1", "message", "a"), ev("2", "message", "b"), eof("2")}},
	{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\nid:\ndata: c\n\n", 0, []string{ev("1", "message", "a"), ev("", "message", "b"), ev("", "message", "c"), eof("")}},
	{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", 0, []string{ev("1", "message", "a"), ev("1", "message", "b"), eof("1")}},
	{"id without data updates last id", "id: 7\n\n", 0, []string{eof("7")}},
	{"id in unterminated event ignored", "id: 1\ndata: a\n\nid: 2\ndata: b\n", 0, []string{ev("1", "message", "a"), eof("1")}},
	{"id applies to its own event", "data: a\nid: 3\n\n", 0, []string{ev("3", "message", "a"), eof("3")}},
	{"id keeps its spaces", "id:  x \n\n", 0, []string{eof(" x ")}},
	{"id may be reset then set again", "id: 1\n\nid: 2\nid: 1\ndata: x\n\n", 0, []string{ev("1", "message", "x"), eof("1")}},
	{"unterminated event discarded", "data: a\n\ndata: b", 0, []string{ev("", "message", "a"), eof("")}},
	{"unterminated event with line end discarded", "data: a\n\ndata: b\n", 0, []string{ev("", "message", "a"), eof("")}},
	{"comment", ": hi\ndata: x\n\n", 0, []string{`comment "hi"`, ev("", "message", "x"), eof("")}},
	{"empty comment", ":\n\n", 0, []string{`comment ""`, eof("")}},
	{"comment keeps further spaces", ":  two\n", 0, []string{`comment " two"`, eof("")}},
	{"comment with colon", "::x\n", 0, []string{`comment ":x"`, eof("")}},
	{"comments interleave", "data: a\n: mid\ndata: b\n\n: after\n", 0, []string{`comment "mid"`, ev("", "message", "a\nb"), `comment "after"`, eof("")}},
	{"retry", "retry: 1500\n", 0, []string{"retry 1.5s", eof("")}},
	{"retry zero", "retry: 0\n", 0, []string{"retry 0s", eof("")}},
	{"retry no space", "retry:20\n", 0, []string{"retry 20ms", eof("")}},
	{"retry not digits", "retry: 1.5\nretry: -1\nretry: 1e3\nretry: 12a\nretry:  5\nretry\nretry:\n", 0, []string{eof("")}},
	{"retry huge saturates", "retry: 99999999999999999999999999\n", 0, []string{fmt.Sprintf("retry %v", time.Duration(math.MaxInt64)), eof("")}},
	{"retry does not dispatch", "retry: 5\n\n", 0, []string{"retry 5ms", eof("")}},
	{"BOM stripped", "\xEF\xBB\xBFdata: x\n\n", 0, []string{ev("", "message", "x"), eof("")}},
	{"only one BOM stripped", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", 0, []string{eof("")}},
	{"BOM not stripped later", "data: \xEF\xBB\xBFx\n\n", 0, []string{ev("", "message", "\uFEFFx"), eof("")}},
	{"BOM after first line is a field name", "\n\xEF\xBB\xBFdata: x\n\n", 0, []string{eof("")}},
	{"partial BOM is invalid UTF-8", "\xEF\xBBdata: x\n\n", 0, []string{eof("")}},
	{"partial BOM as comment", "\xEF\xBB\n", 0, []string{eof("")}},
	{"invalid UTF-8 replaced", "data: a\xFFb\n\n", 0, []string{ev("", "message", "a\uFFFDb"), eof("")}},
	{"truncated sequence is one U+FFFD", "data: \xE2\x82A\n\n", 0, []string{ev("", "message", "\uFFFDA"), eof("")}},
	{"truncated sequence at line end", "data: \xF0\x9F\x98\n\n", 0, []string{ev("", "message", "\uFFFD"), eof("")}},
	{"surrogate bytes replaced per byte", "data: \xED\xA0\x80\n\n", 0, []string{ev("", "message", "\uFFFD\uFFFD\uFFFD"), eof("")}},
	{"overlong replaced per byte", "data: \xC0\xAF\n\n", 0, []string{ev("", "message", "\uFFFD\uFFFD"), eof("")}},
	{"valid multibyte kept", "data: h\u00e9\u4e16\U0001F600\n\n", 0, []string{ev("", "message", "h\u00e9\u4e16\U0001F600"), eof("")}},
	{"invalid UTF-8 in field name", "dat\xFF: x\n\n", 0, []string{eof("")}},
	{"invalid UTF-8 in id", "id: \xFF\n\n", 0, []string{eof("\uFFFD")}},
	{"NUL in data kept", "data: a\x00b\n\n", 0, []string{ev("", "message", "a\x00b"), eof("")}},
	{"leading blank lines", "\n\n\r\ndata: x\n\n", 0, []string{ev("", "message", "x"), eof("")}},
	{"max size exact fits", "data: 12345\n\n", 11, []string{ev("", "message", "12345"), eof("")}},
	{"max size exceeded", "data: 123456\n\ndata: ok\n\n", 11, []string{"too large", ev("", "message", "ok"), eof("")}},
	{"max size counts all lines", "data: 1\ndata: 2\n\ndata: ok\n\n", 10, []string{"too large", ev("", "message", "ok"), eof("")}},
	{"max size counts comments", ": 12345678\ndata: 1\n\ndata: ok\n\n", 12, []string{`comment "12345678"`, "too large", ev("", "message", "ok"), eof("")}},
	{"max size resets per event", "data: 1\n\ndata: 2\n\ndata: 3\n\n", 8, []string{ev("", "message", "1"), ev("", "message", "2"), ev("", "message", "3"), eof("")}},
	{"oversized event drops id type and comments", "id: 1\ndata: a\n\nid: 2\nevent: t\ndata: 123456789\n: lost\nid: 3\n\ndata: b\n\n", 12, []string{ev("1", "message", "a"), "too large", ev("1", "message", "b"), eof("1")}},
	{"oversized unterminated", "data: 1\n\ndata: 123456789", 8, []string{ev("", "message", "1"), "too large", eof("")}},
	{"oversized then CRLF", "data: 123456789\r\n\r\ndata: b\r\n\r\n", 8, []string{"too large", ev("", "message", "b"), eof("")}},
	{"oversized then CR", "data: 123456789\rdata: x\r\rdata: b\r\r", 8, []string{"too large", ev("", "message", "b"), eof("")}},
	{"oversized then LF CR", "data: 123456789\n\rdata: b\n\n", 8, []string{"too large", ev("", "message", "b"), eof("")}},
	{"two oversized in a row", "data: 123456789\n\ndata: 123456789\n\ndata: b\n\n", 8, []string{"too large", "too large", ev("", "message", "b"), eof("")}},
}

func TestDecodeRules(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeAll(t, strings.NewReader(tc.in), tc.max, "")
			if !reflect.DeepEqual([]string(got), tc.want) {
				t.Errorf("input %q\ngot:\n%s\nwant:\n%s", tc.in, got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestCRLFSplitAcrossReads is the named case from the standard's notes: a
// CR ending one Read and the LF starting the next are ONE line end, so
// "data: a\r" + "\n" + "\r\n" is one event, not an event and a stray blank.
func TestCRLFSplitAcrossReads(t *testing.T) {
	in := []string{"id: 1\r", "\ndata: a\r", "\n\r", "\ndata: b\r", "\n", "\r", "\n"}
	d := NewDecoder(&chunkReader{chunks: in})
	ev1, err := d.Next()
	if err != nil || string(ev1.Data) != "a" || ev1.ID != "1" {
		t.Fatalf("first event = %+v, %v", ev1, err)
	}
	ev2, err := d.Next()
	if err != nil || string(ev2.Data) != "b" {
		t.Fatalf("second event = %+v, %v", ev2, err)
	}
	if ev, err := d.Next(); err != io.EOF {
		t.Fatalf("after two events: %+v, %v; want io.EOF", ev, err)
	}
}

// chunkReader returns its chunks one per Read, exactly as split.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

// TestDispatchWithoutReadAhead checks that a line end is acted on when it
// arrives: after "data: x\r\r" the event is returned even though the
// reader blocks, because a CR needs no look-ahead to end a line.
func TestDispatchWithoutReadAhead(t *testing.T) {
	for _, in := range []string{"data: x\r\r", "data: x\n\n", "data: x\r\n\r"} {
		pr, pw := io.Pipe()
		d := NewDecoder(pr)
		done := make(chan error, 1)
		go func() {
			ev, err := d.Next()
			if err == nil && string(ev.Data) != "x" {
				err = fmt.Errorf("data %q", ev.Data)
			}
			done <- err
		}()
		if _, err := pw.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		// The event must come out while the writer still holds the pipe
		// open; a decoder waiting for more input would block forever here
		// and the test would time out.
		// The timeout only turns a hang into a failure; passing never
		// depends on timing.
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%q: %v", in, err)
			}
		case <-time.After(30 * time.Second):
			pw.Close() // unblock the reader so no goroutine leaks
			<-done
			t.Fatalf("%q: event not returned while the stream stayed open", in)
		}
		pw.Close()
	}
}

func TestChunkingIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []string
	var maxes []int
	for _, tc := range decodeCases {
		inputs = append(inputs, tc.in)
		maxes = append(maxes, tc.max)
	}
	// A long mixed stream exercising buffer boundaries too.
	var long strings.Builder
	long.WriteString("\xEF\xBB\xBF")
	ends := []string{"\n", "\r", "\r\n"}
	for i := range 800 {
		e := ends[i%3]
		fmt.Fprintf(&long, "id: %d%s: c%d%sdata: %s%sdata: \xE2\x82x%s%s", i, e, i, e, strings.Repeat("y", i%200), e, e, e)
		if i%113 == 0 {
			fmt.Fprintf(&long, "data: %s%s%s", strings.Repeat("z", 70000+i), e, e)
		}
	}
	inputs = append(inputs, long.String())
	maxes = append(maxes, 0)
	inputs = append(inputs, long.String())
	maxes = append(maxes, 70100)

	for i, in := range inputs {
		want := decodeAll(t, strings.NewReader(in), maxes[i], "")
		got := decodeAll(t, iotest.OneByteReader(strings.NewReader(in)), maxes[i], "")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %d one byte at a time differs:\n%s\nwant:\n%s", i, diffFirst(got, want), "")
		}
		for _, size := range []int{8, 13, 100} {
			got := decodeAllSize(t, &chunkReader{chunks: randomSplit(rng, in)}, maxes[i], "", size)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("input %d with a %d byte buffer differs:\n%s", i, size, diffFirst(got, want))
			}
		}
		for range 20 {
			chunks := randomSplit(rng, in)
			got := decodeAll(t, &chunkReader{chunks: chunks}, maxes[i], "")
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("input %d split %q differs:\n%s", i, truncate(chunks), diffFirst(got, want))
			}
		}
	}
}

func randomSplit(rng *rand.Rand, s string) []string {
	var chunks []string
	for len(s) > 0 {
		n := 1 + rng.IntN(min(len(s), 1+rng.IntN(100000)))
		chunks = append(chunks, s[:n])
		s = s[n:]
	}
	return chunks
}

func truncate(chunks []string) []string {
	if len(chunks) > 10 {
		return chunks[:10]
	}
	return chunks
}

func diffFirst(got, want transcript) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d: got %.200s\nwant %.200s", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths differ: got %d want %d", len(got), len(want))
}

func TestSetLastEventID(t *testing.T) {
	got := decodeAll(t, strings.NewReader("data: a\n\nid: 9\ndata: b\n\n"), 0, "5")
	want := []string{ev("5", "message", "a"), ev("9", "message", "b"), eof("9")}
	if !reflect.DeepEqual([]string(got), want) {
		t.Fatalf("got\n%s", got)
	}
	// An id equal to the start value is not a change and keeps it.
	got = decodeAll(t, strings.NewReader("id: 5\ndata: a\n\n"), 0, "5")
	if want := []string{ev("5", "message", "a"), eof("5")}; !reflect.DeepEqual([]string(got), want) {
		t.Fatalf("got\n%s", got)
	}
}

// TestDataIsOwned checks the documented ownership: Data of one event is
// not overwritten by decoding the next, and appending to it cannot reach
// the ID stored after it in the same allocation.
func TestDataIsOwned(t *testing.T) {
	d := NewDecoder(strings.NewReader("id: 1\ndata: first\n\nid: 2\ndata: second\n\n"))
	a, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	a.Data = append(a.Data, "XXXXXXXX"...)
	b, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Data) != "firstXXXXXXXX" || a.ID != "1" || string(b.Data) != "second" || b.ID != "2" {
		t.Fatalf("a=%q/%q b=%q/%q", a.Data, a.ID, b.Data, b.ID)
	}
}

type errReader struct {
	data string
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	if r.data == "" {
		return n, r.err // data and error together
	}
	return n, nil
}

func TestReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	d := NewDecoder(&errReader{data: "data: a\n\ndata: b", err: boom})
	if ev, err := d.Next(); err != nil || string(ev.Data) != "a" {
		t.Fatalf("got %+v, %v", ev, err)
	}
	_, err := d.Next()
	if !errors.Is(err, boom) || err == boom {
		t.Fatalf("err = %v, want wrapped boom", err)
	}
	if _, err2 := d.Next(); !errors.Is(err2, boom) {
		t.Fatalf("error not sticky: %v", err2)
	}

	// A reader that never makes progress is reported, not spun on.
	d = NewDecoder(iotest.ErrReader(nil))
	if _, err := d.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

// lazyReader produces n bytes of filler without ever holding them.
type lazyReader struct {
	n      int64
	prefix string
	suffix string
	fill   byte
	block  []byte
}

func (r *lazyReader) Read(p []byte) (int, error) {
	if r.prefix != "" {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	if r.n > 0 {
		if r.block == nil {
			r.block = bytes.Repeat([]byte{r.fill}, 64<<10)
		}
		k := copy(p[:min(int64(len(p)), r.n)], r.block)
		r.n -= int64(k)
		return k, nil
	}
	if r.suffix != "" {
		n := copy(p, r.suffix)
		r.suffix = r.suffix[n:]
		return n, nil
	}
	return 0, io.EOF
}

// TestHugeLineBoundedMemory feeds a 1 GB line without a line end and
// checks the decoder reports it and recovers without holding it: total
// allocation across the whole run stays near the configured maximum.
func TestHugeLineBoundedMemory(t *testing.T) {
	const huge = 1 << 30
	size := int64(huge)
	if testing.Short() {
		size = 64 << 20
	}
	var before, after runtimeMem
	before.read()
	r := &lazyReader{prefix: "data: ok1\n\ndata: ", n: size, fill: 'x', suffix: "\n\ndata: ok2\n\n"}
	d := NewDecoder(r)
	d.SetMaxEventSize(1 << 20)
	var got []string
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrEventTooLarge) {
			got = append(got, "too large")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Data))
	}
	after.read()
	if want := []string{"ok1", "too large", "ok2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	if r.n != 0 {
		t.Fatalf("%d bytes left unread", r.n)
	}
	// The line is 1 GB; the decoder may hold its 64 KiB buffer plus at
	// most ~1 MiB of it (the limit) before giving up on it, and grows the
	// accumulator by doubling, so a few MiB in total is the bound.
	if grew := after.totalAlloc - before.totalAlloc; grew > 8<<20 {
		t.Fatalf("allocated %d bytes decoding a %d byte line", grew, size)
	}
}

type runtimeMem struct{ totalAlloc uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.totalAlloc = ms.TotalAlloc
}

// TestKeptEventsIntact keeps every event of a long stream, with data
// sizes on both sides of the slab limits and lines that move the data
// buffer between slabs, and checks none was overwritten by later ones.
func TestKeptEventsIntact(t *testing.T) {
	var stream bytes.Buffer
	var want []Event
	for i := range 3000 {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, i%1500)
		if i%7 == 0 {
			data = append(data, "\nsecond line"...)
		}
		e := Event{ID: fmt.Sprint(i), Type: []string{"message", "t1", "t2"}[i%3], Data: data}
		b, err := AppendEvent(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(b)
		want = append(want, e)
	}
	d := NewDecoder(&stream)
	var got []Event
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Type != want[i].Type || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("event %d: got %q/%q/%.40q want %q/%q/%.40q", i,
				got[i].ID, got[i].Type, got[i].Data, want[i].ID, want[i].Type, want[i].Data)
		}
	}
}

// TestReset checks a reconnect: buffered input and the unfinished event of
// the old stream are gone, a BOM is stripped again, and the last event ID,
// size limit and callbacks carry over.
func TestReset(t *testing.T) {
	var comments []string
	d := NewDecoder(strings.NewReader("id: 7\ndata: a\n\nid: 8\ndata: lost"))
	d.SetMaxEventSize(20)
	d.OnComment(func(s string) { comments = append(comments, s) })
	if ev, err := d.Next(); err != nil || ev.ID != "7" {
		t.Fatalf("first stream: %+v, %v", ev, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("want io.EOF, got %v", err)
	}
	d.Reset(strings.NewReader("\xEF\xBB\xBF: hi\ndata: b\n\ndata: 0123456789012345678901\n\ndata: c\n\n"))
	var got []string
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrEventTooLarge) {
			got = append(got, "too large")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.ID+"/"+string(ev.Data))
	}
	if want := []string{"7/b", "too large", "7/c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Reset got %q, want %q", got, want)
	}
	if !reflect.DeepEqual(comments, []string{"hi"}) {
		t.Fatalf("comments %q", comments)
	}
}
