package streams

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestJetStreamIDRoundTripAndRejection(t *testing.T) {
	created := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	tag := newJSTag("WIKI", created)
	for _, seq := range []uint64{0, 1, 1234, 1<<64 - 1} {
		id := jsID(seq, tag)
		if want := fmt.Sprint(seq, "-"); !strings.HasPrefix(id, want) || len(id) != len(want)+jsTagLen {
			t.Errorf("id of %d = %q, want %q and a %d-character tag", seq, id, want, jsTagLen)
		}
		pos, err := parseJSID(id, jsStreamByte("WIKI"))
		if err != nil || pos != (jsPosition{seq: seq, tagged: true, inc: tag.inc}) {
			t.Errorf("parse %q = %+v, %v", id, pos, err)
		}
	}
	// A plain sequence keeps its meaning: a position with no incarnation.
	if pos, err := parseJSID("42", jsStreamByte("WIKI")); err != nil || pos != (jsPosition{seq: 42}) {
		t.Errorf("plain sequence: %+v, %v", pos, err)
	}

	// Incarnations differ by creation time, even within the same second;
	// the stream part of the tag does not.
	again := newJSTag("WIKI", created.Add(time.Nanosecond))
	if again.inc == tag.inc || again.stream != tag.stream {
		t.Errorf("recreated stream's tag %+v, first %+v: want the same stream, another incarnation", again, tag)
	}
	if newJSTag("WIKI", created) != tag {
		t.Error("the tag of one incarnation is not stable")
	}

	id := jsID(1234, tag)
	if _, err := parseJSID(id, jsStreamByte("OTHER")); !errors.Is(err, ErrForeignLastEventID) {
		t.Errorf("id of another stream: %v, want ErrForeignLastEventID", err)
	}
	// Every change of one tag character, and every truncation of the tag,
	// is caught rather than read as another incarnation (which would
	// replay the whole stream).
	dash := strings.IndexByte(id, '-')
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := dash + 1; i < len(id); i++ {
		for _, c := range []byte(alphabet) {
			if id[i] == c {
				continue
			}
			bad := id[:i] + string(c) + id[i+1:]
			if _, err := parseJSID(bad, jsStreamByte("WIKI")); !errors.Is(err, ErrInvalidLastEventID) {
				t.Errorf("altered id %q: %v, want ErrInvalidLastEventID", bad, err)
			}
		}
		if _, err := parseJSID(id[:i], jsStreamByte("WIKI")); !errors.Is(err, ErrInvalidLastEventID) {
			t.Errorf("truncated id %q: %v, want ErrInvalidLastEventID", id[:i], err)
		}
	}
	for _, bad := range []string{"", "-", "-" + id[dash+1:], "x1-" + id[dash+1:], "+5", "1.5", id + "A", encodeToken(topicTag("t"), position{0: 1})} {
		if _, err := parseJSID(bad, jsStreamByte("WIKI")); !errors.Is(err, ErrInvalidLastEventID) {
			t.Errorf("%q: %v, want ErrInvalidLastEventID", bad, err)
		}
	}
}

func FuzzParseJSID(f *testing.F) {
	tag := newJSTag("S", time.Unix(1, 2))
	f.Add(jsID(7, tag))
	f.Add("7")
	f.Add("")
	f.Add("7-AAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		pos, err := parseJSID(s, tag.stream)
		if err != nil {
			if !errors.Is(err, ErrInvalidLastEventID) && !errors.Is(err, ErrForeignLastEventID) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		if !pos.tagged {
			return
		}
		// Whatever parses re-encodes to an id meaning the same.
		again, err := parseJSID(jsID(pos.seq, jsTag{stream: tag.stream, inc: pos.inc}), tag.stream)
		if err != nil || again != pos {
			t.Fatalf("re-encode of %+v: %+v, %v", pos, again, err)
		}
	})
}

// Damaged ids and ids of another stream are still the client's mistake
// (400, with the reason); a plain sequence, as earlier versions sent, keeps
// its meaning, even after a recreation, where it cannot tell.
func TestJetStreamForeignDamagedAndPlainIDs(t *testing.T) {
	e := startNATS(t)
	e.createStream(t, "MINE", "mine.>")
	e.createStream(t, "THEIRS", "theirs.>")
	for i := 1; i <= 3; i++ {
		e.jsPublish(t, "mine.a", "", fmt.Sprint("m", i))
		e.jsPublish(t, "theirs.a", "", fmt.Sprint("t", i))
	}
	_, hs := startServer(t, []Config{jsStreamCfg("/js/mine", "MINE", "")}, Deps{NATS: e.nc})

	mine := e.jsIDOf(t, "MINE", 2)
	theirs := e.jsIDOf(t, "THEIRS", 2)
	// A typo in the tag's last character, which holds only check bits.
	damaged := []byte(mine)
	if damaged[len(damaged)-1] == 'A' {
		damaged[len(damaged)-1] = 'B'
	} else {
		damaged[len(damaged)-1] = 'A'
	}
	for _, tc := range []struct{ id, wantMsg string }{
		{theirs, "another JetStream stream"},
		{string(damaged), "damaged"},
		{mine[:len(mine)-1], "bad tag"},
		{"2-", "bad tag"},
		{"2x", "not a JetStream sequence"},
		{e.jsIDOf(t, "MINE", 9), "beyond the last"},
		{"9", "beyond the last"},
	} {
		resp := get(t, hs.URL+"/js/mine", map[string]string{"Last-Event-ID": tc.id})
		body := readBody(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.wantMsg) {
			t.Errorf("Last-Event-ID %q: %s %q, want 400 mentioning %q", tc.id, resp.Status, body, tc.wantMsg)
		}
	}

	// Valid ids of this incarnation, tagged or plain, resume right after.
	for _, id := range []string{mine, "2"} {
		c := subscribe(t, hs.URL+"/js/mine", map[string]string{"Last-Event-ID": id})
		if got := string(c.next(t).Data); got != "m3" {
			t.Errorf("resume after %q got %q, want m3", id, got)
		}
		c.close()
	}

	// A plain sequence names no incarnation, so after a recreation it
	// still means "after this sequence" of whatever stream there is.
	e.recreateStream(t, "MINE", "mine.>")
	for i := 1; i <= 4; i++ {
		e.jsPublish(t, "mine.a", "", fmt.Sprint("n", i))
	}
	c := subscribe(t, hs.URL+"/js/mine", map[string]string{"Last-Event-ID": "2"})
	if got := datas(c.take(t, 2)); !slices.Equal(got, []string{"n3", "n4"}) {
		t.Errorf("plain id 2 after the recreation: %v, want n3 n4", got)
	}
}
