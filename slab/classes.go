package slab

import "fmt"

// MaxClasses bounds the number of size classes (the class id is one byte in
// the item header; memcached's default factor makes about 40).
const MaxClasses = 63

// Classes is a table of chunk sizes, smallest first. Class ids index it.
type Classes struct {
	Sizes   []int // chunk size of each class, multiples of the alignment
	PerPage []int // chunks of each class that fit in one page
}

// NewClasses builds size classes for pages of pageSize bytes: chunk sizes
// start at the smallest item rounded up to align, grow by factor
// (memcached's -f) and are rounded up to multiples of align; the last class
// is the whole page, so that the largest item fits.
//
// The engine passes ChunkAlign, not the cache line: rounding to 64 bytes
// put a 159-byte item (15-byte key, 100-byte value) in a 192-byte chunk,
// rounding to 32 puts it in 160, and an item spans about as many lines
// either way (BENCHMARKS.md, T4).
func NewClasses(pageSize, align int, factor float64) (Classes, error) {
	if align < ChunkAlign || align%ChunkAlign != 0 {
		return Classes{}, fmt.Errorf("slab: alignment %d is not a multiple of %d", align, ChunkAlign)
	}
	if pageSize%align != 0 {
		return Classes{}, fmt.Errorf("slab: page size %d is not a multiple of the alignment %d", pageSize, align)
	}
	if factor <= 1 {
		return Classes{}, fmt.Errorf("slab: growth factor %.2f must be greater than 1", factor)
	}
	var c Classes
	size := roundUp(HeaderSize+8, align)
	for size <= pageSize/2 && len(c.Sizes) < MaxClasses-1 {
		c.Sizes = append(c.Sizes, size)
		next := roundUp(int(float64(size)*factor), align)
		if next <= size {
			next = size + align
		}
		size = next
	}
	c.Sizes = append(c.Sizes, pageSize)
	for _, s := range c.Sizes {
		c.PerPage = append(c.PerPage, pageSize/s)
	}
	return c, nil
}

// ClassFor returns the smallest class whose chunks hold n bytes, or -1
// when n is larger than a page.
func (c *Classes) ClassFor(n int) int {
	// Binary search: the table is short, but this runs on every store.
	lo, hi := 0, len(c.Sizes)
	for lo < hi {
		mid := (lo + hi) / 2
		if c.Sizes[mid] < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(c.Sizes) {
		return -1
	}
	return lo
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }
