package slab

import (
	"testing"
)

const testPage = 64 * 1024

func TestClassesAreAlignmentMultiples(t *testing.T) {
	for _, line := range []int{32, 64, 128} {
		c, err := NewClasses(1<<20+128, line, 1.25)
		if err != nil {
			t.Fatal(err)
		}
		prev := 0
		for i, s := range c.Sizes {
			if s%line != 0 || s <= prev {
				t.Fatalf("line %d: class %d size %d (previous %d)", line, i, s, prev)
			}
			if c.PerPage[i] < 1 {
				t.Fatalf("class %d fits no chunk in a page", i)
			}
			prev = s
		}
		if last := c.Sizes[len(c.Sizes)-1]; last != 1<<20+128 {
			t.Fatalf("largest class %d is not the page", last)
		}
	}
	if _, err := NewClasses(testPage, 64, 1.0); err == nil {
		t.Fatal("factor 1.0 accepted")
	}
}

func TestClassFor(t *testing.T) {
	c, _ := NewClasses(testPage, 64, 2)
	for _, n := range []int{1, 63, 64, 65, 1000, testPage} {
		id := c.ClassFor(n)
		if id < 0 || c.Sizes[id] < n || (id > 0 && c.Sizes[id-1] >= n) {
			t.Fatalf("ClassFor(%d) = %d", n, id)
		}
	}
	if c.ClassFor(testPage+1) != -1 {
		t.Fatal("oversized item got a class")
	}
}

type harness struct {
	a       *Allocator
	evicted []Handle
	moved   map[Handle]Handle
}

func (h *harness) Evicted(it Handle)     { h.evicted = append(h.evicted, it) }
func (h *harness) Moved(from, to Handle) { h.moved[from] = to }

func newHarness(t *testing.T, pages int) *harness {
	t.Helper()
	mem := make([]byte, pages*testPage)
	c, err := NewClasses(testPage, 64, 2)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{moved: map[Handle]Handle{}}
	h.a = NewAllocator(NewItems(mem), &c, testPage, NewPool(pages, testPage), h)
	return h
}

func (h *harness) store(key string, n int, now uint32) Handle {
	it := h.a.Alloc(ItemSize(len(key), n))
	if it == 0 {
		return 0
	}
	h.a.Items.Init(it, []byte(key), n, 0, 0, now)
	h.a.Link(it)
	return it
}

func TestAllocFreeReuse(t *testing.T) {
	h := newHarness(t, 1)
	a := h.store("a", 10, 1)
	if string(h.a.Items.Key(a)) != "a" || len(h.a.Items.Value(a)) != 10 {
		t.Fatal("header not written")
	}
	h.a.Unlink(a)
	h.a.Free(a)
	if b := h.store("b", 10, 1); b != a {
		t.Fatalf("freed chunk %d not reused (got %d)", a, b)
	}
}

func TestEvictsLRUTailOfItsClass(t *testing.T) {
	h := newHarness(t, 1)
	per := testPage / h.a.classes.Sizes[0]
	var first Handle
	for i := 0; i < per; i++ {
		it := h.store("k", 1, 1)
		if i == 0 {
			first = it
		}
	}
	// Touch the oldest so the second-oldest becomes the tail.
	h.a.Bump(first)
	if it := h.store("new", 1, 1); it == 0 {
		t.Fatal("allocation failed instead of evicting")
	}
	if len(h.evicted) != 1 || h.evicted[0] == first {
		t.Fatalf("evicted %v; the bumped item %d must survive", h.evicted, first)
	}
}

func TestMovesPageFromColderClass(t *testing.T) {
	h := newHarness(t, 2)
	small := h.a.classes.Sizes[0]
	// Fill both pages with small items at time 1.
	for i := 0; i < 2*testPage/small; i++ {
		if h.store("s", 1, 1) == 0 {
			t.Fatal("fill failed")
		}
	}
	// A large item at a later time must take a page from the small class.
	if it := h.store("L", testPage/2, 10); it == 0 {
		t.Fatal("large allocation failed: no page moved")
	}
	if got := len(h.evicted); got != testPage/small {
		t.Fatalf("evicted %d items, want one page's worth (%d)", got, testPage/small)
	}
	if h.a.Pages() != 2 {
		t.Fatalf("allocator holds %d pages", h.a.Pages())
	}
	// The free list of the small class must not hand out chunks of the moved page.
	for i := 0; i < 10; i++ {
		h.store("s", 1, 20)
	}
	u := h.a.Usage(nil)
	if u[0].Pages != 1 || u[0].Items > testPage/small {
		t.Fatalf("small class after move: %+v", u[0])
	}
}

