package arena

import (
	"errors"
	"fmt"
	"os"
)

// ErrSize is returned by New when the requested size holds no whole page or
// the page size is not positive.
var ErrSize = errors.New("arena: size holds no whole page")

// Arena is one region of item memory outside the Go heap (see the package
// doc), split in Pages() equal pages of PageSize() bytes; page i starts at
// offset i*PageSize() of Mem().
//
// Mem, PageSize, Pages and Node may be called from any goroutine. Release
// may run concurrently with itself and with reads and writes of other pages.
// Close must not run concurrently with anything, and no slice of Mem may be
// used after it.
type Arena struct {
	mem      []byte // Mem(): exactly pages*pageSize bytes
	pageSize int
	pages    int

	// mapped is the slice mmap returned, kept whole for munmap; nil in the
	// heap build.
	mapped []byte
	// osPage is the kernel's page size, the unit of madvise and mbind.
	osPage int
	// nodes lists the NUMA nodes pages are bound to, round-robin in groups
	// of group pages; nil when nothing is bound.
	nodes []int
	group int
	// file backs a NewFile arena; nil for an anonymous one.
	file *os.File

	huge huge // CollapseWritten's record of huge pages; empty in the heap build
}

// Mem is the whole region, Pages()*PageSize() bytes, zero where never
// written or since released. It stays valid until Close; afterwards it is nil.
func (a *Arena) Mem() []byte { return a.mem }

// PageSize is the size in bytes of every page.
func (a *Arena) PageSize() int { return a.pageSize }

// Pages is the number of pages in the arena.
func (a *Arena) Pages() int { return a.pages }

// Node is the NUMA node page is bound to: the node that holds the OS page
// under the middle of page. It is 0 when nothing was bound (one node, the
// race build, or a kernel that refused mbind).
func (a *Arena) Node(page int) int {
	if page < 0 || page >= a.pages {
		panic(fmt.Sprintf("arena: page %d out of range [0,%d)", page, a.pages))
	}
	if a.nodes == nil {
		return 0
	}
	return nodeOfPage(page, a.pageSize, a.osPage, a.group, a.nodes)
}

// pageRange is the byte range of page, with the bounds check every method
// taking a page number needs.
func (a *Arena) pageRange(page int) (lo, hi int) {
	if page < 0 || page >= a.pages {
		panic(fmt.Sprintf("arena: page %d out of range [0,%d)", page, a.pages))
	}
	return page * a.pageSize, (page + 1) * a.pageSize
}

// pageCount validates New's arguments: size is rounded down to whole pages.
func pageCount(size, pageSize int) (int, error) {
	if pageSize <= 0 || size < pageSize {
		return 0, fmt.Errorf("%w: size %d, page size %d", ErrSize, size, pageSize)
	}
	return size / pageSize, nil
}
