//go:build linux && !race

package arena

import (
	"testing"
	"time"
)

// BenchmarkCollapseWrittenIdle is one pass of CollapseWritten over a 1 GiB
// arena with 64 MiB written and collapsed and the rest never written: the
// steady cost of the periodic pass when there is nothing to collapse.
func BenchmarkCollapseWrittenIdle(b *testing.B) {
	a := testArena(b, 1<<20+64, 1024)
	writeAll(a.Mem()[:64*a.PageSize()], 1)
	collapseOrSkip(b, a)
	b.ResetTimer()
	for range b.N {
		a.CollapseWritten()
	}
}

// BenchmarkCollapseWrittenFresh is the cost of collapsing freshly written
// memory, reported per span collapsed: each round releases and rewrites
// 64 pages (untimed), which leaves them on 4 KiB pages, then collapses
// them. The kernel copies each span into a huge page it may have to
// compact memory for.
func BenchmarkCollapseWrittenFresh(b *testing.B) {
	const pages = 64
	a := testArena(b, 1<<20+64, pages)
	var spent time.Duration
	spans := 0
	for range b.N {
		for p := range pages {
			a.Release(p)
		}
		writeAll(a.Mem(), 1)
		start := time.Now()
		spans += collapseOrSkip(b, a)
		spent += time.Since(start)
	}
	b.ReportMetric(float64(spent.Nanoseconds())/float64(max(spans, 1)), "ns/span")
}
