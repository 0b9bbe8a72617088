package firewall

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestDisjointKeepsTheUnionAndRemovesOverlaps checks disjoint on random
// boxes over two one-byte fields against brute force: every point is
// covered after exactly when it was before, no point is covered twice, and
// the order of the boxes does not matter.
func TestDisjointKeepsTheUnionAndRemovesOverlaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var boxes []box
		for range 1 + rng.IntN(8) {
			b := make(box, 2)
			for d := range b {
				lo, hi := byte(rng.IntN(40)), byte(rng.IntN(40))
				if lo > hi {
					lo, hi = hi, lo
				}
				b[d] = span{lo: []byte{lo}, hi: []byte{hi}}
			}
			boxes = append(boxes, b)
		}
		out := disjoint(boxes)
		for x := range 42 {
			for y := range 42 {
				want := slices.ContainsFunc(boxes, func(b box) bool { return covers(b, x, y) })
				n := 0
				for _, b := range out {
					if covers(b, x, y) {
						n++
					}
				}
				if want && n != 1 || !want && n != 0 {
					t.Fatalf("round %d: point (%d,%d) covered %d times, want %v\nin  %v\nout %v", round, x, y, n, want, boxes, out)
				}
			}
		}
		shuffled := slices.Clone(boxes)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := disjoint(shuffled); !equalBoxes(again, out) {
			t.Fatalf("round %d: order matters:\n%v\n%v", round, out, again)
		}
	}
}

func covers(b box, x, y int) bool {
	return int(b[0].lo[0]) <= x && x <= int(b[0].hi[0]) && int(b[1].lo[0]) <= y && y <= int(b[1].hi[0])
}

// A pinhole into a zone its source already reaches vanishes into the
// access; neighbouring zones stay apart; crossing flows come apart into
// disjoint pieces.
func TestDisjointOfFlows(t *testing.T) {
	p := func(s string) span { return prefixSpan(netip.MustParsePrefix(s)) }
	print := func(bs []box) []string {
		s := &set{key: []field{ipSaddr, ipDaddr}}
		var out []string
		for _, b := range bs {
			out = append(out, s.format(b))
		}
		return out
	}
	got := print(disjoint([]box{
		{p("10.0.10.0/24"), p("10.2.10.0/24")},
		{p("10.0.10.0/24"), p("10.2.10.7/32")}, // inside the first: vanishes
		{p("10.0.11.0/24"), p("10.2.10.0/24")}, // the neighbouring zone: stays apart
		{p("10.0.10.7/32"), p("10.2.10.0/25")}, // a host of the first, to a part: vanishes
	}))
	if want := []string{"10.0.10.0/24 . 10.2.10.0/24", "10.0.11.0/24 . 10.2.10.0/24"}; !slices.Equal(got, want) {
		t.Errorf("nested and adjacent boxes: got %q, want %q", got, want)
	}
	got = print(disjoint([]box{
		{p("10.0.10.0/24"), p("10.2.10.7/32")},
		{p("10.0.10.5/32"), p("10.2.10.0/24")}, // crosses the first
	}))
	want := []string{
		"10.0.10.0-10.0.10.4 . 10.2.10.7",
		"10.0.10.5 . 10.2.10.0/24",
		"10.0.10.6-10.0.10.255 . 10.2.10.7",
	}
	if !slices.Equal(got, want) {
		t.Errorf("crossing boxes:\n got %q\nwant %q", got, want)
	}
}

func TestIncDecAtTheEdges(t *testing.T) {
	if _, ok := inc([]byte{0xff, 0xff}); ok {
		t.Error("inc(ffff) did not overflow")
	}
	if b, ok := inc([]byte{0x00, 0xff}); !ok || b[0] != 1 || b[1] != 0 {
		t.Errorf("inc(00ff) = %x", b)
	}
	if _, ok := dec([]byte{0, 0}); ok {
		t.Error("dec(0000) did not underflow")
	}
	if b, ok := dec([]byte{0x01, 0x00}); !ok || b[0] != 0 || b[1] != 0xff {
		t.Errorf("dec(0100) = %x", b)
	}
}
