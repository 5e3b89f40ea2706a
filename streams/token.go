package streams

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A Kafka resume token is the position of a subscriber in every partition of
// a topic, packed so that it stays short enough for a Last-Event-ID header:
//
//	base64url( version | topic tag (4 bytes) | uvarint n |
//	           n × (uvarint partition, uvarint next offset) | crc32 (4 bytes) )
//
// The topic tag tells a token of another stream from a damaged one, and the
// checksum catches truncation and typos, so both answer 400 with a precise
// reason instead of seeking to a wrong position.

const tokenVersion = 1

// topicTag identifies the topic a token belongs to. It depends on the topic
// only: a position in a topic is as valid for every stream that serves it.
func topicTag(topic string) uint32 {
	h := fnv.New32a()
	h.Write([]byte("kafka\x00" + topic))
	return h.Sum32()
}

// position is the next offset to read in each partition.
type position map[int]int64

// encodeToken renders pos as a resume token for the topic with tag.
func encodeToken(tag uint32, pos position) string {
	parts := make([]int, 0, len(pos))
	for p := range pos {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	offs := make([]int64, len(parts))
	for i, p := range parts {
		offs[i] = pos[p]
	}
	text, _ := appendToken(nil, nil, tag, parts, offs)
	return string(text)
}

// appendToken appends the text form of the token for partitions parts
// (sorted) at offsets offs to dst, using scratch for the binary form; both
// may be reused between calls to spare allocations on the hot path.
func appendToken(dst, scratch []byte, tag uint32, parts []int, offs []int64) (text, raw []byte) {
	raw = scratch[:0]
	raw = append(raw, tokenVersion)
	raw = binary.BigEndian.AppendUint32(raw, tag)
	raw = binary.AppendUvarint(raw, uint64(len(parts)))
	for i, p := range parts {
		raw = binary.AppendUvarint(raw, uint64(p))
		raw = binary.AppendUvarint(raw, uint64(offs[i]))
	}
	raw = binary.BigEndian.AppendUint32(raw, crc32.ChecksumIEEE(raw))
	return base64.RawURLEncoding.AppendEncode(dst, raw), raw
}

// decodeToken parses a token produced by encodeToken for the topic with tag.
// The error wraps ErrInvalidLastEventID or ErrForeignLastEventID.
func decodeToken(tok string, tag uint32) (position, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: not a Kafka position token (bad encoding)", ErrInvalidLastEventID)
	}
	if len(raw) < 1+4+1+4 {
		return nil, fmt.Errorf("%w: not a Kafka position token (too short)", ErrInvalidLastEventID)
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: Kafka position token is damaged (checksum mismatch)", ErrInvalidLastEventID)
	}
	if body[0] != tokenVersion {
		return nil, fmt.Errorf("%w: unknown Kafka position token version %d", ErrInvalidLastEventID, body[0])
	}
	if binary.BigEndian.Uint32(body[1:5]) != tag {
		return nil, fmt.Errorf("%w: the token is a position in another Kafka topic", ErrForeignLastEventID)
	}
	rest := body[5:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	n, ok := next()
	if !ok || n > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: Kafka position token is malformed", ErrInvalidLastEventID)
	}
	pos := make(position, n)
	for i := uint64(0); i < n; i++ {
		p, ok1 := next()
		off, ok2 := next()
		if !ok1 || !ok2 || p > 1<<31-1 || off > 1<<63-1 {
			return nil, fmt.Errorf("%w: Kafka position token is malformed", ErrInvalidLastEventID)
		}
		pos[int(p)] = int64(off)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: Kafka position token has trailing bytes", ErrInvalidLastEventID)
	}
	return pos, nil
}

// A JetStream id is the stream sequence of the last message, a dash and a
// tag naming the stream and its incarnation:
//
//	1234-AbCdEfGh   sequence "-" base64url( stream (1 byte) |
//	                incarnation (3 bytes) | check (2 bytes) )
//
// The sequence comes first so that the id still reads as a position. The
// incarnation is derived from the stream's creation time: a stream deleted
// and recreated under the same name starts its sequences again at 1, and
// only the incarnation tells a position in the old stream from one in the
// new. The stream byte tells another stream's id from a damaged one, as
// the Kafka topic tag does, and the check (over the sequence and the tag)
// catches typos and truncation; every change of one tag character is
// caught. A plain sequence, the format of earlier versions, is still
// accepted with its old meaning.

