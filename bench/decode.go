package main

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	ld "github.com/launchdarkly/eventsource"
	r3 "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"

	"github.com/ssebridge/ssebridge/sse"
)

// decodeInput is one stream shape, decoded whole per round.
type decodeInput struct {
	name, desc string
	stream     []byte
	events     int
}

// decodeInputs builds the inputs of the decoder scenario, each about
// size bytes. Every input uses LF line ends and an id per event, so that
// every decoder, WHATWG-exact or not, must yield the same events.
func decodeInputs(size int) []decodeInput {
	build := func(name, desc string, event func(b *bytes.Buffer, i int)) decodeInput {
		var b bytes.Buffer
		n := 0
		for b.Len() < size {
			event(&b, n)
			n++
		}
		return decodeInput{name: name, desc: desc, stream: b.Bytes(), events: n}
	}
	json4k := `{"seq":%d,"items":[` + strings.TrimSuffix(strings.Repeat(`{"user":"someone","page":"Main_Page","delta":42,"ok":true},`, 68), ",") + `]}`
	big := strings.Repeat("abcdefghijklmnop", 64<<10/16)
	line60 := strings.Repeat("x", 59)
	// Russian, Chinese, Greek and emoji prose in JSON, as a Wikipedia
	// feed of non-English wikis carries: about 3 bytes per character.
	prose := "Москва — столица России, 北京是中华人民共和国的首都, Αθήνα είναι η πρωτεύουσα της Ελλάδας 🎉🚀, "
	return []decodeInput{
		build("small", "~100 B JSON, new id each", func(b *bytes.Buffer, i int) {
			fmt.Fprintf(b, "id: %d\nevent: update\ndata: {\"seq\":%d,\"user\":\"someone\",\"page\":\"Main_Page\",\"delta\":42}\n\n", 1000000+i, i)
		}),
		build("json4k", "4 KiB JSON, one line", func(b *bytes.Buffer, i int) {
			fmt.Fprintf(b, "id: %d\nevent: edit\ndata: "+json4k+"\n\n", i, i)
		}),
		build("large64k", "64 KiB data line", func(b *bytes.Buffer, i int) {
			fmt.Fprintf(b, "id: %d\ndata: %s\n\n", i, big)
		}),
		build("multiline", "100 data lines of 60 B", func(b *bytes.Buffer, i int) {
			fmt.Fprintf(b, "id: %d\n", i)
			for j := range 100 {
				fmt.Fprintf(b, "data: %02d%s\n", j%100, line60[:58])
			}
			b.WriteString("\n")
		}),
		build("nonascii", "~500 B JSON, mostly 2-4 byte UTF-8", func(b *bytes.Buffer, i int) {
			fmt.Fprintf(b, "id: %d\nevent: edit\ndata: {\"seq\":%d,\"title\":\"%s\",\"comment\":\"%s\"}\n\n", i, i, prose, prose)
		}),
	}
}

// decoderFunc decodes a whole stream, calling emit for every event. It
// returns the number of events.
type decoderFunc func(r io.Reader, emit func(id, typ string, data []byte)) (int, error)

// namedDecoder is one contestant of the decoder scenario.
type namedDecoder struct {
	name string
	lib  bool // a published Go SSE library (the targets compare with the fastest)
	fn   decoderFunc
}

func decoders() []namedDecoder {
	return []namedDecoder{
		{"ssebridge (batch)", false, decodeOursBatch},
		{"ssebridge (Next)", false, decodeOurs},
		{"go-sse", true, decodeGoSSE},
		{"r3labs/sse", true, decodeR3},
		{"launchdarkly", true, decodeLD},
		{"bufio.Scanner", false, decodeScanner},
	}
}

func decodeOurs(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	d := sse.NewDecoder(r)
	n := 0
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		if emit != nil {
			emit(ev.ID, ev.Type, ev.Data)
		}
	}
}

// decodeOursBatch reads batches of up to 256 events, as the source worker
// does, releasing each batch when it is handled (in the bridge: once the
// broker acknowledged it).
// decodeOursBatch reads batches of up to 256 events, as the source worker
// would, releasing each batch when it is handled (in the bridge: once the
// broker acknowledged it).
func decodeOursBatch(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	d := sse.NewDecoder(r)
	n := 0
	var b sse.Batch
	for {
		err := d.ReadBatch(&b, 256)
		for i := range b.Events {
			ev := &b.Events[i]
			n++
			if emit != nil {
				emit(ev.ID, ev.Type, ev.Data)
			}
		}
		b.Release()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func decodeGoSSE(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	n := 0
	for ev, err := range gosse.Read(r, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			return n, err
		}
		n++
		if emit != nil {
			typ := ev.Type
			if typ == "" {
				typ = sse.DefaultType
			}
			emit(ev.LastEventID, typ, []byte(ev.Data))
		}
	}
	return n, nil
}

// decodeR3 is r3labs/sse's client path: EventStreamReader splits events,
// then the field loop of its (unexported) Client.processEvent, copied
// verbatim apart from the base64 option.
func decodeR3(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	rd := r3.NewEventStreamReader(r, 1<<20)
	n := 0
	for {
		msg, err := rd.ReadEvent()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if len(msg) == 0 {
			continue
		}
		ev := r3Process(msg)
		n++
		if emit != nil {
			typ := string(ev.Event)
			if typ == "" {
				typ = sse.DefaultType
			}
			emit(string(ev.ID), typ, ev.Data)
		}
	}
}

var (
	r3ID    = []byte("id:")
	r3Data  = []byte("data:")
	r3Event = []byte("event:")
	r3Retry = []byte("retry:")
)

func r3Process(msg []byte) *r3.Event {
	var e r3.Event
	for _, line := range bytes.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }) {
		switch {
		case bytes.HasPrefix(line, r3ID):
			e.ID = append([]byte(nil), r3Trim(len(r3ID), line)...)
		case bytes.HasPrefix(line, r3Data):
			e.Data = append(e.Data[:], append(r3Trim(len(r3Data), line), byte('\n'))...)
		case bytes.Equal(line, bytes.TrimSuffix(r3Data, []byte(":"))):
			e.Data = append(e.Data, byte('\n'))
		case bytes.HasPrefix(line, r3Event):
			e.Event = append([]byte(nil), r3Trim(len(r3Event), line)...)
		case bytes.HasPrefix(line, r3Retry):
			e.Retry = append([]byte(nil), r3Trim(len(r3Retry), line)...)
		}
	}
	e.Data = bytes.TrimSuffix(e.Data, []byte("\n"))
	return &e
}

