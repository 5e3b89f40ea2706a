package nats

import (
	"errors"
	"testing"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestParsePubAck: the answers a JetStream server sends to a publish, read
// as the jetstream package reads them.
func TestParsePubAck(t *testing.T) {
	noResp := &gonats.Msg{Header: gonats.Header{"Status": []string{"503"}}}
	for _, tc := range []struct {
		name  string
		msg   *gonats.Msg
		state uint8
		err   error
	}{
		{"stored", &gonats.Msg{Data: []byte(`{"stream":"S","seq":1}`)}, slotStored, nil},
		{"stored with a domain", &gonats.Msg{Data: []byte(`{"stream":"S","domain":"hub","seq":2}`)}, slotStored, nil},
		{"duplicate", &gonats.Msg{Data: []byte(`{"stream":"S","seq":3,"duplicate":true}`)}, slotDup, nil},
		{"api error", &gonats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`)}, slotFailed, &jetstream.APIError{}},
		{"no stream", &gonats.Msg{Data: []byte(`{}`)}, slotFailed, jetstream.ErrInvalidJSAck},
		{"not json", &gonats.Msg{Data: []byte(`+OK`)}, slotFailed, jetstream.ErrInvalidJSAck},
		{"no responders", noResp, slotFailed, jetstream.ErrNoStreamResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, ack, err := parsePubAck(tc.msg)
			if state != tc.state {
				t.Fatalf("state = %d, want %d (err %v)", state, tc.state, err)
			}
			switch want := tc.err.(type) {
			case nil:
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			case *jetstream.APIError:
				var api *jetstream.APIError
				if !errors.As(err, &api) || api.ErrorCode != 10077 {
					t.Fatalf("err = %v, want the API error 10077", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
			if state == slotDup && (ack == nil || ack.Sequence != 3 || ack.Stream != "S") {
				t.Fatalf("duplicate's ack = %+v", ack)
			}
		})
	}
}
