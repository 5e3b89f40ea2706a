package nats

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsPublisher is the JetStream publishing machinery of one sink: what the
// jetstream package's asynchronous publisher does, without what the sink
// does not need. The profile of a bridge publishing with PublishMsgAsync
// put a third of its time there: a future, a map entry and a fresh header
// map per message, a goroutine hand-off and a JSON decoding per PubAck.
//
// Here a message is published with nc.PublishMsg, which copies it into the
// connection's buffer, so one message and one header map serve every
// publish. Its reply subject names a slot of a ring of max_in_flight slots:
// "<inbox>.<epoch>.<slot>", strings built once per epoch. PubAcks arrive on
// a channel subscription that only the writing goroutine reads, so no lock
// is taken and no goroutine is woken per acknowledgement but the writer
// itself, and only when it waits. A PubAck is recognised by its first bytes
// (`{"stream":"`); anything else (an error, an odd shape) is decoded in
// full.
//
// The epoch changes whenever the publisher abandons what it has in flight
// (a failed write): a late PubAck of an abandoned publish names an old
// epoch and is ignored, so a slot never takes another message's result.
// Within an epoch a slot is reused only after its PubAck was collected.
type jsPublisher struct {
	nc     *gonats.Conn
	sub    *gonats.Subscription
	acks   chan *gonats.Msg   // the PubAcks, read by the writer only
	status chan gonats.Status // RECONNECTING and CLOSED
	inbox  string             // "_INBOX.<nuid>.", subscribed as inbox+"*.*"

	epoch   uint64
	replies []string // per slot for the current epoch; "" until used
	slots   []pubSlot
	// [head, tail) are the sequence numbers published and not yet
	// collected; seq lives in slot seq % len(slots).
	head, tail uint64

	msg gonats.Msg
	hdr headerSlots
}

// slot states.
const (
	slotFree    uint8 = iota
	slotPending       // published, no answer yet
	slotSkipped       // never published (unroutable, too large): counts as done
	slotStored        // PubAck
	slotDup           // PubAck flagged Duplicate: stored once before
	slotFailed        // an error instead of a PubAck
)

// pubSlot is the fate of one message of the window.
type pubSlot struct {
	state uint8
	subj  string            // the subject, for errors and refusal checks
	err   error             // slotFailed
	ack   *jetstream.PubAck // slotDup: the stream's answer, for the log
}

// newJSPublisher sizes a publisher for a window of window messages; open
// subscribes it.
func newJSPublisher(nc *gonats.Conn, window int) *jsPublisher {
	p := &jsPublisher{
		nc:      nc,
		replies: make([]string, window),
		slots:   make([]pubSlot, window),
		hdr:     newHeaderSlots(),
	}
	p.msg.Header = p.hdr.h
	return p
}

// open subscribes to the reply subjects on first use.
func (p *jsPublisher) open() error {
	if p.sub != nil {
		return nil
	}
	p.inbox = p.nc.NewInbox() + "."
	// Room for every answer of the window and as many late ones from an
	// abandoned epoch: nats.go drops what does not fit (a slow consumer).
	p.acks = make(chan *gonats.Msg, 2*len(p.slots)+64)
	sub, err := p.nc.ChanSubscribe(p.inbox+"*.*", p.acks)
	if err != nil {
		return fmt.Errorf("subscribe to the PubAck inbox: %w", err)
	}
	p.sub = sub
	p.status = p.nc.StatusChanged(gonats.RECONNECTING, gonats.CLOSED)
	return nil
}

// close unsubscribes. The publisher can be opened again.
func (p *jsPublisher) close() error {
	if p.sub == nil {
		return nil
	}
	err := p.sub.Unsubscribe()
	p.nc.RemoveStatusListener(p.status)
	p.sub, p.status = nil, nil
	p.abandon()
	if err != nil && p.nc.IsClosed() {
		err = nil // nothing left to unsubscribe from
	}
	return err
}

// inFlight is the number of messages published and not yet collected.
func (p *jsPublisher) inFlight() int { return int(p.tail - p.head) }

// slot is seq's slot.
func (p *jsPublisher) slot(seq uint64) *pubSlot { return &p.slots[seq%uint64(len(p.slots))] }

// reply is the reply subject of seq in the current epoch.
func (p *jsPublisher) reply(seq uint64) string {
	i := seq % uint64(len(p.slots))
	if r := p.replies[i]; r != "" {
		return r
	}
	r := p.inbox + strconv.FormatUint(p.epoch, 36) + "." + strconv.FormatUint(i, 36)
	p.replies[i] = r
	return r
}

// publish sends m (already in p.msg, headers filled) to subj as the next
// sequence number. The caller checked that the window has room.
func (p *jsPublisher) publish(subj string, data []byte) error {
	seq := p.tail
	p.msg.Subject, p.msg.Reply, p.msg.Data = subj, p.reply(seq), data
	err := p.nc.PublishMsg(&p.msg)
	p.msg.Data = nil
	if err != nil {
		return err
	}
	*p.slot(seq) = pubSlot{state: slotPending, subj: subj}
	p.tail++
	return nil
}

// skip takes the next sequence number for a message that is not published.
func (p *jsPublisher) skip() {
	*p.slot(p.tail) = pubSlot{state: slotSkipped}
	p.tail++
}

// abandon forgets what is in flight: its answers, if any come, are ignored.
func (p *jsPublisher) abandon() {
	for seq := p.head; seq != p.tail; seq++ {
		*p.slot(seq) = pubSlot{}
	}
	p.head = p.tail
	p.epoch++
	clear(p.replies)
}

// drain records every PubAck already received, without waiting.
func (p *jsPublisher) drain() {
	for {
		select {
		case m := <-p.acks:
			p.record(m)
		default:
			return
		}
	}
}

// record stores the answer m in its slot, if it is one of the current
// epoch's pending publishes.
func (p *jsPublisher) record(m *gonats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, p.inbox)
	if !ok {
		return
	}
	e, s, ok := strings.Cut(rest, ".")
	if !ok {
		return
	}
	epoch, err1 := strconv.ParseUint(e, 36, 64)
	i, err2 := strconv.ParseUint(s, 36, 64)
	if err1 != nil || err2 != nil || epoch != p.epoch || i >= uint64(len(p.slots)) {
		return
	}
	sl := &p.slots[i]
	if sl.state != slotPending {
		return
	}
	sl.state, sl.ack, sl.err = parsePubAck(m)
}

// pubAckPrefix starts every PubAck the server sends (it encodes the error
// field, absent then, first).
var pubAckPrefix = []byte(`{"stream":"`)

// parsePubAck reads a JetStream answer as the jetstream package does: a
// no-responders status is jetstream.ErrNoStreamResponse, an API error its
// *jetstream.APIError, anything else that is not a PubAck
// jetstream.ErrInvalidJSAck.
func parsePubAck(m *gonats.Msg) (uint8, *jetstream.PubAck, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return slotFailed, nil, jetstream.ErrNoStreamResponse
	}
	if bytes.HasPrefix(m.Data, pubAckPrefix) && !bytes.Contains(m.Data, []byte(`"duplicate"`)) {
		return slotStored, nil, nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return slotFailed, nil, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return slotFailed, nil, r.Error
	}
	if r.PubAck == nil || r.PubAck.Stream == "" {
		return slotFailed, nil, jetstream.ErrInvalidJSAck
	}
	if r.PubAck.Duplicate {
		return slotDup, r.PubAck, nil
	}
	return slotStored, nil, nil
}
