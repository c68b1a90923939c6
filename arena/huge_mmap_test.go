//go:build linux && !race

package arena

import "testing"

// writeAll writes every byte of b, so every OS page of it is resident.
func writeAll(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// TestCollapseWrittenKeepsRSS collapses the wholly written spans of an
// arena and nothing else: no OS page that was not resident becomes so,
// contents stay, and a released page's spans are collapsed again once
// written again.
func TestCollapseWrittenKeepsRSS(t *testing.T) {
	ps := 1<<20 + 64
	a, err := New(16*ps, ps)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mem := a.Mem()
	writeAll(mem[:5*ps], 7)
	mem[7*ps+100] = 1 // a partly written page, as a stripe's open segment
	before := countTrue(resident(t, mem))
	n, again := a.CollapseWritten()
	if n == 0 && !again {
		t.Skip("no MADV_COLLAPSE here (Linux < 6.1, or THP off)")
	}
	if n < 1 {
		t.Fatalf("collapsed %d spans of 5 written MiB, want at least 1", n)
	}
	if after := countTrue(resident(t, mem)); after != before {
		t.Fatalf("%d OS pages resident after collapsing, %d before", after, before)
	}
	for i, b := range mem[:5*ps] {
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
	writeAll(mem[ps:2*ps], 8)
	if n, _ := a.CollapseWritten(); n < 1 {
		t.Fatalf("collapsed %d spans once the released page was written again, want at least 1", n)
	}
}
