package nats

import (
	"time"
	"unsafe"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ssebridge/ssebridge/sinks"
)

// This file is what the sink puts on a message besides its data: the SSE
// headers and, in JetStream mode, the Nats-Msg-Id.

// MsgID is the JetStream deduplication ID of m: "pipeline:id:hash", hash
// being 16 hex digits of FNV-1a 64 over the event type and data. A replay
// of the same event maps to the same ID; an event that reuses an ID with
// other data (or another type) does not. FNV is stable across processes
// and releases, which a replay after a restart or an upgrade needs; it is
// not a defence against a feed forging collisions, which could only make
// it drop its own events.
func MsgID(m *sinks.Message) string {
	h := fnvData(fnvType(m.Event.Type), m.Event.Data)
	return string(appendMsgID(make([]byte, 0, msgIDLen(m)), m, h))
}

// FNV-1a 64. The hash is inlined rather than hash/fnv's, which would
// allocate per message.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvType is the FNV-1a 64 state after the event type and the 0 that ends
// it ("ab"+"c" must not hash like "a"+"bc"); fnvData goes on over the data.
func fnvType(typ string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(typ); i++ {
		h = (h ^ uint64(typ[i])) * fnvPrime64
	}
	return h * fnvPrime64 // ^ 0
}

// fnvData continues the FNV-1a 64 state h over data.
func fnvData(h uint64, data []byte) uint64 {
	for _, c := range data {
		h = (h ^ uint64(c)) * fnvPrime64
	}
	return h
}

// fnvData4 is fnvData over four inputs at once: FNV-1a is a chain of
// multiplications, each waiting for the one before (about 4 cycles a
// byte), so interleaving four independent chains lets the CPU run them
// side by side. The values are those of fnvData, bit for bit.
func fnvData4(h *[4]uint64, d *[4][]byte) {
	n := min(len(d[0]), len(d[1]), len(d[2]), len(d[3]))
	a, b, c, e := h[0], h[1], h[2], h[3]
	d0, d1, d2, d3 := d[0][:n], d[1][:n], d[2][:n], d[3][:n]
	for i := range d0 {
		a = (a ^ uint64(d0[i])) * fnvPrime64
		b = (b ^ uint64(d1[i])) * fnvPrime64
		c = (c ^ uint64(d2[i])) * fnvPrime64
		e = (e ^ uint64(d3[i])) * fnvPrime64
	}
	h[0], h[1], h[2], h[3] = fnvData(a, d[0][n:]), fnvData(b, d[1][n:]), fnvData(c, d[2][n:]), fnvData(e, d[3][n:])
}

// needsMsgID reports whether m gets a Nats-Msg-Id: not without an ID, nor
// with an inherited one (see the package documentation).
func needsMsgID(m *sinks.Message) bool { return m.Event.ID != "" && !m.InheritedID }

// msgHashes returns hs (reused) with hs[i] the MsgID hash of msgs[i] for
// each message that needs a Nats-Msg-Id (0 for the others), hashing four
// messages at a time. idx is scratch space, returned for reuse.
func msgHashes(hs []uint64, idx []int, msgs []sinks.Message) ([]uint64, []int) {
	hs = append(hs[:0], make([]uint64, len(msgs))...)
	idx = idx[:0]
	for i := range msgs {
		if needsMsgID(&msgs[i]) {
			idx = append(idx, i)
		}
	}
	k := 0
	for ; k+4 <= len(idx); k += 4 {
		var h [4]uint64
		var d [4][]byte
		for j, i := range idx[k : k+4] {
			h[j], d[j] = fnvType(msgs[i].Event.Type), msgs[i].Event.Data
		}
		fnvData4(&h, &d)
		for j, i := range idx[k : k+4] {
			hs[i] = h[j]
		}
	}
	for _, i := range idx[k:] {
		hs[i] = fnvData(fnvType(msgs[i].Event.Type), msgs[i].Event.Data)
	}
	return hs, idx
}

// msgIDLen is the length of m's MsgID.
func msgIDLen(m *sinks.Message) int { return len(m.Pipeline) + len(m.Event.ID) + 18 }

