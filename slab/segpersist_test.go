package slab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// TestSegStateRestores: an allocator rebuilt from State over the same
// memory (a warm restart) holds exactly the linked items, with their
// values, and carries on storing and evicting.
func TestSegStateRestores(t *testing.T) {
	const pages, pageSize = 8, 64 << 10
	r := newSegRig(t, pages, pageSize, 0)
	for i := range 30000 {
		k := fmt.Sprint("key-", i%5000)
		if !r.set(k, i, 20+i%90, uint32(i%3), uint32(i%2)*1000) {
			t.Fatalf("set %d failed", i)
		}
		if h, ok := r.x.m[fmt.Sprint("key-", i%50)]; ok {
			r.a.Bump(h)
		}
	}
	st := r.a.State()
	used := make([]bool, pages)
	linked, err := CheckState(r.a.Items, pageSize, &st, used, 250)
	if err != nil {
		t.Fatal(err)
	}
	if linked != len(r.x.m) {
		t.Fatalf("CheckState counts %d linked items, the index holds %d", linked, len(r.x.m))
	}
	was, mainBefore := r.x.m, r.a.mainSegs
	if mainBefore == 0 {
		t.Fatal("no merge wrote a main segment: the test restores only probation ones")
	}
	r.a.Detach()
	if r.a.Pages() != 0 {
		t.Fatalf("a detached allocator holds %d pages", r.a.Pages())
	}

	pool := NewPool(pages, pageSize)
	pool.Remove(used)
	classes, _ := NewClasses(pageSize, ChunkAlign, 1.25)
	x := &fakeIndex{t: t, m: map[string]Handle{}}
	a := NewSegAllocator(r.a.Items, &classes, pageSize, pool, x)
	x.a = a
	a.Restore(&st, func(h Handle) {
		a.Link(h)
		x.m[string(a.Items.Key(h))] = h
	})
	if a.mainSegs != mainBefore {
		t.Fatalf("%d main segments after the restore, %d before", a.mainSegs, mainBefore)
	}
	if len(x.m) != len(was) || a.Pages()+pool.Free() != pages {
		t.Fatalf("restored %d items of %d; %d pages held, %d free of %d", len(x.m), len(was), a.Pages(), pool.Free(), pages)
	}
	for k, h := range was {
		if x.m[k] != h {
			t.Fatalf("%s at %d after the restore, %d before", k, x.m[k], h)
		}
	}
	// It goes on: more stores evict by merging as before.
	r2 := &segRig{a: a, x: x, now: r.now}
	for i := range 3000 {
		if !r2.set(fmt.Sprint("new-", i), i, 50, 0, 0) {
			t.Fatalf("set after the restore %d failed", i)
		}
	}
}

// FuzzCheckState: whatever a page holds and whatever its state claims,
// CheckState does not panic, and an allocator restored from a state it
// accepts reads every linked item's key and value within its page.
func FuzzCheckState(f *testing.F) {
	const pages, pageSize = 3, 4096
	r := newSegRig(f, pages, pageSize, 0)
	r.set("a", 1, 10, 0, 0)
	r.set("bb", 1, 300, 7, 50)
	good := r.a.Items.mem[:pageSize]
	f.Add(append([]byte(nil), good...), int32(r.a.segs[0].used))
	f.Add([]byte{0, 0, 0, 0}, int32(8))
	f.Fuzz(func(t *testing.T, page []byte, used int32) {
		mem := make([]byte, pages*pageSize)
		copy(mem, page)
		binary.LittleEndian.PutUint32(mem, 0) // segment 0's page says so
		items := NewSegItems(mem, 0)
		st := SegState{Segments: []SegRecord{{Page: 0, Used: used}}}
		for i := range st.Open {
			st.Open[i] = -1
		}
		n, err := CheckState(items, pageSize, &st, make([]bool, pages), 250)
		if err != nil {
			return
		}
		classes, _ := NewClasses(pageSize, ChunkAlign, 1.25)
		a := NewSegAllocator(items, &classes, pageSize, NewPool(pages, pageSize), nil)
		seen := 0
		a.Restore(&st, func(h Handle) {
			seen++
			if end := items.Offset(h) + items.Size(h); end > int(used) {
				t.Fatalf("item at %d ends at %d, past the %d bytes used", items.Offset(h), end, used)
			}
			_ = bytes.Clone(items.Key(h))
			_ = bytes.Clone(items.Value(h))
			a.Link(h)
		})
		if seen != n {
			t.Fatalf("restored %d linked items, CheckState counted %d", seen, n)
		}
	})
}
