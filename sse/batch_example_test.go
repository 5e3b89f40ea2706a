package sse_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/ssebridge/ssebridge/sse"
)

// ReadBatch hands out events that borrow the decoder's memory: use them
// (here: print them; in a bridge: publish them and wait for the broker's
// acknowledgement), then release the batch so that the memory is reused.
func ExampleDecoder_ReadBatch() {
	stream := "id: 1\nevent: edit\ndata: {\"page\":\"Main_Page\"}\n\nid: 2\ndata: first line\ndata: second line\n\n"
	d := sse.NewDecoder(strings.NewReader(stream))
	var b sse.Batch
	for {
		err := d.ReadBatch(&b, 256)
		for _, ev := range b.Events {
			fmt.Printf("%s %s %q\n", ev.ID, ev.Type, ev.Data)
		}
		b.Release() // the events must not be used after this
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("error:", err)
			break
		}
	}
	// Output:
	// 1 edit "{\"page\":\"Main_Page\"}"
	// 2 message "first line\nsecond line"
}
