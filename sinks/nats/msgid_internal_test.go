package nats

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sse"
)

// fnvWant is the MsgID hash as hash/fnv computes it: FNV-1a 64 over the
// type, a 0 and the data. The Nats-Msg-Id is a dedup key across releases,
// so the sink's own loops must give exactly this.
func fnvWant(m *sinks.Message) uint64 {
	h := fnv.New64a()
	h.Write([]byte(m.Event.Type))
	h.Write([]byte{0})
	h.Write(m.Event.Data)
	return h.Sum64()
}

// randomMessages are n messages of random types and data (all byte
// values, lengths 0 to 600, some far apart so the interleaved loop runs
// its tails), some without an ID or with an inherited one.
func randomMessages(r *rand.Rand, n int) []sinks.Message {
	msgs := make([]sinks.Message, n)
	for i := range msgs {
		typ := make([]byte, r.IntN(12))
		for j := range typ {
			typ[j] = byte(r.UintN(256))
		}
		size := r.IntN(250)
		if r.IntN(5) == 0 {
			size = r.IntN(600)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		m := sinks.Message{Pipeline: "p", Event: sse.Event{ID: fmt.Sprint(i), Type: string(typ), Data: data}}
		switch r.IntN(8) {
		case 0:
			m.Event.ID = ""
		case 1:
			m.InheritedID = true
		}
		msgs[i] = m
	}
	return msgs
}

// TestMsgIDHashMatchesHashFNV: MsgID and the batch hashing (msgHashes,
// four interleaved chains) agree with hash/fnv, bit for bit, over
// thousands of random inputs, batch sizes from 0 to 300 included.
func TestMsgIDHashMatchesHashFNV(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var hs []uint64
	var idx []int
	for round := range 200 {
		msgs := randomMessages(r, round%20+r.IntN(3)*140)
		hs, idx = msgHashes(hs, idx, msgs)
		if len(hs) != len(msgs) {
			t.Fatalf("%d hashes for %d messages", len(hs), len(msgs))
		}
		for i := range msgs {
			m := &msgs[i]
			want := fnvWant(m)
			if got := MsgID(m); got != fmt.Sprintf("p:%s:%016x", m.Event.ID, want) {
				t.Fatalf("MsgID = %q, want hash %016x", got, want)
			}
			if !needsMsgID(m) {
				continue
			}
			if hs[i] != want {
				t.Fatalf("round %d, message %d of %d (%d bytes): msgHashes gave %016x, hash/fnv %016x", round, i, len(msgs), len(m.Event.Data), hs[i], want)
			}
		}
	}
}

// TestHeaderSlotsMsgID: the Nats-Msg-Id a headerSlots holds is the one of
// the message it was last filled with, and disappears for a message that
// gets none; the size fill returns is that of the encoded headers.
func TestHeaderSlotsMsgID(t *testing.T) {
	hs := newHeaderSlots()
	msgs := randomMessages(rand.New(rand.NewPCG(3, 4)), 50)
	for i := range msgs {
		m := &msgs[i]
		m.Event.Type = "t" // header values are trimmed by nats.go: keep them printable
		m.Event.Data = []byte(fmt.Sprint(i))
		size := hs.fill(m, needsMsgID(m), fnvWant(m))
		got := hs.h.Get("Nats-Msg-Id")
		if want := ""; !needsMsgID(m) && got != want {
			t.Fatalf("message %d: Nats-Msg-Id %q, want none", i, got)
		}
		if needsMsgID(m) && got != MsgID(m) {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, got, MsgID(m))
		}
		if hs.h.Get(sinks.HeaderID) != m.Event.ID {
			t.Fatalf("message %d: SSE-Id %q, want %q", i, hs.h.Get(sinks.HeaderID), m.Event.ID)
		}
		enc := 0
		for k, vs := range hs.h {
			for _, v := range vs {
				enc += len(k) + len(v) + 4
			}
		}
		if enc += len("NATS/1.0\r\n\r\n"); size != enc {
			t.Fatalf("message %d: fill says %d bytes, the headers encode to %d", i, size, enc)
		}
	}
}

// BenchmarkMsgHashes: the MsgID hashes of a 256-event batch of ~170-byte
// events, one message at a time (fnvData) against msgHashes.
func BenchmarkMsgHashes(b *testing.B) {
	msgs := make([]sinks.Message, 256)
	for i := range msgs {
		data := fmt.Appendf(nil, `{"seq":%d,"t":0,"wiki":"enwiki","title":"Main_Page","user":"someone","delta":42,"pad":"%0120d"}`, i, 0)
		msgs[i] = sinks.Message{Pipeline: "bench", Event: sse.Event{ID: fmt.Sprint(i), Type: "edit", Data: data}}
	}
	b.Run("one-by-one", func(b *testing.B) {
		var sum uint64
		for b.Loop() {
			for i := range msgs {
				sum += fnvData(fnvType(msgs[i].Event.Type), msgs[i].Event.Data)
			}
		}
		_ = sum
	})
	b.Run("msgHashes", func(b *testing.B) {
		var hs []uint64
		var idx []int
		for b.Loop() {
			hs, idx = msgHashes(hs, idx, msgs)
		}
	})
}
