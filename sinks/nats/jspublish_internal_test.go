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

// TestLateAnswerOfAbandonedWindow: an answer naming an abandoned epoch
// never settles the message that now occupies its slot, whatever it says.
func TestLateAnswerOfAbandonedWindow(t *testing.T) {
	p := newJSPublisher(nil, 4)
	p.inbox = "_INBOX.test."
	p.tail = 2 // two publishes of epoch 0 in flight...
	p.abandon()
	if p.epoch != 1 || p.inFlight() != 0 {
		t.Fatalf("after abandon: epoch %d, %d in flight", p.epoch, p.inFlight())
	}
	// ...and one of epoch 1 in the slot seq 2 maps to.
	*p.slot(p.tail) = pubSlot{state: slotPending, subj: "s"}
	p.tail++
	refused := []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`)
	for _, subj := range []string{"_INBOX.test.0.2", "_INBOX.test.0.0", "_INBOX.other.1.2", "_INBOX.test.1", "_INBOX.test.1.x", "_INBOX.test.1.9"} {
		p.record(&gonats.Msg{Subject: subj, Data: refused})
		if st := p.slot(2).state; st != slotPending {
			t.Fatalf("answer on %s settled the current message (state %d)", subj, st)
		}
	}
	p.record(&gonats.Msg{Subject: p.reply(2), Data: []byte(`{"stream":"S","seq":7}`)})
	if p.reply(2) != "_INBOX.test.1.2" || p.slot(2).state != slotStored {
		t.Fatalf("the current answer on %s left state %d", p.reply(2), p.slot(2).state)
	}
}
