//go:build !race

package engine

import (
	"testing"

	"github.com/memhive/memhive/codec"
)

func TestEngineHotPathAllocatesNothing(t *testing.T) {
	e, _ := newTestEngine(t, 16)
	key, val := []byte("key"), make([]byte, 100)
	e.Store(ModeSet, key, 0, 0, val, 0)
	out := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		e.Store(ModeSet, key, 0, 0, val, 0)
		if r, ok := e.Get(key); ok {
			out = append(out[:0], r.Value()...)
			r.Release()
		}
		e.Delta([]byte("n"), DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1, Create: true})
	})
	if allocs != 0 {
		t.Fatalf("set+get+incr allocate %.1f times per run, want 0", allocs)
	}
}
