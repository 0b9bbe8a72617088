package firewall

import (
	"bytes"
	"slices"
)

// A span is an inclusive range of one key field: big-endian bytes of the
// field's width, so that byte order is numeric order.
type span struct{ lo, hi []byte }

// A box is one set element: a span per key field. An address prefix, a
// protocol and a port range make a box of four spans.
type box []span

// disjoint returns the union of boxes as pairwise disjoint boxes. The
// kernel insists on it: an interval set refuses an element that overlaps
// another one, and flows overlap all the time (a pinhole into a zone its
// source already reaches, two ranges sharing a port). The result does not
// depend on the order of boxes.
//
// It sweeps the first field: every start and end+1 of a box cuts it into
// segments; over one segment the covering boxes are the same, so the rest
// of the key is the union of their remaining fields, computed recursively.
// A cut that falls inside some box is undone when the segments on both
// sides have the same rest: a box inside another one vanishes into it.
// Cuts between boxes stay, so neighbouring zones remain two prefixes
// rather than becoming one range. Boxes that cross (a zone to a host, a
// host of that zone to another zone) come out in pieces; the sets are laid
// out so that flows rarely cross (see flowSets).
//
// Its cost is the sum, over segments, of the boxes covering each: linear
// for flows, whose prefixes nest or are disjoint.
func disjoint(boxes []box) []box {
	if len(boxes) == 0 {
		return nil
	}
	if len(boxes[0]) == 0 {
		return []box{{}}
	}
	cuts := make([][]byte, 0, 2*len(boxes))
	for _, b := range boxes {
		cuts = append(cuts, b[0].lo)
		if next, ok := inc(b[0].hi); ok {
			cuts = append(cuts, next)
		}
	}
	slices.SortFunc(cuts, bytes.Compare)
	cuts = slices.CompactFunc(cuts, bytes.Equal)
	// inside[i]: some box covers both sides of cuts[i].
	depth := make([]int, len(cuts)+1)
	for _, b := range boxes {
		from, _ := slices.BinarySearchFunc(cuts, b[0].lo, bytes.Compare)
		to, found := slices.BinarySearchFunc(cuts, b[0].hi, bytes.Compare)
		if found {
			to++
		}
		depth[from+1]++ // cuts in (lo, hi]
		depth[to]--
	}
	inside := make([]bool, len(cuts))
	for i, n := 1, depth[0]; i < len(cuts); i++ {
		n += depth[i]
		inside[i] = n > 0
	}
	byStart := slices.Clone(boxes)
	slices.SortStableFunc(byStart, func(a, b box) int { return bytes.Compare(a[0].lo, b[0].lo) })

	type segment struct {
		s    span
		rest []box
	}
	var segs []segment
	var active []box
	next := 0
	for i, lo := range cuts {
		hi := maxOf(len(lo))
		if i+1 < len(cuts) {
			hi, _ = dec(cuts[i+1])
		}
		// Every box that starts at or before lo and ends at or after it
		// covers the whole segment: no cut falls inside a box's edges.
		for next < len(byStart) && bytes.Compare(byStart[next][0].lo, lo) <= 0 {
			active = append(active, byStart[next])
			next++
		}
		active = slices.DeleteFunc(active, func(b box) bool { return bytes.Compare(b[0].hi, lo) < 0 })
		if len(active) == 0 {
			continue
		}
		tails := make([]box, len(active))
		for j, b := range active {
			tails[j] = b[1:]
		}
		rest := disjoint(tails)
		if n := len(segs); n > 0 && inside[i] {
			if prev := &segs[n-1]; equalBoxes(prev.rest, rest) {
				prev.s.hi = hi
				continue
			}
		}
		segs = append(segs, segment{s: span{lo: lo, hi: hi}, rest: rest})
	}
	var out []box
	for _, sg := range segs {
		for _, r := range sg.rest {
			out = append(out, append(box{sg.s}, r...))
		}
	}
	return out
}

func equalBoxes(a, b []box) bool {
	return slices.EqualFunc(a, b, func(x, y box) bool {
		return slices.EqualFunc(x, y, func(s, t span) bool { return bytes.Equal(s.lo, t.lo) && bytes.Equal(s.hi, t.hi) })
	})
}

// inc returns b+1, and false when b is the largest value of its width.
func inc(b []byte) ([]byte, bool) {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// dec returns b-1, and false when b is zero.
func dec(b []byte) ([]byte, bool) {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			return out, true
		}
	}
	return nil, false
}

func maxOf(width int) []byte { return bytes.Repeat([]byte{0xff}, width) }
