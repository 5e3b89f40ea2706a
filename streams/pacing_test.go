package streams

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// The writers pace once writing every event at once would keep them busy,
// measured as if each event had had a write of its own, and stop once
// that load is low again; in between they keep what they had.
func TestNextGap(t *testing.T) {
	ms := int64(time.Millisecond)
	cases := []struct {
		name                       string
		gap                        time.Duration
		span, busy, writes, events int64
		want                       time.Duration
	}{
		{"idle", 0, 100 * ms, 0, 0, 0, 0},
		{"light load stays unpaced", 0, 100 * ms, 10 * ms, 1000, 1000, 0},
		{"busy writers pace", 0, 100 * ms, 60 * ms, 6000, 6000, pacingGap},
		{"in between keeps unpaced", 0, 100 * ms, 30 * ms, 3000, 3000, 0},
		{"in between keeps paced", pacingGap, 100 * ms, 30 * ms, 3000, 3000, pacingGap},
		// Paced, the writers are less busy only because each write carries
		// three events: without pacing they would be busy again.
		{"paced load counts events per write", pacingGap, 100 * ms, 15 * ms, 1000, 3000, pacingGap},
		{"load gone stops pacing", pacingGap, 100 * ms, 5 * ms, 100, 300, 0},
		{"no span keeps", pacingGap, 0, 0, 0, 0, pacingGap},
	}
	for _, c := range cases {
		if got := nextGap(c.gap, c.span, c.busy, c.writes, c.events); got != c.want {
			t.Errorf("%s: nextGap = %v, want %v", c.name, got, c.want)
		}
	}
}

// woken reports whether s was told of new frames, and clears it.
func woken(s *subscriber) bool {
	select {
	case <-s.wake:
		return true
	default:
		return false
	}
}

// datasOf is the data of frames, in order.
func datasOf(frs []*frame) []string {
	var out []string
	for _, f := range frs {
		out = append(out, string(f.wire[len("data: "):len(f.wire)-2]))
	}
	return out
}

// A paced tail wakes its members for the first event after a quiet gap at
// once, holds back those that follow within the gap and wakes them when it
// ends, or at once when pacingHold events are held: each member then reads
// every event, in order.
func TestPacedTailHoldsEventsWithinTheGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gap := 30 * time.Millisecond
		tl := newTail(1000, 1<<24, 500, 0)
		paced := true
		tl.pace = func() time.Duration {
			if paced {
				return gap
			}
			return 0
		}
		sub := newSubscriber(0, nil)
		if _, err := tl.joinHead(sub); err != nil {
			t.Fatal(err)
		}
		n := 0
		pub := func() {
			n++
			tl.publish(newFrame(0, "s", "", []byte(fmt.Sprint("e", n)), ""))
		}
		read := func() []string {
			frs, more, err := tl.read(sub, nil, 1000)
			if err != nil || more {
				t.Fatalf("read: more=%v err=%v", more, err)
			}
			return datasOf(frs)
		}

		pub()
		if !woken(sub) {
			t.Fatal("the first event after a quiet gap did not wake the member at once")
		}
		if got := read(); !slices.Equal(got, seqDatas(1, 1)) {
			t.Fatalf("read %v", got)
		}
		time.Sleep(10 * time.Millisecond)
		pub()
		pub()
		synctest.Wait()
		if woken(sub) {
			t.Fatal("events within the gap woke the member at once")
		}
		time.Sleep(gap - 10*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if woken(sub) {
			t.Fatal("held events woke the member before the gap ended")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !woken(sub) {
			t.Fatal("held events did not wake the member when the gap ended")
		}
		if got := read(); !slices.Equal(got, seqDatas(2, 3)) {
			t.Fatalf("after the gap read %v, want e2, e3", got)
		}

		// A burst: pacingHold events are held, the next wakes at once.
		for range pacingHold {
			pub()
		}
		synctest.Wait()
		if woken(sub) {
			t.Fatalf("%d events within the gap woke the member", pacingHold)
		}
		pub()
		if !woken(sub) {
			t.Fatalf("%d events held did not wake the member at once", pacingHold+1)
		}
		if got := read(); !slices.Equal(got, seqDatas(4, n)) {
			t.Fatalf("after the burst read %v, want e4..e%d", got, n)
		}

		// Unpaced, every event wakes at once.
		paced = false
		pub()
		if !woken(sub) {
			t.Fatal("an unpaced event did not wake the member at once")
		}
		if got := read(); !slices.Equal(got, seqDatas(n, n)) {
			t.Fatalf("unpaced read %v", got)
		}

		// A broken tail's held events wake no one; its timer is stopped.
		paced = true
		time.Sleep(gap)
		pub() // wakes: a gap has passed
		woken(sub)
		pub() // held
		tl.breakWith(ErrClosed)
		time.Sleep(gap)
		synctest.Wait()
		if woken(sub) {
			t.Error("a broken tail woke its former member")
		}
	})
}

// Paced taken-over subscribers get every event, in order, whether it
// left at once, when the gap ended, or with a burst.
func TestPacedSubscribersGetEveryEvent(t *testing.T) {
	e := startNATS(t)
	srv, hs := startServer(t, []Config{coreCfg("/core/paced", "paced")}, Deps{NATS: e.nc})
	var subs []*sseClient
	for range 3 {
		subs = append(subs, subscribe(t, hs.URL+"/core/paced", nil))
	}
	b := srv.streams["/core/paced"].backend.(*coreBackend)
	b.mu.Lock()
	tl := b.cur.tail
	b.mu.Unlock()
	tl.mu.Lock()
	tl.pace = func() time.Duration { return 20 * time.Millisecond }
	tl.mu.Unlock()
	const n = 300
	for i := 1; i <= n; i++ {
		e.publish(t, "paced", "", fmt.Sprint("e", i))
	}
	for i, c := range subs {
		if got := datas(c.take(t, n)); !slices.Equal(got, seqDatas(1, n)) {
			t.Fatalf("subscriber %d got %v, want e1..e%d", i, got, n)
		}
	}
}

// A tail paces at its writers' gap, unless its stream gathers its own way
// (Coalesce), where pacing would only add its gap to the stream's.
func TestTailPacesAtItsWritersGap(t *testing.T) {
	for _, coalesce := range []time.Duration{0, 25 * time.Millisecond} {
		pool := &writerPool{}
		pool.pace.gap.Store(int64(pacingGap))
		sub := newSubscriber(0, nil)
		sub.cs.Store(&connSub{pool: pool, st: &stream{cfg: Config{Coalesce: coalesce}}})
		tl := newTail(10, 1<<20, 5, 0)
		if _, err := tl.joinHead(sub); err != nil {
			t.Fatal(err)
		}
		want := int64(pacingGap)
		if coalesce > 0 {
			want = 0
		}
		tl.mu.Lock()
		got := tl.pacingGapOf()
		tl.mu.Unlock()
		if got != want {
			t.Errorf("coalesce %v: tail paces at %v, want %v", coalesce, time.Duration(got), time.Duration(want))
		}
	}
}