func TestOutOfMemoryWithNothingToEvict(t *testing.T) {
	mem := make([]byte, testPage)
	c, _ := NewClasses(testPage, 64, 2)
	a := NewAllocator(NewItems(mem), &c, testPage, NewPool(0, testPage), &harness{moved: map[Handle]Handle{}})
	if a.Alloc(100) != 0 {
		t.Fatal("allocated from an empty pool")
	}
	if a.Usage(nil)[c.ClassFor(100)].OutOfMemory != 1 {
		t.Fatal("out-of-memory not counted")
	}
}

func TestPageMoveKeepsNewestItems(t *testing.T) {
	h := newHarness(t, 3)
	small := h.a.classes.Sizes[0]
	per := testPage / small
	// Two pages of small items, oldest first; the third page holds a large item.
	var items []Handle
	for i := 0; i < 2*per; i++ {
		items = append(items, h.store("s", 1, uint32(1+i)))
	}
	h.store("L", testPage/2, uint32(2*per+1))
	// A second large-class allocation has no free page: the small class
	// (older tail) gives up a page, losing only its oldest page's worth.
	h.store("M", testPage/3, uint32(2*per+2))
	if len(h.evicted) != per {
		t.Fatalf("evicted %d items, want %d", len(h.evicted), per)
	}
	oldest := map[Handle]bool{}
	for _, it := range items[:per] {
		oldest[it] = true
	}
	for _, it := range h.evicted {
		if !oldest[it] {
			t.Fatalf("evicted item %d is not among the oldest page's worth", it)
		}
	}
	// Every newer item is still linked, where it was or where it moved.
	for _, it := range items[per:] {
		if to, ok := h.moved[it]; ok {
			it = to
		}
		if h.a.Items.IFlags(it)&ItemLinked == 0 {
			t.Fatalf("newer item %d lost", it)
		}
	}
}

func TestReleasePageGivesBackPagesAndEvictsOldest(t *testing.T) {
	const pages = 4
	h := newHarness(t, pages)
	pool := h.a.pool.(*Pool)
	var keys []Handle
	for i := 0; ; i++ {
		if len(h.evicted) > 0 {
			break
		}
		keys = append(keys, h.store(string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), 500, uint32(i)))
	}
	if pool.Free() != 0 || h.a.Pages() != pages {
		t.Fatalf("after filling: pool free %d, allocator pages %d", pool.Free(), h.a.Pages())
	}
	evictedBefore := len(h.evicted)
	if !h.a.ReleasePage() {
		t.Fatal("ReleasePage with pages held returned false")
	}
	if pool.Free() != 1 || h.a.Pages() != pages-1 {
		t.Fatalf("after one release: pool free %d, allocator pages %d", pool.Free(), h.a.Pages())
	}
	// The items that went are the least recently stored ones.
	gone := map[Handle]bool{}
	for _, e := range h.evicted[evictedBefore:] {
		gone[e] = true
	}
	// The newest item sits in the oldest page (it took the chunk the first
	// eviction freed): it must have been copied out, not evicted.
	newest := keys[len(keys)-1]
	wantKey := string(h.a.Items.Key(newest))
	if gone[newest] {
		t.Fatal("release evicted the newest item")
	}
	if to, ok := h.moved[newest]; ok {
		newest = to
	}
	if got := string(h.a.Items.Key(newest)); got != wantKey || h.a.Items.IFlags(newest)&ItemLinked == 0 {
		t.Fatalf("newest item %q is not linked where the index was told (%q there)", wantKey, got)
	}
	for h.a.ReleasePage() {
	}
	if pool.Free() != pages || h.a.Pages() != 0 {
		t.Fatalf("after releasing all: pool free %d, allocator pages %d", pool.Free(), h.a.Pages())
	}
	if h.store("again", 500, 1000) == 0 {
		t.Fatal("allocation after release failed")
	}
}

func TestReleaseAllEmptiesTheAllocator(t *testing.T) {
	h := newHarness(t, 3)
	pool := h.a.pool.(*Pool)
	for i := 0; i < 100; i++ {
		h.store(string(rune('A'+i%50))+string(rune('A'+i/50)), 2000, uint32(i))
	}
	h.a.ReleaseAll()
	if pool.Free() != 3 || h.a.Pages() != 0 {
		t.Fatalf("pool free %d, allocator pages %d", pool.Free(), h.a.Pages())
	}
	for _, u := range h.a.Usage(nil) {
		if u.Items != 0 || u.FreeChunks != 0 {
			t.Fatalf("class %d still has %d items, %d free chunks", u.ChunkSize, u.Items, u.FreeChunks)
		}
	}
}
