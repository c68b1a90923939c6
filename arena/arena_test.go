package arena

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

// pageSizes covers OS-page multiples and sizes that put page boundaries in
// the middle of OS pages, including pages smaller than one OS page.
var pageSizes = []int{4096, 5000, 3*4096 + 100, 1000, 64 << 10, 1<<20 + 48}

func TestNewMemPagesClose(t *testing.T) {
	for _, ps := range pageSizes {
		size := 7*ps + ps/2 // a partial page that must be dropped
		a, err := New(size, ps)
		if err != nil {
			t.Fatalf("New(%d, %d): %v", size, ps, err)
		}
		if a.Pages() != 7 || a.PageSize() != ps || len(a.Mem()) != 7*ps {
			t.Errorf("New(%d, %d): pages %d, page size %d, len(Mem) %d; want 7, %d, %d",
				size, ps, a.Pages(), a.PageSize(), len(a.Mem()), ps, 7*ps)
		}
		for i, b := range a.Mem() {
			if b != 0 {
				t.Fatalf("page size %d: fresh Mem()[%d] = %d, want 0", ps, i, b)
			}
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if a.Mem() != nil {
			t.Errorf("Mem after Close has length %d, want nil", len(a.Mem()))
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

func TestNewRejectsSizesWithoutAPage(t *testing.T) {
	for _, c := range []struct{ size, pageSize int }{
		{0, 4096}, {4095, 4096}, {4096, 0}, {4096, -1}, {-4096, 4096},
	} {
		a, err := New(c.size, c.pageSize)
		if !errors.Is(err, ErrSize) {
			t.Errorf("New(%d, %d) = %v, %v; want ErrSize", c.size, c.pageSize, a, err)
		}
	}
	a, err := New(4096, 4096)
	if err != nil || a.Pages() != 1 {
		t.Fatalf("New(4096, 4096) = %v, %v; want one page", a, err)
	}
	a.Close()
}

// fill writes a pattern that differs per page and per position, so that a
// page overlapping or zeroing its neighbour shows up.
func fill(a *Arena, page int) {
	ps := a.PageSize()
	b := a.Mem()[page*ps : (page+1)*ps]
	for i := range b {
		b[i] = byte(page*31 + i%251 + 1)
		if b[i] == 0 {
			b[i] = 1
		}
	}
}

func checkFilled(t *testing.T, a *Arena, page int) {
	t.Helper()
	ps := a.PageSize()
	b := a.Mem()[page*ps : (page+1)*ps]
	for i := range b {
		want := byte(page*31 + i%251 + 1)
		if want == 0 {
			want = 1
		}
		if b[i] != want {
			t.Fatalf("page size %d: page %d byte %d = %d, want %d", ps, page, i, b[i], want)
		}
	}
}

func checkZero(t *testing.T, a *Arena, page int) {
	t.Helper()
	ps := a.PageSize()
	for i, c := range a.Mem()[page*ps : (page+1)*ps] {
		if c != 0 {
			t.Fatalf("page size %d: released page %d byte %d = %d, want 0", ps, page, i, c)
		}
	}
}

func TestWritesToEveryPageSurvive(t *testing.T) {
	for _, ps := range pageSizes {
		a, err := New(9*ps, ps)
		if err != nil {
			t.Fatal(err)
		}
		for p := range a.Pages() {
			fill(a, p)
		}
		for p := range a.Pages() {
			checkFilled(t, a, p)
		}
		a.Close()
	}
}

func TestReleaseZeroesOnlyThatPage(t *testing.T) {
	for _, ps := range pageSizes {
		a, err := New(9*ps, ps)
		if err != nil {
			t.Fatal(err)
		}
		for p := range a.Pages() {
			fill(a, p)
		}
		released := []int{0, 3, 4, 8}
		for _, p := range released {
			a.Release(p)
		}
		for p := range a.Pages() {
			if slices.Contains(released, p) {
				checkZero(t, a, p)
			} else {
				checkFilled(t, a, p)
			}
		}
		// A released page is usable again, and releasing an empty
		// (never written) page is harmless.
		fill(a, 3)
		checkFilled(t, a, 3)
		a.Release(0)
		checkZero(t, a, 0)
		a.Close()
	}
}

func TestPageOutOfRangePanics(t *testing.T) {
	a, err := New(4*4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, p := range []int{-1, 4} {
		for name, f := range map[string]func(){
			"Release": func() { a.Release(p) },
			"Node":    func() { a.Node(p) },
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s(%d) on 4 pages did not panic", name, p)
					}
				}()
				f()
			}()
		}
	}
}

func TestNodeIsAnOnlineNode(t *testing.T) {
	nodes, err := NodesFrom("/sys")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(64*4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for p := range a.Pages() {
		n := a.Node(p)
		if len(nodes) == 1 && n != 0 {
			t.Fatalf("one node: Node(%d) = %d, want 0", p, n)
		}
		if n != 0 && !slices.Contains(nodes, n) {
			t.Fatalf("Node(%d) = %d, not among %v", p, n, nodes)
		}
	}
}

func TestCacheLineSize(t *testing.T) {
	n := CacheLineSize()
	if n < 32 || n&(n-1) != 0 {
		t.Fatalf("CacheLineSize() = %d, want a power of two >= 32", n)
	}
	t.Logf("cache line: %d bytes", n)
	for in, want := range map[int]int{0: 64, -1: 64, 16: 64, 48: 64, 32: 32, 64: 64, 128: 128, 256: 256, 1 << 20: 64} {
		if got := validCacheLine(in); got != want {
			t.Errorf("validCacheLine(%d) = %d, want %d", in, got, want)
		}
	}
}

// TestConcurrentPages has one goroutine per page writing and releasing its
// own page while the others do the same: pages share OS pages at their
// edges, and -race runs check that no access strays into a neighbour.
func TestConcurrentPages(t *testing.T) {
	ps := 3*4096 + 100
	a, err := New(8*ps, ps)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var wg sync.WaitGroup
	for p := range a.Pages() {
		wg.Go(func() {
			for range 20 {
				fill(a, p)
				a.Release(p)
				_ = a.Node(p)
			}
			fill(a, p)
		})
	}
	wg.Wait()
	for p := range a.Pages() {
		checkFilled(t, a, p)
	}
}
