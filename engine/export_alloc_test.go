//go:build !race

package engine

import (
	"strconv"
	"testing"
)

// TestExportAllocatesNothing: once its batch buffers have grown, a walk
// allocates nothing, however many items it copies. (Not under -race,
// whose sync.Pool drops buffers at random.)
func TestExportAllocatesNothing(t *testing.T) {
	e, _ := newTestEngine(t, 16)
	val := make([]byte, 300)
	for i := 0; i < 5000; i++ {
		e.Store(ModeSet, []byte("key:"+strconv.Itoa(i)), 0, 0, val, 0)
	}
	n := 0
	fn := func(it ExportedItem) bool { n += len(it.Key); return true }
	e.Export(fn)
	allocs := testing.AllocsPerRun(20, func() { e.Export(fn) })
	if allocs != 0 {
		t.Fatalf("a walk of 5000 items allocates %.1f times, want 0", allocs)
	}
}
