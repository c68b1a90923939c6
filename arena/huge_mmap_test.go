//go:build linux && !race

package arena

import "testing"

// testArena maps an arena of pages pages of ps bytes, unmapped when the
// test ends.
func testArena(tb testing.TB, ps, pages int) *Arena {
	tb.Helper()
	a, err := New(pages*ps, ps)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// collapseOrSkip runs a.CollapseWritten and returns how many spans it
// collapsed, skipping the test when its answer says this kernel cannot.
func collapseOrSkip(tb testing.TB, a *Arena) int {
	tb.Helper()
	collapsed, again := a.CollapseWritten()
	if collapsed == 0 && !again {
		tb.Skip("no MADV_COLLAPSE here (Linux < 6.1, or THP off)")
	}
	return collapsed
}

// writeAll writes every byte of b, so every OS page of it is resident.
func writeAll(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// TestCollapseWrittenSpans collapses the spans that are written, or at
// least three quarters written within pages that are in use, and no other:
// a span reaching into a page never written or released since stays on 4
// KiB pages, so collapsing adds little RSS and never brings an emptied page
// back; contents stay; a released page's spans are collapsed again once it
// is written again.
func TestCollapseWrittenSpans(t *testing.T) {
	ps := 1<<20 + 64
	a := testArena(t, ps, 16)
	mem := a.Mem()
	h := &a.huge
	spanOf := func(i int) (lo, hi int) { return h.off + i*hugeSize, h.off + (i+1)*hugeSize }
	// Pages 0-3 written whole; page 4 is an open segment, 90% written;
	// page 5 and on are unused but for one byte, as of a neighbour's edge.
	writeAll(mem[:4*ps], 7)
	writeAll(mem[4*ps:4*ps+ps*9/10], 7)
	mem[6*ps+100] = 1
	before := countTrue(resident(t, mem))
	collapseOrSkip(t, a)
	for i := range h.n {
		lo, hi := spanOf(i)
		switch {
		case hi <= 4*ps && !h.marked(i):
			t.Errorf("span %d [%d, %d) is wholly written but not collapsed", i, lo, hi)
		case hi > 5*ps && h.marked(i):
			t.Errorf("span %d [%d, %d) reaches into an unused page but was collapsed", i, lo, hi)
		}
	}
	if after := countTrue(resident(t, mem)); after > before+hugeSize/4/a.osPage {
		t.Fatalf("%d OS pages resident after collapsing, %d before: more than a quarter span added", after, before)
	}
	for i, b := range mem[:4*ps] {
		if b != 7 {
			t.Fatalf("byte %d is %d after collapsing, want 7", i, b)
		}
	}
	if n, _ := a.CollapseWritten(); n != 0 {
		t.Fatalf("second pass collapsed %d spans, want 0", n)
	}

	a.Release(1)
	if n, _ := a.CollapseWritten(); n != 0 {
		t.Fatalf("collapsed %d spans over a released page, want 0", n)
	}
	inLo, inHi := roundUp(ps, a.osPage), 2*ps/a.osPage*a.osPage
	if got := countTrue(resident(t, mem[inLo:inHi])); got != 0 {
		t.Fatalf("%d OS pages of the released page are resident again", got)
	}
	writeAll(mem[ps:2*ps], 8)
	if n, _ := a.CollapseWritten(); n < 1 {
		t.Fatalf("collapsed %d spans once the released page was written again, want at least 1", n)
	}
}

// TestCollapseSkipsReleasedPage releases a page that takes at most a
// quarter of a span whose other three quarters are written: the span is
// resident enough to collapse, but collapsing it would fault the released
// page's share back in, so CollapseWritten must leave it alone.
func TestCollapseSkipsReleasedPage(t *testing.T) {
	ps := 7 << 18 // 1.75 MiB: page edges fall all over the 2 MiB grid
	a := testArena(t, ps, 16)
	mem := a.Mem()
	h := &a.huge
	written := 12 * ps
	writeAll(mem[:written], 7)
	collapseOrSkip(t, a)
	// A span wholly written, and an interior page overlapping it by at
	// least an OS page and at most a quarter of the span.
	span, page := -1, -1
	for i := 0; i < h.n && span < 0; i++ {
		lo, hi := h.off+i*hugeSize, h.off+(i+1)*hugeSize
		if hi > written {
			break
		}
		for p := 1; p < 11; p++ {
			over := min(hi, (p+1)*ps) - max(lo, p*ps)
			if over >= a.osPage && over <= hugeSize/4 {
				span, page = i, p
				break
			}
		}
	}
	if span < 0 {
		t.Fatalf("no span with a page overlapping it by at most a quarter (span offset %d)", h.off)
	}
	a.Release(page)
	lo := h.off + span*hugeSize
	if got := countTrue(resident(t, mem[lo:lo+hugeSize])); got < hugeSize/a.osPage*collapseAt/4 {
		t.Fatalf("span %d has %d OS pages resident after the release: not enough to test anything", span, got)
	}
	a.CollapseWritten()
	if h.marked(span) {
		t.Fatalf("span %d was collapsed over released page %d", span, page)
	}
	inLo, inHi := roundUp(page*ps, a.osPage), (page+1)*ps/a.osPage*a.osPage
	if got := countTrue(resident(t, mem[inLo:inHi])); got != 0 {
		t.Fatalf("%d OS pages of released page %d are resident again", got, page)
	}
}
