//go:build !race

package arena

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// New maps size bytes, rounded down to whole pages of pageSize, as one
// anonymous private region with MAP_NORESERVE, so memory costs RSS only once
// written and no swap is reserved for it. pageSize need not be a multiple of
// the OS page size: pages are just offsets i*pageSize.
//
// Where /sys shows more than one NUMA node, pages are spread over the nodes
// round-robin with mbind(2) in OS-page-aligned spans (see Node). The policy
// is MPOL_PREFERRED rather than MPOL_BIND: a full node then spills to another
// one instead of getting the process OOM-killed while memory is free
// elsewhere. Binding is an optimisation, so if the kernel refuses it New
// undoes it and returns an unbound arena rather than an error.
func New(size, pageSize int) (*Arena, error) {
	nodes, err := NodesFrom("/sys")
	if err != nil {
		nodes = nil // an unreadable tree means we cannot place pages; don't try
	}
	return newArena(size, pageSize, nodes)
}

// newArena is New with the node list given, so tests can ask for binding
// that this machine's sysfs would not.
func newArena(size, pageSize int, nodes []int) (*Arena, error) {
	pages, err := pageCount(size, pageSize)
	if err != nil {
		return nil, err
	}
	n := pages * pageSize
	mapped, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("arena: mmap %d bytes: %w", n, err)
	}
	a := &Arena{
		mem:      mapped[:n:n],
		pageSize: pageSize,
		pages:    pages,
		mapped:   mapped,
		osPage:   os.Getpagesize(),
	}
	a.group = groupPages(pageSize, a.osPage)
	// No MADV_HUGEPAGE: it would fault each written prefix in as whole
	// 2 MiB pages (see CollapseWritten, which gives huge pages to what is
	// written instead).
	a.initHuge()
	if spans := planBinding(pages, pageSize, a.osPage, nodes); spans != nil {
		if bindSpans(mapped, spans) == nil {
			a.nodes = nodes
		} else {
			_ = unbind(mapped)
		}
	}
	return a, nil
}

// Release empties page: its contents read as zero afterwards and the OS
// pages lying wholly inside it go back to the kernel (madvise MADV_DONTNEED),
// so RSS drops. slab calls it when a page holds no item any more. The few
// bytes at either end that share an OS page with a neighbour are zeroed in
// place instead, and only if not zero already, so releasing a page that was
// never written does not fault memory in. page must be in [0, Pages()).
func (a *Arena) Release(page int) {
	lo, hi := a.pageRange(page)
	inLo, inHi := roundUp(lo, a.osPage), hi/a.osPage*a.osPage
	if inLo >= inHi {
		clearDirty(a.mem[lo:hi], a.osPage)
		return
	}
	clearDirty(a.mem[lo:inLo], a.osPage)
	if a.file != nil {
		// A shared mapping's pages belong to the file: MADV_DONTNEED
		// would only unmap them, keeping their bytes.
		if !a.punch(inLo, inHi) {
			clear(a.mem[inLo:inHi])
		}
	} else if err := unix.Madvise(a.mem[inLo:inHi], unix.MADV_DONTNEED); err != nil {
		// Cannot happen on a live aligned anonymous mapping; keep the
		// contract (zeroed contents) even if RSS stays.
		clear(a.mem[inLo:inHi])
	}
	clearDirty(a.mem[inHi:hi], a.osPage)
	// MADV_DONTNEED split any huge page under the page: its spans may
	// be collapsed again once written again.
	a.unmarkHuge(lo, hi)
}

// clearDirty zeroes b in chunks of at most chunk bytes, skipping chunks that
// are already zero so that untouched memory stays unfaulted.
func clearDirty(b []byte, chunk int) {
	for len(b) > 0 {
		c := b[:min(chunk, len(b))]
		if !bytes.Equal(c, zeros[:len(c)]) {
			clear(c)
		}
		b = b[len(c):]
	}
}

// zeros is compared against, never written; one OS page long.
var zeros = make([]byte, os.Getpagesize())

// Close unmaps the region. Every slice of Mem becomes invalid: touching one
// afterwards faults. Calling Close again does nothing.
func (a *Arena) Close() error {
	if a.mapped == nil {
		return nil
	}
	err := unix.Munmap(a.mapped)
	a.mapped, a.mem, a.nodes = nil, nil, nil
	if err != nil {
		err = fmt.Errorf("arena: munmap: %w", err)
	}
	if a.file != nil {
		err = errors.Join(err, a.file.Close())
		a.file = nil
	}
	return err
}
