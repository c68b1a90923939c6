//go:build linux && !race

package arena

import "testing"

// BenchmarkCollapseWrittenIdle is one pass of CollapseWritten over a 1 GiB
// arena with 64 MiB written and collapsed and the rest never written: the
// steady cost of the periodic pass when there is nothing to collapse.
func BenchmarkCollapseWrittenIdle(b *testing.B) {
	ps := 1<<20 + 64
	a, err := New(1024*ps, ps)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	writeAll(a.Mem()[:64*ps], 1)
	if n, again := a.CollapseWritten(); n == 0 && !again {
		b.Skip("no MADV_COLLAPSE here")
	}
	b.ResetTimer()
	for range b.N {
		a.CollapseWritten()
	}
}