// jsTag identifies a JetStream stream and its incarnation in an id.
type jsTag struct {
	stream uint8  // from the stream name only
	inc    uint32 // 24 bits, from the name and the creation time
}

// newJSTag returns the tag of stream created at created. Every stream that
// serves the same JetStream stream shares it: a sequence is as valid for
// each of them, whatever their subject filters.
func newJSTag(stream string, created time.Time) jsTag {
	h := fnv.New32a()
	h.Write([]byte("jetstream\x00" + stream))
	s := uint8(h.Sum32())
	h.Write(binary.BigEndian.AppendUint64([]byte{0}, uint64(created.UnixNano())))
	return jsTag{stream: s, inc: h.Sum32() & 0xFFFFFF}
}

// jsStreamByte is the stream part of every tag of stream.
func jsStreamByte(stream string) uint8 { return newJSTag(stream, time.Time{}).stream }

// jsTagLen is the length of the text form of a tag: 6 bytes in base64.
const jsTagLen = 8

// raw is the tag without its check.
func (t jsTag) raw() [4]byte {
	return [4]byte{t.stream, byte(t.inc >> 16), byte(t.inc >> 8), byte(t.inc)}
}

// appendJSCheck returns the check of the id for seq with the tag raw. It
// uses the spare capacity of scratch, which it may grow, and returns it
// for reuse.
func appendJSCheck(scratch []byte, seq uint64, raw [4]byte) (uint16, []byte) {
	b := binary.AppendUvarint(scratch[:0], seq)
	b = append(b, raw[:]...)
	return uint16(crc32.ChecksumIEEE(b)), b[:0]
}

// appendJSID appends the id of sequence seq in the stream incarnation t.
// The check is computed in dst's spare capacity, so a dst with room for
// the id and 14 bytes more costs no allocation.
func appendJSID(dst []byte, seq uint64, t jsTag) []byte {
	raw := t.raw()
	sum, _ := appendJSCheck(dst[len(dst):], seq, raw)
	var full [6]byte
	copy(full[:], raw[:])
	binary.BigEndian.PutUint16(full[4:], sum)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '-')
	return base64.RawURLEncoding.AppendEncode(dst, full[:])
}

// jsID is the id of sequence seq in the stream incarnation t.
func jsID(seq uint64, t jsTag) string { return string(appendJSID(make([]byte, 0, 32), seq, t)) }

// jsPosition is a parsed JetStream id.
type jsPosition struct {
	seq uint64
	// tagged is false for a plain sequence, which names no incarnation.
	tagged bool
	inc    uint32
}

// parseJSID parses an id of the stream whose name has the tag byte stream.
// The error wraps ErrInvalidLastEventID or ErrForeignLastEventID.
func parseJSID(id string, stream uint8) (jsPosition, error) {
	num, tag, tagged := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return jsPosition{}, fmt.Errorf("%w: %q is not a JetStream sequence id", ErrInvalidLastEventID, id)
	}
	if !tagged {
		return jsPosition{seq: seq}, nil
	}
	full, err := base64.RawURLEncoding.DecodeString(tag)
	if err != nil || len(tag) != jsTagLen {
		return jsPosition{}, fmt.Errorf("%w: %q is not a JetStream sequence id (bad tag)", ErrInvalidLastEventID, id)
	}
	raw := [4]byte(full[:4])
	if sum, _ := appendJSCheck(nil, seq, raw); sum != binary.BigEndian.Uint16(full[4:]) {
		return jsPosition{}, fmt.Errorf("%w: JetStream id %q is damaged (check mismatch)", ErrInvalidLastEventID, id)
	}
	if raw[0] != stream {
		return jsPosition{}, fmt.Errorf("%w: %q is a position in another JetStream stream", ErrForeignLastEventID, id)
	}
	return jsPosition{seq: seq, tagged: true, inc: uint32(raw[1])<<16 | uint32(raw[2])<<8 | uint32(raw[3])}, nil
}
