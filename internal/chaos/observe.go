package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ssebridge/ssebridge/message"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A tally counts the events one observer (the broker read-back or a reverse
// subscriber) saw, by the seq their data carries.
type tally struct {
	mu       sync.Mutex
	copies   map[int]int
	arrivals []arrival
	maxSeen  int
	ooo      int
	foreign  int // records whose data carries no seq
	gaps     int // stream sequences the read-back found missing
	corrupt  int // records whose data differs from what the feed sent
	check    func(seq int, data []byte) bool
}

type arrival struct {
	at      time.Time
	seq     int
	decoded time.Time // when the bridge decoded it, if known
}

func newTally() *tally { return &tally{copies: map[int]int{}} }

// seqOf reads the seq field of a payload without a JSON decoder, so that
// payloads holding NUL or replaced bytes are still counted.
func seqOf(data []byte) (int, bool) {
	i := bytes.Index(data, []byte(`"seq":`))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(`"seq":`):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(string(rest[:j]))
	return n, err == nil
}

func (t *tally) add(data []byte, at time.Time) { t.addDecoded(data, time.Time{}, at) }

// addDecoded counts a record that arrived at at and that the bridge decoded
// at decoded (its SSE-Received-At header; zero when unknown).
func (t *tally) addDecoded(data []byte, decoded, at time.Time) {
	seq, ok := seqOf(data)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		t.foreign++
		return
	}
	if t.check != nil && !t.check(seq, data) {
		t.corrupt++
	}
	if t.copies[seq] == 0 && seq < t.maxSeen {
		t.ooo++
	}
	t.maxSeen = max(t.maxSeen, seq)
	t.copies[seq]++
	t.arrivals = append(t.arrivals, arrival{at: at, seq: seq, decoded: decoded})
}

func (t *tally) gap() {
	t.mu.Lock()
	t.gaps++
	t.mu.Unlock()
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.arrivals)
}

func (t *tally) has(seq int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.copies[seq] > 0
}

// counts are the figures of one observer against the expected seqs.
type counts struct {
	Received, Lost, Dup, OOO, Foreign, Corrupt, Gaps int
	LostSample, DupSample                            []int
}

func (t *tally) counts(expected []int) counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := counts{Received: len(t.arrivals), OOO: t.ooo, Foreign: t.foreign, Corrupt: t.corrupt, Gaps: t.gaps}
	for _, s := range expected {
		if t.copies[s] == 0 {
			c.Lost++
			if len(c.LostSample) < 8 {
				c.LostSample = append(c.LostSample, s)
			}
		}
	}
	for s, n := range t.copies {
		if n > 1 {
			c.Dup += n - 1
			c.DupSample = append(c.DupSample, s)
		}
	}
	sort.Ints(c.DupSample)
	if len(c.DupSample) > 8 {
		c.DupSample = c.DupSample[:8]
	}
	return c
}

// recovery is how long after t the first event newer than everything seen
// by t arrived; ok is false when none did.
// done is true when every seq up to total had arrived by then: a fault
// after that has nothing to recover. After a restart of the bridge
// (restart true) only a record the new process decoded counts, so that
// records the killed process had stored, read back a moment later, do not.
func (t *tally) recovery(at time.Time, total int, restart bool) (d time.Duration, ok, done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	maxBefore := 0
	seen := map[int]bool{}
	for _, a := range t.arrivals {
		if !a.at.After(at) {
			maxBefore = max(maxBefore, a.seq)
			seen[a.seq] = true
		}
	}
	if len(seen) >= total {
		return 0, false, true
	}
	for _, a := range t.arrivals {
		if restart && !a.decoded.IsZero() {
			if !a.decoded.Before(at) {
				return a.at.Sub(at), true, false
			}
			continue
		}
		if a.at.After(at) && a.seq > maxBefore {
			return a.at.Sub(at), true, false
		}
	}
	return 0, false, false
}

// arrivalsBySeq maps each seq to when it was first seen.
func (t *tally) arrivalsBySeq() map[int]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[int]time.Time, len(t.arrivals))
	for _, a := range t.arrivals {
		if _, ok := m[a.seq]; !ok {
			m[a.seq] = a.at
		}
	}
	return m
}

