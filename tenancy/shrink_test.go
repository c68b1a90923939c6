package tenancy

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/internal/enginetest"
)

// TestShrinkFullCache fills a cache with small items and shrinks it to the
// smallest limit through the store, as the admin API does: the store
// answers at once, and once Sync returns the engine holds no more pages
// than the new limit grants. It logs how long each took; MEMHIVE_SHRINK_MIB
// sizes the cache (16 by default) and MEMHIVE_SHRINK_VALUE its values'
// bytes (100). README.md quotes
//
//	MEMHIVE_SHRINK_MIB=1024 go test ./tenancy -run TestShrinkFullCache -count=1 -v
func TestShrinkFullCache(t *testing.T) {
	mib := envInt(t, "MEMHIVE_SHRINK_MIB", 16)
	valueSize := envInt(t, "MEMHIVE_SHRINK_VALUE", 100)
	mem := enginetest.Memory(t, mib+16)
	store, err := control.Open(t.TempDir()+"/control.db", control.Policy{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ts, err := New(Config{}, mem, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	c, err := store.CreateCache(control.Cache{Name: "full", LimitBytes: mib << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	eng := ts.Engine(c.ID)

	start := time.Now()
	value := make([]byte, valueSize)
	key := make([]byte, 0, 16)
	for i := 1; i%4096 != 0 || eng.Stats().Evictions == 0; i++ {
		key = strconv.AppendInt(key[:0], int64(i), 36)
		if st, _ := eng.Store(engine.ModeSet, key, 0, 0, value, 0); st != engine.Stored {
			t.Fatalf("filling: status %v", st)
		}
	}
	full := eng.Stats()
	t.Logf("filled %d MiB with %d items of %d bytes in %v: %d pages",
		mib, full.CurrItems, valueSize, time.Since(start).Round(time.Millisecond), eng.Pages())

	const smallest = 1 << 20 // memhive serve's least cache limit
	limit := int64(smallest)
	start = time.Now()
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	answered := time.Since(start)
	ts.Sync()
	shrunk := time.Since(start)
	if grant := max(1, limit/int64(mem.PageCharge())); int64(eng.Pages()) > grant {
		t.Fatalf("after Sync the engine holds %d pages, its limit grants %d", eng.Pages(), grant)
	}
	t.Logf("shrinking to %d MiB: the store answered in %v; usage was within the new limit %v after the answer (%d items evicted)",
		limit>>20, answered.Round(time.Microsecond), (shrunk - answered).Round(time.Millisecond), full.CurrItems-eng.Stats().CurrItems)
}

func envInt(t *testing.T, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		t.Fatal(fmt.Errorf("%s=%q: want a positive number", name, s))
	}
	return n
}
