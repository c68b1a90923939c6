package slab

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSegItemsLayout: every field reads back what Init and the setters
// wrote, for every combination of flags, long values, key lengths and
// alignments; the allocator's bits (layout bits, read counter) stay
// hidden and survive SetIFlags and SetAtime.
func TestSegItemsLayout(t *testing.T) {
	mem := make([]byte, 40<<20)
	for _, shift := range []uint{0, 3} {
		m := NewSegItems(mem, shift)
		off := 0
		for _, c := range []struct {
			nkey, nbytes int
			flags        uint32
		}{{1, 0, 0}, {15, 100, 0}, {15, 100, 7}, {250, 1000, 0xffffffff}, {3, maxShortValue, 0}, {3, maxShortValue + 1, 9}} {
			off = (off + m.Align() - 1) &^ (m.Align() - 1)
			h := m.HandleAt(off + m.Align()) // not at 0: handle 0 is nil
			if m.Offset(h) != off+m.Align() {
				t.Fatalf("shift %d: handle %d at %d, want %d", shift, h, m.Offset(h), off+m.Align())
			}
			key := bytes.Repeat([]byte{'k'}, c.nkey)
			m.Init(h, key, c.nbytes, c.flags, 1234, 99)
			val := m.Value(h)
			for i := range val {
				val[i] = byte(i)
			}
			m.SetCAS(h, 1<<40+5)
			m.SetHNext(h, 77)
			m.SetIFlags(h, ItemLinked|ItemStale)
			m.setFreq(h, segFreqMax)
			m.SetIFlags(h, m.IFlags(h)|ItemKeyBinary)
			m.SetAtime(h, 98)
			m.SetAtime(h, 99)
			name := fmt.Sprintf("shift %d key %d value %d flags %d", shift, c.nkey, c.nbytes, c.flags)
			switch {
			case !bytes.Equal(m.Key(h), key):
				t.Errorf("%s: key %q", name, m.Key(h))
			case len(m.Value(h)) != c.nbytes:
				t.Errorf("%s: value length %d", name, len(m.Value(h)))
			case m.Flags(h) != c.flags, m.Exptime(h) != 1234, m.Atime(h) != 99, m.CAS(h) != 1<<40+5, m.HNext(h) != 77:
				t.Errorf("%s: flags %d exptime %d atime %d cas %d hnext %d", name, m.Flags(h), m.Exptime(h), m.Atime(h), m.CAS(h), m.HNext(h))
			case m.IFlags(h) != ItemLinked|ItemStale|ItemKeyBinary:
				t.Errorf("%s: iflags %#x", name, m.IFlags(h))
			case m.freq(h) != segFreqMax:
				t.Errorf("%s: read counter %d after SetIFlags and SetAtime", name, m.freq(h))
			case m.Size(h) != SegItemSize(c.nkey, c.nbytes, c.flags):
				t.Errorf("%s: size %d, want %d", name, m.Size(h), SegItemSize(c.nkey, c.nbytes, c.flags))
			}
			for i, b := range m.Value(h) {
				if b != byte(i) {
					t.Fatalf("%s: value byte %d is %d", name, i, b)
				}
			}
			off = m.Offset(h) + m.Size(h)
		}
	}
	// The largest handle, (size-1)>>shift + 1, must fit in a uint32.
	for _, c := range []struct {
		size int
		want uint
	}{{4<<30 - 2, 0}, {4 << 30, 1}, {32<<30 - 64, 3}, {32 << 30, 4}} {
		if got := SegShift(c.size); got != c.want {
			t.Errorf("SegShift(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// fakeIndex is a map from keys to handles, checking the allocator's
// calls: a moved or evicted item must be the one the index holds.
type fakeIndex struct {
	t         testing.TB
	a         *SegAllocator
	m         map[string]Handle
	evicted   int
	reclaimed int
	moved     int
}

func (x *fakeIndex) Evicted(h Handle) {
	k := string(x.a.Items.Key(h))
	if x.m[k] != h {
		x.t.Fatalf("evicted %q at %d, the index holds %d", k, h, x.m[k])
	}
	delete(x.m, k)
	x.evicted++
}

func (x *fakeIndex) Moved(from, to Handle) {
	k := string(x.a.Items.Key(to))
	if x.m[k] != from {
		x.t.Fatalf("moved %q from %d, the index holds %d", k, from, x.m[k])
	}
	x.m[k] = to
	x.moved++
}

func (x *fakeIndex) Reclaim(h Handle, now uint32) bool {
	exp := x.a.Items.Exptime(h)
	if exp == 0 || exp > now {
		return false
	}
	k := string(x.a.Items.Key(h))
	if x.m[k] != h {
		x.t.Fatalf("reclaimed %q at %d, the index holds %d", k, h, x.m[k])
	}
	delete(x.m, k)
	x.reclaimed++
	return true
}

// segRig is an allocator over a small arena, with its index.
type segRig struct {
	a   *SegAllocator
	x   *fakeIndex
	now uint32
}

func newSegRig(t testing.TB, pages, pageSize int, shift uint) *segRig {
	mem := make([]byte, pages*pageSize)
	classes, err := NewClasses(pageSize, ChunkAlign, 1.25)
	if err != nil {
		t.Fatal(err)
	}
	x := &fakeIndex{t: t, m: map[string]Handle{}}
	a := NewSegAllocator(NewSegItems(mem, shift), &classes, pageSize, NewPool(pages, pageSize), x)
	x.a = a
	return &segRig{a: a, x: x, now: 100}
}

// value is the value stored for key at version v: its bytes name both,
// so a value read back under the wrong key or an old version shows.
func segValue(key string, v, n int) []byte {
	b := make([]byte, n)
	pat := fmt.Sprintf("%s@%d;", key, v)
	for i := range b {
		b[i] = pat[i%len(pat)]
	}
	return b
}

// set stores key (replacing its item, as the engine does) and reports
// whether it was stored.
func (r *segRig) set(key string, v, n int, flags, exp uint32) bool {
	size := SegItemSize(len(key), n, flags)
	h := r.a.Alloc(size, exp, r.now)
	if h == 0 {
		return false
	}
	m := r.a.Items
	m.Init(h, []byte(key), n, flags, exp, r.now)
	copy(m.Value(h), segValue(key, v, n))
	if old, ok := r.x.m[key]; ok {
		r.a.Unlink(old)
		r.a.Free(old)
	}
	r.x.m[key] = h
	r.a.Link(h)
	return true
}

// check verifies that every indexed item is linked and holds its key,
// and that the allocator's counts agree with the index.
func (r *segRig) check(t testing.TB, versions map[string]int) {
	t.Helper()
	m := r.a.Items
	for k, h := range r.x.m {
		if got := string(m.Key(h)); got != k {
			t.Fatalf("index %q -> %d holds key %q", k, h, got)
		}
		if m.IFlags(h)&ItemLinked == 0 {
			t.Fatalf("index %q -> %d: not linked", k, h)
		}
		if v, ok := versions[k]; ok && !bytes.Equal(m.Value(h), segValue(k, v, len(m.Value(h)))) {
			t.Fatalf("%q: value %.40q is not version %d", k, m.Value(h), v)
		}
	}
	u := r.a.segmentUsage()
	if u.LiveItems != len(r.x.m) {
		t.Fatalf("segments count %d live items, the index %d", u.LiveItems, len(r.x.m))
	}
	items := 0
	for cl := range r.a.cls {
		items += r.a.classItems(cl)
	}
	if items != len(r.x.m) {
		t.Fatalf("classes count %d items, the index %d", items, len(r.x.m))
	}
}

// TestSegAllocFillOverwriteEvict: random sets and overwrites of random
// sizes into a full cache keep the index and the segments in step, and
// every value readable, whatever merges and moves happen.
func TestSegAllocFillOverwriteEvict(t *testing.T) {
	for _, shift := range []uint{0, 3} {
		r := newSegRig(t, 16, 64<<10, shift)
		rng := rand.New(rand.NewPCG(1, uint64(shift)))
		versions := map[string]int{}
		for i := 0; i < 40000; i++ {
			k := fmt.Sprintf("key:%d", rng.IntN(3000))
			n := 10 + rng.IntN(2000)
			if rng.IntN(20) == 0 {
				n = 20000 + rng.IntN(40000)
			}
			versions[k]++
			var flags uint32
			if rng.IntN(3) == 0 {
				flags = uint32(rng.IntN(1 << 20))
			}
			if !r.set(k, versions[k], n, flags, 0) {
				t.Fatalf("shift %d: set %d of %q (%d bytes) failed: nothing evicted", shift, i, k, n)
			}
			if rng.IntN(4) == 0 {
				if h, ok := r.x.m[fmt.Sprintf("key:%d", rng.IntN(3000))]; ok {
					r.a.Bump(h)
				}
			}
			if i%5000 == 0 {
				r.check(t, versions)
			}
			if r.a.Pages() > 16 {
				t.Fatalf("holds %d pages of 16", r.a.Pages())
			}
		}
		r.check(t, versions)
		if r.x.evicted == 0 || r.x.moved == 0 {
			t.Errorf("shift %d: %d evictions and %d moves: the cache never filled", shift, r.x.evicted, r.x.moved)
		}
	}
}

// TestSegAllocKeepsReadItems: in a cache that cannot hold the key space,
// keys read after each write stay, and the rest are evicted first.
func TestSegAllocKeepsReadItems(t *testing.T) {
	r := newSegRig(t, 8, 64<<10, 0)
	hot := map[string]bool{}
	for i := 0; i < 200; i++ {
		hot[fmt.Sprintf("hot:%d", i)] = true
		r.set(fmt.Sprintf("hot:%d", i), 1, 100, 0, 0)
	}
	hits, gets := 0, 0
	for i := 0; i < 20000; i++ {
		r.set(fmt.Sprintf("cold:%d", i), 1, 200, 0, 0)
		k := fmt.Sprintf("hot:%d", i%200)
		gets++
		if h, ok := r.x.m[k]; ok {
			hits++
			r.a.Bump(h)
		} else {
			r.set(k, 1, 100, 0, 0)
		}
		if i%10 == 0 {
			r.now++
		}
	}
	r.check(t, nil)
	if ratio := float64(hits) / float64(gets); ratio < 0.9 {
		t.Errorf("hot keys hit %.3f of the time (%d of %d), want 0.9 or more", ratio, hits, gets)
	}
}

// TestSegAllocKeepsByReadsPerByte: two sets of items written side by
// side, then a stream of new items that forces every segment through
// merges; the set with more reads per byte survives, most of the other
// goes, whatever the order of writing.
func TestSegAllocKeepsByReadsPerByte(t *testing.T) {
	for _, c := range []struct {
		name                string
		winReads, loseReads int
		winSize, loseSize   int
		winFirst            bool
	}{
		{"read 6 times over read once", 6, 1, 300, 300, false},
		{"read 6 times over read once, written first", 6, 1, 300, 300, true},
		{"read 3 times over never read", 3, 0, 300, 300, false},
		{"read twice over read once", 2, 1, 300, 300, true},
		{"as often read, small over large", 2, 2, 100, 1500, false},
		{"small read once over large read twice", 1, 2, 100, 1500, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newSegRig(t, 16, 64<<10, 0)
			const n = 150
			write := func(prefix string, size int) {
				for i := 0; i < n; i++ {
					r.set(fmt.Sprintf("%s%d", prefix, i), 1, size, 0, 0)
				}
			}
			if c.winFirst {
				write("win", c.winSize)
				write("lose", c.loseSize)
			} else {
				write("lose", c.loseSize)
				write("win", c.winSize)
			}
			for i := 0; i < n; i++ {
				for j := 0; j < c.winReads; j++ {
					r.a.Bump(r.x.m[fmt.Sprintf("win%d", i)])
				}
				for j := 0; j < c.loseReads; j++ {
					r.a.Bump(r.x.m[fmt.Sprintf("lose%d", i)])
				}
			}
			// New items, each read once, to fill the cache twice over.
			for i := 0; i < 2*(16<<16)/200; i++ {
				k := fmt.Sprintf("new%d", i)
				r.set(k, 1, 200, 0, 0)
				r.a.Bump(r.x.m[k])
			}
			r.check(t, nil)
			won, lost := 0, 0
			for i := 0; i < n; i++ {
				if _, ok := r.x.m[fmt.Sprintf("win%d", i)]; ok {
					won++
				}
				if _, ok := r.x.m[fmt.Sprintf("lose%d", i)]; ok {
					lost++
				}
			}
			// A merge whose victims fit in a page keeps all they hold, so
			// a few losers may be left.
			if won < n*9/10 || lost > n/5 {
				t.Errorf("%d of %d winners and %d of %d losers held", won, n, lost, n)
			}
		})
	}
}

// TestSegAllocExpiredFirst: once the short-lived items' segments have
// expired, new items take their pages before anything is evicted.
func TestSegAllocExpiredFirst(t *testing.T) {
	r := newSegRig(t, 8, 64<<10, 0)
	for i := 0; r.a.Pages() < 4; i++ {
		r.set(fmt.Sprintf("short:%d", i), 1, 500, 0, r.now+10)
	}
	for i := 0; r.a.Pages() < 8; i++ {
		r.set(fmt.Sprintf("long:%d", i), 1, 500, 0, 0)
	}
	longs := 0
	for k := range r.x.m {
		if k[0] == 'l' {
			longs++
		}
	}
	r.now += 20
	for i := 0; i < 300; i++ {
		r.set(fmt.Sprintf("new:%d", i), 1, 500, 0, 0)
	}
	r.check(t, nil)
	if r.x.evicted != 0 {
		t.Errorf("%d evictions while expired segments could be freed", r.x.evicted)
	}
	if r.x.reclaimed == 0 {
		t.Error("no expired item was reclaimed")
	}
	n := 0
	for k := range r.x.m {
		if k[0] == 'l' {
			n++
		}
	}
	if n != longs {
		t.Errorf("%d of %d long-lived items left", n, longs)
	}
}

// TestSegAllocOnePage: a cache of one page still takes every set,
// compacting its only segment.
func TestSegAllocOnePage(t *testing.T) {
	r := newSegRig(t, 1, 64<<10, 0)
	versions := map[string]int{}
	for i := 0; i < 5000; i++ {
		k := fmt.Sprintf("k%d", i%700)
		versions[k]++
		if !r.set(k, versions[k], 50+i%300, 0, 0) {
			t.Fatalf("set %d failed", i)
		}
		if i%3 == 0 {
			if h, ok := r.x.m[fmt.Sprintf("k%d", (i*7)%700)]; ok {
				r.a.Bump(h)
			}
		}
	}
	r.check(t, versions)
	if r.a.Pages() != 1 {
		t.Errorf("holds %d pages", r.a.Pages())
	}
}

// TestSegAllocRelease: ReleasePage gives the oldest segment's page back
// with its items evicted; ReleaseAll gives back everything.
func TestSegAllocRelease(t *testing.T) {
	r := newSegRig(t, 4, 64<<10, 0)
	for i := 0; r.a.Pages() < 4; i++ {
		r.set(fmt.Sprintf("k%d", i), 1, 1000, 0, 0)
		if i%50 == 0 {
			r.now++
		}
	}
	before := len(r.x.m)
	if !r.a.ReleasePage(r.now) || r.a.Pages() != 3 {
		t.Fatalf("ReleasePage: %d pages left", r.a.Pages())
	}
	r.check(t, nil)
	if len(r.x.m) >= before || r.x.m["k0"] != 0 {
		t.Errorf("after ReleasePage %d of %d items left, k0 at %d", len(r.x.m), before, r.x.m["k0"])
	}
	r.a.ReleaseAll()
	if r.a.Pages() != 0 || r.a.pool.(*Pool).Free() != 4 {
		t.Errorf("after ReleaseAll %d pages held, %d free", r.a.Pages(), r.a.pool.(*Pool).Free())
	}
}

// TestSegAllocTooLarge: an item larger than a segment is refused.
func TestSegAllocTooLarge(t *testing.T) {
	r := newSegRig(t, 2, 64<<10, 0)
	if h := r.a.Alloc(64<<10, 0, r.now); h != 0 {
		t.Errorf("Alloc of a whole page returned %d", h)
	}
	if h := r.a.Alloc(64<<10-segHeaderSize, 0, r.now); h == 0 {
		t.Error("Alloc of a segment's capacity failed")
	}
}

// BenchmarkSegAllocSet: storing into a full cache, merges included,
// allocates nothing.
func BenchmarkSegAllocSet(b *testing.B) {
	r := newSegRig(b, 64, 1<<20, 0)
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("memtier-%d", i))
	}
	handles := make([]Handle, len(keys))
	value := bytes.Repeat([]byte{'v'}, 100)
	set := func(i int) {
		k := keys[i&(len(keys)-1)]
		size := SegItemSize(len(k), len(value), 0)
		h := r.a.Alloc(size, 0, r.now)
		if h == 0 {
			b.Fatal("Alloc failed")
		}
		m := r.a.Items
		m.Init(h, k, len(value), 0, 0, r.now)
		copy(m.Value(h), value)
		if old := handles[i&(len(keys)-1)]; old != 0 && m.IFlags(old)&ItemLinked != 0 && bytes.Equal(m.Key(old), k) {
			r.a.Unlink(old)
		}
		handles[i&(len(keys)-1)] = h
		r.a.Link(h)
	}
	// The fake index's map would allocate: this benchmark keeps its own
	// handles and ignores the index's calls.
	r.a.index = nopIndex{}
	for i := 0; i < 1<<20; i++ {
		set(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		set(i)
	}
}

type nopIndex struct{}

func (nopIndex) Evicted(Handle)              {}
func (nopIndex) Moved(Handle, Handle)        {}
func (nopIndex) Reclaim(Handle, uint32) bool { return false }

// TestSegAllocEvictsOldestFirst: of items never read, what a merge
// evicts is the oldest writes, never the newest: new items are merged
// from the oldest probation segments, never the newest.
func TestSegAllocEvictsOldestFirst(t *testing.T) {
	r := newSegRig(t, 8, 64<<10, 0)
	const n = 20000
	for i := 0; i < n; i++ {
		if !r.set(fmt.Sprintf("k%d", i), 1, 300, 0, 0) {
			t.Fatalf("set %d failed", i)
		}
	}
	r.check(t, nil)
	if r.x.evicted == 0 {
		t.Fatal("nothing evicted")
	}
	// The newest writes fill at least the newest segment: a page's worth
	// of them must all be there.
	keep := (64 << 10) / SegItemSize(6, 300, 0)
	for i := n - keep; i < n; i++ {
		if _, ok := r.x.m[fmt.Sprintf("k%d", i)]; !ok {
			t.Fatalf("k%d, one of the %d newest writes, was evicted (%d items held)", i, keep, len(r.x.m))
		}
	}
}

// TestSegAllocReusesExpiredBeforeTakingMore: a cache whose items expire
// takes the pages of its expired segments before new ones, so it holds
// what its live items need, not its limit (memcached's total_malloced
// stays flat the same way).
func TestSegAllocReusesExpiredBeforeTakingMore(t *testing.T) {
	r := newSegRig(t, 64, 64<<10, 0)
	r.a.ExpiredFirst = true
	for round := 0; round < 20; round++ {
		for i := 0; i < 400; i++ {
			r.set(fmt.Sprintf("r%d-%d", round, i), 1, 500, 0, r.now+5)
		}
		r.now += 10 // everything written so far has expired
	}
	r.check(t, nil)
	if p := r.a.Pages(); p > 6 {
		t.Errorf("holds %d pages for about 3 pages of live items", p)
	}
	if r.x.evicted != 0 {
		t.Errorf("%d evictions", r.x.evicted)
	}
}