// readJetStream copies every message of the stream into t, by stream
// sequence, until ctx ends. It survives server restarts.
func readJetStream(ctx context.Context, url, stream string, t *tally) {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Name("chaos-reader"), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	next := uint64(1)
	misses := 0
	var st jetstream.Stream
	for ctx.Err() == nil {
		if st == nil {
			c, cancel := context.WithTimeout(ctx, time.Second)
			st, err = js.Stream(c, stream)
			cancel()
			if err != nil {
				st = nil
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		m, err := st.GetMsg(c, next)
		cancel()
		switch {
		case err == nil:
			t.addDecoded(m.Data, decodedAt(m.Header.Get(message.HeaderReceivedAt)), time.Now())
			next++
			misses = 0
		case errors.Is(err, jetstream.ErrMsgNotFound):
			// Either not written yet or a gap (a deleted message): step over
			// a gap only when later messages exist and it stays missing.
			c, cancel := context.WithTimeout(ctx, time.Second)
			info, ierr := st.Info(c)
			cancel()
			if ierr == nil && info.State.LastSeq > next {
				misses++
				if misses >= 20 {
					t.gap()
					next++
					misses = 0
					continue
				}
			}
			sleepCtx(ctx, 50*time.Millisecond)
		default:
			st = nil
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

// readKafka copies every record of the topic into t until ctx ends.
func readKafka(ctx context.Context, addr, topic string, t *tally) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMaxAge(time.Second),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }))
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			var dec time.Time
			for _, h := range r.Headers {
				if h.Key == message.HeaderReceivedAt {
					dec = decodedAt(string(h.Value))
				}
			}
			t.addDecoded(r.Value, dec, now)
		})
		if len(fs.Records()) == 0 {
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
}

// decodedAt parses an SSE-Received-At header; zero when absent or bad.
func decodedAt(v string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}
	}
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// A subscriber reads a reverse stream of the bridge as an SSE client,
// resuming with Last-Event-ID after every drop.
type subscriber struct {
	name       string
	url        string
	t          *tally
	rcv        int           // SO_RCVBUF when > 0 (stalled subscribers)
	stall      time.Duration // stop reading this long after the first event
	mu         sync.Mutex
	lastID     string
	conns      int
	statuses   map[int]int
	errs       map[string]int // failed connection attempts by kind
	stalledYet bool
}

func newSubscriber(name, url string) *subscriber {
	return &subscriber{name: name, url: url, t: newTally(), statuses: map[int]int{}, errs: map[string]int{}}
}

func (s *subscriber) run(ctx context.Context) {
	if s.rcv > 0 {
		// Only the first connection, the one that stalls, has the small
		// receive buffer: after the stall the client reads at full speed.
		small := s.client(s.rcv)
		s.once(ctx, small.cl)
		small.tr.CloseIdleConnections()
		sleepCtx(ctx, 200*time.Millisecond)
	}
	c := s.client(0)
	defer c.tr.CloseIdleConnections()
	for ctx.Err() == nil {
		s.once(ctx, c.cl)
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

type httpClient struct {
	tr *http.Transport
	cl *http.Client
}

func (s *subscriber) client(rcv int) httpClient {
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	if rcv > 0 {
		dialer.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcv)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	tr := &http.Transport{DialContext: dialer.DialContext, DisableCompression: true, DisableKeepAlives: true}
	return httpClient{tr: tr, cl: &http.Client{Transport: tr}}
}

func (s *subscriber) once(ctx context.Context, cl *http.Client) {
	s.mu.Lock()
	last := s.lastID
	s.conns++
	s.mu.Unlock()
	u := s.url
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	} else {
		q := req.URL.Query()
		q.Set("since", "2000-01-01T00:00:00Z")
		req.URL.RawQuery = q.Encode()
	}
	resp, err := cl.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.mu.Lock()
			s.errs[errKind(err)]++
			s.mu.Unlock()
		}
		return
	}
	defer resp.Body.Close()
	s.mu.Lock()
	s.statuses[resp.StatusCode]++
	s.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var data []byte
	var hasData bool
	var id string
	var hasID bool
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
		l := bytes.TrimRight(line, "\r\n")
		switch {
		case len(l) == 0:
			if hasID {
				s.mu.Lock()
				s.lastID = id
				s.mu.Unlock()
			}
			if hasData {
				s.t.add(data, time.Now())
				s.maybeStall(ctx)
			}
			data, hasData, hasID = data[:0], false, false
		case l[0] == ':':
		default:
			name, val, _ := bytes.Cut(l, []byte(":"))
			val = bytes.TrimPrefix(val, []byte(" "))
			switch string(name) {
			case "data":
				if hasData {
					data = append(data, '\n')
				}
				data = append(data, val...)
				hasData = true
			case "id":
				id, hasID = string(val), true
			}
		}
	}
}

func (s *subscriber) maybeStall(ctx context.Context) {
	if s.stall <= 0 {
		return
	}
	s.mu.Lock()
	if s.stalledYet {
		s.mu.Unlock()
		return
	}
	s.stalledYet = true
	s.mu.Unlock()
	sleepCtx(ctx, s.stall)
}

func (s *subscriber) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	codes := make([]int, 0, len(s.statuses))
	for c := range s.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&b, " %d×%d", c, s.statuses[c])
	}
	for k, n := range s.errs {
		fmt.Fprintf(&b, ", %s×%d", k, n)
	}
	return fmt.Sprintf("%d connections (%d events each on average), HTTP%s", s.conns, s.t.total()/max(s.conns, 1), b.String())
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error"
}
