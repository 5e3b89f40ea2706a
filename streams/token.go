package streams

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"sort"
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
