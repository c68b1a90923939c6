// Package enginetest makes engine item memory for the tests of the
// packages above the engine (tenancy, server), so that each does not keep
// its own copy.
package enginetest

import (
	"testing"
	"time"

	"github.com/memhive/memhive/engine"
)

// Memory makes item memory of mib MiB on a clock that ticks only when a
// test advances it, with no crawler; both are stopped when t ends.
func Memory(t testing.TB, mib int64) *engine.Memory {
	t.Helper()
	clk := engine.NewClock(time.Hour)
	t.Cleanup(clk.Stop)
	mem, err := engine.NewMemory(engine.Config{MemoryBytes: mib << 20, Clock: clk, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return mem
}
