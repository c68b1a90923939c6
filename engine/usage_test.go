package engine

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/memhive/memhive/slab"
)

// TestUsageLimitAndFirstEviction shows that the three numbers a dashboard
// puts side by side agree: a cache's usage (TotalMalloced, the pages it
// holds) stays below its limit until the first eviction and reaches it
// exactly then (the limit in whole pages of PageCharge bytes, each page
// PageSize bytes of memory), whatever the mix of item sizes; Bytes, the
// bytes its items take, never exceeds the usage.
func TestUsageLimitAndFirstEviction(t *testing.T) {
	clk := NewClock(time.Hour)
	t.Cleanup(clk.Stop)
	m, err := NewMemory(Config{MemoryBytes: 512 << 20, Clock: clk, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	charge, page := uint64(m.PageCharge()), uint64(m.PageSize())
	slack := page - charge // per page: the room for the largest item's header
	val := make([]byte, 300_000)
	for _, c := range []struct {
		name     string
		limit    int64
		min, max int // value sizes
	}{
		{"8MiB uniform", 8 << 20, 100, 100},
		{"8MiB mixed", 8 << 20, 10, 2000},
		{"25MiB mixed", 25 << 20, 10, 5000},
		{"64MiB uniform", 64 << 20, 500, 500},
		{"64MiB wide", 64 << 20, 1, 300_000},
		{"256MiB mixed", 256 << 20, 10, 2000},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := m.NewEngine(CacheConfig{LimitBytes: c.limit, CrawlInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			pages := uint64(c.limit) / charge
			full := pages * page // the memory of the limit's whole pages
			rng := rand.New(rand.NewSource(1))
			for i := 0; ; i++ {
				n := c.min + rng.Intn(c.max-c.min+1)
				if st, _ := e.Store(ModeSet, fmt.Appendf(nil, "key:%d", i), 0, 0, val[:n], 0); st != Stored {
					t.Fatalf("set %d: %v", i, st)
				}
				st := e.Stats()
				if st.Bytes > st.TotalMalloced || st.TotalMalloced > full {
					t.Fatalf("after %d sets: bytes %d, usage %d, limit %d", i+1, st.Bytes, st.TotalMalloced, st.LimitMaxbytes)
				}
				if st.Evictions == 0 {
					continue
				}
				if st.TotalMalloced != full {
					t.Fatalf("first eviction after %d sets with usage %d; the limit %d in whole pages is %d", i+1, st.TotalMalloced, c.limit, full)
				}
				// The limits here are whole MiB: the cache gets all of its
				// limit, and passes it only by the pages' slack.
				if st.TotalMalloced < uint64(c.limit) || st.TotalMalloced > uint64(c.limit)+pages*slack {
					t.Fatalf("usage at the first eviction %d is not the limit %d (up to %d bytes above)", st.TotalMalloced, c.limit, pages*slack)
				}
				t.Logf("first eviction after %d sets: usage %d of %d (%.1f%%), items' chunks %d", i+1, st.TotalMalloced, c.limit, 100*float64(st.TotalMalloced)/float64(c.limit), st.Bytes)
				return
			}
		})
	}
}

// TestBytesCountsItems pins what "bytes" counts: the bytes each live
// item takes in its segment (header, key and value), so it goes up on a
// set and back down on a delete; both items share one segment.
func TestBytesCountsItems(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	e.Store(ModeSet, []byte("a"), 0, 0, []byte("1"), 0)
	e.Store(ModeSet, []byte("bb"), 5, 0, make([]byte, 700), 0)
	want := uint64(slab.SegItemSize(1, 1, 0) + slab.SegItemSize(2, 700, 5))
	if got := e.Stats().Bytes; got != want {
		t.Fatalf("bytes %d after two sets, want %d", got, want)
	}
	if st := e.Stats(); st.TotalMalloced != uint64(e.mem.PageSize()) {
		t.Fatalf("usage %d: one segment holds both, want %d", st.TotalMalloced, e.mem.PageSize())
	}
	e.Delete([]byte("bb"), 0)
	if got := e.Stats().Bytes; got != uint64(slab.SegItemSize(1, 1, 0)) {
		t.Fatalf("bytes %d after the delete, want %d", got, slab.SegItemSize(1, 1, 0))
	}
}
