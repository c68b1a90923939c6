package engine

import (
	"fmt"
	"testing"
	"time"
)

// newTestMemory makes a shared Memory of memMiB with a manual clock.
func newTestMemory(t testing.TB, memMiB int64) *Memory {
	t.Helper()
	clk := NewClock(time.Hour)
	t.Cleanup(clk.Stop)
	m, err := NewMemory(Config{MemoryBytes: memMiB << 20, Clock: clk, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newTestCache(t testing.TB, m *Memory, limitMiB int64) *Engine {
	t.Helper()
	e, err := m.NewEngine(CacheConfig{LimitBytes: limitMiB << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// fill stores n items of size bytes named prefix+i.
func fill(t testing.TB, e *Engine, prefix string, n, size int) {
	t.Helper()
	v := make([]byte, size)
	for i := 0; i < n; i++ {
		if st, _ := e.Store(ModeSet, []byte(fmt.Sprintf("%s%d", prefix, i)), 0, 0, v, 0); st != Stored {
			t.Fatalf("store %s%d: status %d", prefix, i, st)
		}
	}
}

func present(e *Engine, prefix string, n int) int {
	found := 0
	for i := 0; i < n; i++ {
		if r, ok := e.Get([]byte(fmt.Sprintf("%s%d", prefix, i))); ok {
			r.Release()
			found++
		}
	}
	return found
}

func TestCachesAreIsolated(t *testing.T) {
	m := newTestMemory(t, 64)
	a, b := newTestCache(t, m, 8), newTestCache(t, m, 16)
	a.Store(ModeSet, []byte("k"), 1, 0, []byte("from a"), 0)
	if _, ok := b.Get([]byte("k")); ok {
		t.Fatal("cache b sees cache a's key")
	}
	b.Store(ModeSet, []byte("k"), 2, 0, []byte("from b"), 0)
	b.FlushAll(0)
	if v, _, _, ok := get(t, a, "k"); !ok || v != "from a" {
		t.Fatalf("cache b's flush reached cache a: %q %v", v, ok)
	}
	if st := a.Stats(); st.CurrItems != 1 || st.CmdSet != 1 || st.LimitMaxbytes != 8<<20 {
		t.Fatalf("cache a stats: items %d sets %d limit %d", st.CurrItems, st.CmdSet, st.LimitMaxbytes)
	}
}

func TestFullCacheEvictsOnlyItsOwnItems(t *testing.T) {
	m := newTestMemory(t, 64)
	a, b := newTestCache(t, m, 8), newTestCache(t, m, 16)
	fill(t, a, "a", 2000, 1000) // about 2 MB: well under a's limit
	fill(t, b, "b", 100000, 1000)
	if got := present(a, "a", 2000); got != 2000 {
		t.Fatalf("cache a lost %d items while cache b was under pressure", 2000-got)
	}
	sb := b.Stats()
	if sb.Evictions == 0 || b.Pages() > int(b.limitPages(16<<20)) {
		t.Fatalf("cache b: evictions %d, pages %d over limit %d", sb.Evictions, b.Pages(), b.limitPages(16<<20))
	}
	if sb.Bytes > 16<<20 {
		t.Fatalf("cache b holds %d bytes, limit %d", sb.Bytes, 16<<20)
	}
	if ea := a.Stats().Evictions; ea != 0 {
		t.Fatalf("cache a counted %d evictions", ea)
	}
}

func TestSetLimitGrowKeepsShrinkEvicts(t *testing.T) {
	m := newTestMemory(t, 64)
	e := newTestCache(t, m, 8)
	fill(t, e, "k", 100000, 1000) // far past 8 MiB
	kept := int(e.Stats().CurrItems)
	e.SetLimit(32 << 20)
	if got := int(e.Stats().CurrItems); got != kept {
		t.Fatalf("growing lost items: %d before, %d after", kept, got)
	}
	fill(t, e, "more", 100000, 1000)
	before := e.Stats()
	freeBefore := m.FreePages()
	e.SetLimit(8 << 20)
	after := e.Stats()
	if e.Pages() > int(e.limitPages(8<<20)) {
		t.Fatalf("after shrinking: %d pages, limit %d", e.Pages(), e.limitPages(8<<20))
	}
	if after.CurrItems >= before.CurrItems || after.Bytes > 8<<20 || after.LimitMaxbytes != 8<<20 {
		t.Fatalf("after shrinking: items %d (before %d), bytes %d, limit %d", after.CurrItems, before.CurrItems, after.Bytes, after.LimitMaxbytes)
	}
	if m.FreePages() <= freeBefore {
		t.Fatalf("shrinking gave no page back: free %d before, %d after", freeBefore, m.FreePages())
	}
	// The survivors are the most recently stored keys.
	if present(e, "more", 100000) == 0 {
		t.Fatal("shrinking kept none of the newest items")
	}
}

func TestClosedCacheGivesPagesBackAndStaysSafe(t *testing.T) {
	m := newTestMemory(t, 32)
	a := newTestCache(t, m, 16)
	fill(t, a, "a", 20000, 1000)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if m.FreePages() != m.Pages() {
		t.Fatalf("after close: %d of %d pages free", m.FreePages(), m.Pages())
	}
	// A request that raced the close finds nothing and stores nothing.
	if _, ok := a.Get([]byte("a1")); ok {
		t.Fatal("closed cache returned an item")
	}
	if st, _ := a.Store(ModeSet, []byte("x"), 0, 0, []byte("v"), 0); st == Stored {
		t.Fatal("closed cache stored an item")
	}
	a.SetLimit(16 << 20)
	b := newTestCache(t, m, 32)
	fill(t, b, "b", 20000, 1000)
	if got := present(b, "b", 20000); got == 0 {
		t.Fatal("new cache on the freed pages holds nothing")
	}
}

func TestCrawlerSkipsWhatCannotExpire(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	fill(t, e, "forever", 1000, 100)
	checked := func() uint64 { return e.Stats().CrawlerItemsChecked }
	e.CrawlOnce()
	if n := checked(); n != 0 {
		t.Fatalf("the crawler checked %d items that never expire", n)
	}
	e.Store(ModeSet, []byte("brief"), 0, 5, []byte("v"), 0)
	e.CrawlOnce()
	if n := checked(); n == 0 {
		t.Fatal("the crawler skipped a stripe with an expiring item")
	}
	clk.Advance(10)
	if freed := e.CrawlOnce(); freed != 1 {
		t.Fatalf("the crawler freed %d expired items, want 1", freed)
	}
	// Touching to no expiry and back keeps the count right.
	e.Store(ModeSet, []byte("t"), 0, 100, []byte("v"), 0)
	e.Touch([]byte("t"), 0)
	before := checked()
	e.CrawlOnce()
	if checked() != before {
		t.Fatal("an item touched to never expire still drew the crawler")
	}
	// A flush is crawled once, after its time.
	e.FlushAll(0)
	clk.Advance(1)
	if freed := e.CrawlOnce(); freed != 1001 {
		t.Fatalf("the pass after a flush freed %d items, want 1001", freed)
	}
	before = checked()
	e.CrawlOnce()
	if checked() != before {
		t.Fatal("the crawler kept passing after the flush was applied")
	}
}
