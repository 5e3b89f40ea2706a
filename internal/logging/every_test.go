package logging

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestEveryCountsWhatItSuppresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := NewEvery(5 * time.Second)
		if ok, n := e.Allow(); !ok || n != 0 {
			t.Fatalf("first Allow = %v, %d; want true, 0", ok, n)
		}
		for i := 0; i < 1000; i++ {
			if ok, _ := e.Allow(); ok {
				t.Fatalf("Allow %d within the interval = true", i)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Second)
		if ok, n := e.Allow(); !ok || n != 1000 {
			t.Fatalf("Allow after the interval = %v, %d; want true, 1000", ok, n)
		}
		if ok, _ := e.Allow(); ok {
			t.Fatal("Allow right after an allowed line = true")
		}
	})
}