func r3Trim(size int, data []byte) []byte {
	if data == nil || len(data) < size {
		return data
	}
	data = data[size:]
	if len(data) > 0 && data[0] == 32 {
		data = data[1:]
	}
	if len(data) > 0 && data[len(data)-1] == 10 {
		data = data[:len(data)-1]
	}
	return data
}

func decodeLD(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	d := ld.NewDecoder(r)
	n := 0
	for {
		ev, err := d.Decode()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		if emit != nil {
			typ := ev.Event()
			if typ == "" {
				typ = sse.DefaultType
			}
			id := ev.Id()
			if le, ok := ev.(interface{ LastEventID() string }); ok {
				id = le.LastEventID()
			}
			emit(id, typ, []byte(ev.Data()))
		}
	}
}

// decodeScanner is the parser most people write first: bufio.Scanner
// lines and string operations.
func decodeScanner(r io.Reader, emit func(id, typ string, data []byte)) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data strings.Builder
	hasData := false
	id, typ := "", ""
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				t := typ
				if t == "" {
					t = sse.DefaultType
				}
				d := []byte(strings.TrimSuffix(data.String(), "\n"))
				n++
				if emit != nil {
					emit(id, t, d)
				}
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
	return n, sc.Err()
}

// fingerprint decodes in with fn and hashes every event in order.
func fingerprint(fn decoderFunc, in []byte) (n int, sum uint64, err error) {
	h := fnv.New64a()
	n, err = fn(bytes.NewReader(in), func(id, typ string, data []byte) {
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(typ))
		h.Write([]byte{0})
		h.Write(data)
		h.Write([]byte{0})
	})
	return n, h.Sum64(), err
}

// decodeResult is one decoder on one input.
type decodeResult struct {
	cpu       time.Duration // CPU time of the process in the fastest round
	median    time.Duration // and in the median round
	allocsPer float64       // heap allocations per event
	mbps      float64       // input MB per CPU second
}

// cpuTime is the CPU time of this process so far, garbage collection on
// other threads included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runDecode checks that every decoder yields the same events, then times
// rounds of each, interleaved so that a burst of load on the machine hits
// all of them alike.
func runDecode(size, rounds int, logf func(string, ...any)) (inputs []decodeInput, decs []namedDecoder, res [][]decodeResult, err error) {
	inputs, decs = decodeInputs(size), decoders()
	for _, in := range inputs {
		wantN, want, err := fingerprint(decodeOurs, in.stream)
		if err != nil || wantN != in.events {
			return nil, nil, nil, fmt.Errorf("%s: ssebridge decoded %d events (%v), want %d", in.name, wantN, err, in.events)
		}
		for _, d := range decs {
			n, sum, err := fingerprint(d.fn, in.stream)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %s: %w", in.name, d.name, err)
			}
			if n != wantN || sum != want {
				return nil, nil, nil, fmt.Errorf("%s: %s yields different events (%d events, hash %x; want %d, %x)", in.name, d.name, n, sum, wantN, want)
			}
		}
	}
	res = make([][]decodeResult, len(inputs))
	for i, in := range inputs {
		times := make([][]time.Duration, len(decs))
		for range rounds {
			for j, d := range decs {
				runtime.GC()
				start := cpuTime()
				if _, err := d.fn(bytes.NewReader(in.stream), nil); err != nil {
					return nil, nil, nil, err
				}
				times[j] = append(times[j], cpuTime()-start)
			}
		}
		res[i] = make([]decodeResult, len(decs))
		// Allocations per event at the margin, as TestDecodeAllocsPerEvent
		// counts them: decoding the input twice over costs this much more
		// than once, so a decoder's set-up does not count.
		twice := append(append([]byte(nil), in.stream...), in.stream...)
		mallocs := func(fn decoderFunc, stream []byte) (uint64, error) {
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			_, err := fn(bytes.NewReader(stream), nil)
			runtime.ReadMemStats(&ms1)
			return ms1.Mallocs - ms0.Mallocs, err
		}
		for j, d := range decs {
			once, err := mallocs(d.fn, in.stream)
			if err != nil {
				return nil, nil, nil, err
			}
			two, err := mallocs(d.fn, twice)
			if err != nil {
				return nil, nil, nil, err
			}
			slices.Sort(times[j])
			med := times[j][len(times[j])/2]
			res[i][j] = decodeResult{
				cpu:       times[j][0],
				median:    med,
				allocsPer: (float64(two) - float64(once)) / float64(in.events),
				mbps:      float64(len(in.stream)) / 1e6 / times[j][0].Seconds(),
			}
			logf("decode %-9s %-18s %8.2f ms (median %.2f)  %7.0f MB/s  %6.2f allocs/event", in.name, d.name, times[j][0].Seconds()*1e3, med.Seconds()*1e3, res[i][j].mbps, res[i][j].allocsPer)
		}
	}
	return inputs, decs, res, nil
}
