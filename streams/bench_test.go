package streams

import (
	"fmt"
	"testing"
)

// The id of every event is computed per subscriber, so its cost is paid
// events × subscribers times. The JetStream id (one integer) is the
// baseline a Kafka token is measured against.

func BenchmarkEventID(b *testing.B) {
	b.Run("jetstream", func(b *testing.B) {
		c := &seqCursor{}
		m := &message{}
		for i := 0; b.Loop(); i++ {
			m.seq = uint64(i + 1_000_000)
			c.advance(m)
			idSink = c.id()
		}
	})
	for _, parts := range []int{1, 3, 12, 64} {
		b.Run(fmt.Sprintf("kafka/partitions=%d", parts), func(b *testing.B) {
			start := make(position, parts)
			for p := range parts {
				start[p] = 1_000_000
			}
			c := newOffsetCursor(topicTag("t"), start)
			m := &message{}
			for i := 0; b.Loop(); i++ {
				m.partition = i % parts
				m.offset = int64(1_000_000 + i)
				c.advance(m)
				idSink = c.id()
			}
		})
	}
}

// idSink keeps the compiler from dropping the id computation.
var idSink string
