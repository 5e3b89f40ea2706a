package sse

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestValidUTF8FastMatchesStdlib compares the DFA with utf8.Valid on
// every sequence of up to three bytes drawn from the bytes that matter
// (every lead and continuation boundary), at every alignment against
// the eight-byte fast path.
func TestValidUTF8FastMatchesStdlib(t *testing.T) {
	edges := []byte{0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF}
	var seqs [][]byte
	for _, a := range edges {
		seqs = append(seqs, []byte{a})
		for _, b := range edges {
			seqs = append(seqs, []byte{a, b})
			for _, c := range edges {
				seqs = append(seqs, []byte{a, b, c}, []byte{a, b, c, 0x80})
			}
		}
	}
	for _, s := range seqs {
		for pad := range 17 {
			for _, tail := range []string{"", "x", "é", strings.Repeat("a", 9)} {
				in := append([]byte(strings.Repeat("a", pad)), s...)
				in = append(in, tail...)
				if got, want := validUTF8Fast(in), utf8.Valid(in); got != want {
					t.Fatalf("validUTF8Fast(%q) = %v, want %v", in, got, want)
				}
			}
		}
	}
}

// FuzzValidUTF8Fast compares the DFA with utf8.Valid on any input.
func FuzzValidUTF8Fast(f *testing.F) {
	f.Add([]byte("Москва — 北京 🎉 \xed\xa0\x80 \xf4\x90\x80\x80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validUTF8Fast(b), utf8.Valid(b); got != want {
			t.Fatalf("validUTF8Fast(%q) = %v, want %v", b, got, want)
		}
	})
}

func BenchmarkValidUTF8(b *testing.B) {
	in := nonASCIIEvents(200).stream
	b.Run("dfa", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			validUTF8Fast(in)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			utf8.Valid(in)
		}
	})
	ascii := smallEvents(1000).stream
	b.Run("ascii-dfa", func(b *testing.B) {
		b.SetBytes(int64(len(ascii)))
		for b.Loop() {
			validUTF8Fast(ascii)
		}
	})
	b.Run("ascii-stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(ascii)))
		for b.Loop() {
			utf8.Valid(ascii)
		}
	})
}