// appendMsgID appends m's MsgID, of hash h, to b.
func appendMsgID(b []byte, m *sinks.Message, h uint64) []byte {
	b = append(append(append(b, m.Pipeline...), ':'), m.Event.ID...)
	b = append(b, ':')
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[(h>>shift)&0xf])
	}
	return b
}

// Headers are the SSE headers of m (without Nats-Msg-Id).
func Headers(m *sinks.Message) gonats.Header {
	vals := make([]string, 4)
	h := make(gonats.Header, 4)
	if m.Event.ID != "" {
		vals[0] = m.Event.ID
		h[sinks.HeaderID] = vals[0:1:1]
	}
	vals[1], vals[2], vals[3] = m.Event.Type, m.Pipeline, receivedAt(m)
	h[sinks.HeaderEvent] = vals[1:2:2]
	h[sinks.HeaderSource] = vals[2:3:3]
	h[sinks.HeaderReceivedAt] = vals[3:4:4]
	return h
}

func receivedAt(m *sinks.Message) string {
	at := m.ReceivedAt
	if at.IsZero() {
		at = time.Now()
	}
	return at.Format(time.RFC3339Nano)
}

// headerSlots is the reusable header map of one sink's publishes: the SSE
// headers and, in JetStream mode, Nats-Msg-Id, one value slot each.
// nats.go's PublishMsg copies a message into the connection's buffer
// before it returns, so one map serves every publish. It keeps the last
// SSE-Received-At it formatted (the source stamps a decoded batch with one
// time) and touches the map only when a header comes or goes.
type headerSlots struct {
	h                      gonats.Header
	id, ev, src, at, msgID []string
	hasID, hasMsgID        bool
	lastAt                 time.Time // the time at[0] was formatted from
	// idBuf holds the bytes of msgID[0], rewritten for each message: the
	// value only has to live until PublishMsg copied it.
	idBuf []byte
}

func newHeaderSlots() headerSlots {
	hs := headerSlots{id: make([]string, 1), ev: make([]string, 1), src: make([]string, 1), at: make([]string, 1), msgID: make([]string, 1)}
	hs.h = gonats.Header{sinks.HeaderEvent: hs.ev, sinks.HeaderSource: hs.src, sinks.HeaderReceivedAt: hs.at}
	return hs
}

// fill sets the headers of m, with a Nats-Msg-Id of hash h when withMsgID,
// and returns their encoded size ("NATS/1.0\r\n", "K: V\r\n"..., "\r\n").
// The Nats-Msg-Id value is valid until the next fill.
func (hs *headerSlots) fill(m *sinks.Message, withMsgID bool, h uint64) int {
	// == and not Equal: the location is part of the formatted value.
	if at := m.ReceivedAt; at.IsZero() || at != hs.lastAt || hs.at[0] == "" {
		hs.at[0], hs.lastAt = receivedAt(m), at
	}
	hs.ev[0], hs.src[0] = m.Event.Type, m.Pipeline
	n := len("NATS/1.0\r\n\r\n") +
		len(sinks.HeaderEvent) + len(m.Event.Type) + 4 +
		len(sinks.HeaderSource) + len(m.Pipeline) + 4 +
		len(sinks.HeaderReceivedAt) + len(hs.at[0]) + 4
	if m.Event.ID != "" {
		hs.id[0] = m.Event.ID
		if !hs.hasID {
			hs.h[sinks.HeaderID], hs.hasID = hs.id, true
		}
		n += len(sinks.HeaderID) + len(m.Event.ID) + 4
	} else if hs.hasID {
		delete(hs.h, sinks.HeaderID)
		hs.hasID = false
	}
	if withMsgID {
		hs.idBuf = appendMsgID(hs.idBuf[:0], m, h)
		// No copy: nats.go copies the value into its buffer during
		// PublishMsg, and the string is replaced before idBuf changes.
		hs.msgID[0] = unsafe.String(unsafe.SliceData(hs.idBuf), len(hs.idBuf))
		if !hs.hasMsgID {
			hs.h[jetstream.MsgIDHeader], hs.hasMsgID = hs.msgID, true
		}
		n += len(jetstream.MsgIDHeader) + len(hs.idBuf) + 4
	} else if hs.hasMsgID {
		delete(hs.h, jetstream.MsgIDHeader)
		hs.hasMsgID = false
		hs.msgID[0] = ""
	}
	return n
}
