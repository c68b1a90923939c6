//go:build !race

package arena

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeSize is the size of a transparent huge page (a PMD mapping with
// 4 KiB base pages, on x86-64 and arm64 alike).
const hugeSize = 2 << 20

// collapseAt is how many quarters of a span must be resident (written)
// for CollapseWritten to collapse it.
const collapseAt = 3

// hugeChunk is how many spans CollapseWritten asks mincore about at once.
const hugeChunk = 64

// huge tracks the arena's huge-page spans: the 2 MiB-aligned addresses
// wholly inside Mem, span i starting at offset hugeOff + i*hugeSize.
type huge struct {
	off      int
	n        int
	done     []atomic.Uint64 // bit i: span i was collapsed and not released since
	disabled atomic.Bool     // THP is off or the kernel refused MADV_COLLAPSE: stop asking
	vec      []byte          // mincore's answer; only CollapseWritten's goroutine uses it
}

// initHuge lays out the spans of a freshly mapped arena. Collapsing is off
// when the administrator turned transparent huge pages off (MADV_COLLAPSE
// would not ask).
func (a *Arena) initHuge() {
	start := int(uintptr(unsafe.Pointer(unsafe.SliceData(a.mem))))
	a.huge.off = roundUp(start, hugeSize) - start
	if a.huge.off < len(a.mem) {
		a.huge.n = (len(a.mem) - a.huge.off) / hugeSize
	}
	a.huge.done = make([]atomic.Uint64, (a.huge.n+63)/64)
	if thpNever("/sys/kernel/mm/transparent_hugepage/enabled") {
		a.huge.disabled.Store(true)
	}
}

// thpNever reports whether the THP setting at path is "never".
func thpNever(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), "[never]")
}

// CollapseWritten gives transparent huge pages (madvise MADV_COLLAPSE) to
// each 2 MiB-aligned span of the arena that is at least three quarters in
// memory, so that random reads of a cache miss the TLB less, and reports
// how many spans it collapsed and whether calling it again can do anything
// (false when the kernel has no MADV_COLLAPSE, before Linux 6.1, THP is
// off, or the arena is a file's, which NewFile leaves to its file system).
//
// Resident means written, in the arena. Mapping the whole arena
// MADV_HUGEPAGE instead faulted in 2 MiB at the first byte written, so the
// partly written open segment of every stripe cost up to 2 MiB more RSS
// (12 B/item at T4's million items). Waiting for a span to be wholly
// written kept that RSS but left the newest items, which a cache reads
// most, on 4 KiB pages as long as their segments were open (with 100,000
// items, nearly every one of them). At three quarters a collapse adds
// at most half a MiB of RSS, only to a span still being written, and the
// stripes' open segments soon write it anyway: a span is collapsed only
// when every arena page it touches has begun to be written (pagesBegun),
// so never over a released or unused page. Release splits a span's huge
// page again and unmarks it.
//
// A pass over an arena with nothing to collapse takes 0.13-0.33 ms per
// GiB (BenchmarkCollapseWrittenIdle). A collapse copies the span's 2 MiB
// into a fresh huge page, about 0.7 ms (BenchmarkCollapseWrittenFresh),
// stalling a write to the span meanwhile: at T2's 9 MB/s of new items,
// 2.5% of the server's CPU (BENCHMARKS.md). Call it from one goroutine at
// a time, periodically; it may run concurrently with Release and with reads and
// writes of any page. A Release that lands between the residency check
// and the collapse gets its OS pages back in the huge page, zeroed:
// correct, and costing that RSS until the page is released again.
func (a *Arena) CollapseWritten() (collapsed int, again bool) {
	h := &a.huge
	if a.mapped == nil || h.n == 0 || h.disabled.Load() {
		return 0, false
	}
	pagesPerSpan := hugeSize / a.osPage
	if h.vec == nil {
		h.vec = make([]byte, hugeChunk*pagesPerSpan)
	}
	for first := 0; first < h.n; first += hugeChunk {
		last := min(first+hugeChunk, h.n)
		todo := false
		for i := first; i < last && !todo; i++ {
			todo = !h.marked(i)
		}
		if !todo {
			continue
		}
		lo, hi := h.off+first*hugeSize, h.off+last*hugeSize
		vec := h.vec[:(hi-lo)/a.osPage]
		if mincore(a.mem[lo:hi], vec) != nil {
			return collapsed, true
		}
		for i := first; i < last; i++ {
			if h.marked(i) || countResident(vec[(i-first)*pagesPerSpan:][:pagesPerSpan]) < pagesPerSpan*collapseAt/4 {
				continue
			}
			spanLo := h.off + i*hugeSize
			if !a.pagesBegun(spanLo, spanLo+hugeSize) {
				continue
			}
			span := a.mem[spanLo:][:hugeSize]
			switch err := unix.Madvise(span, unix.MADV_COLLAPSE); {
			case err == nil:
				h.done[i/64].Or(1 << (i % 64))
				collapsed++
			case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
				h.disabled.Store(true)
				return collapsed, false
			}
			// EAGAIN, ENOMEM: no huge page to be had now; try later.
		}
	}
	return collapsed, true
}

// pagesBegun reports whether every arena page overlapping [lo, hi) has its
// first OS page lying wholly inside it resident: written since the arena
// was made or the page last released. An open segment writes its page from
// the start, so its page has begun once it holds an OS page of items; a
// released page, or one never used,
// has not, and a span reaching into one is not collapsed however much of
// it its neighbours have written, for that would fault the empty page's
// share of the span back in.
func (a *Arena) pagesBegun(lo, hi int) bool {
	var vec [1]byte
	for p := lo / a.pageSize; p <= (hi-1)/a.pageSize && p < a.pages; p++ {
		pLo, pHi := a.pageRange(p)
		inLo := roundUp(pLo, a.osPage)
		if inLo+a.osPage > pHi {
			continue // no OS page of its own: Release never drops it
		}
		if mincore(a.mem[inLo:inLo+a.osPage], vec[:]) != nil || vec[0]&1 == 0 {
			return false
		}
	}
	return true
}

func (h *huge) marked(i int) bool { return h.done[i/64].Load()&(1<<(i%64)) != 0 }

// unmarkHuge forgets the collapse of every span overlapping [lo, hi).
func (a *Arena) unmarkHuge(lo, hi int) {
	h := &a.huge
	if h.n == 0 {
		return
	}
	first := max(0, (lo-h.off)/hugeSize)
	last := min(h.n, (hi-h.off+hugeSize-1)/hugeSize)
	for i := first; i < last; i++ {
		if h.marked(i) {
			h.done[i/64].And(^uint64(1 << (i % 64)))
		}
	}
}

// countResident counts the resident pages in mincore's answer vec.
func countResident(vec []byte) int {
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// mincore fills vec with the residency of b's OS pages, one byte each (bit
// 0 set: resident); golang.org/x/sys has no wrapper for Linux.
func mincore(b, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))),
		uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		return errno
	}
	return nil
}
