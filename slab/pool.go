package slab

import "sync"

// PageSource is where an Allocator takes whole pages and gives them back:
// the Pool itself, or a per-cache quota in front of it.
type PageSource interface {
	// Get takes a free page; false when none may be taken.
	Get() (int, bool)
	// Put gives back a page the allocator no longer uses.
	Put(page int)
}

// Pool hands out whole arena pages to allocators. An allocator keeps the
// pages it took (moving them between its own size classes) until its cache
// shrinks or goes away and Put returns them. Safe for concurrent use.
type Pool struct {
	mu       sync.Mutex // guards free
	free     []int32
	pageSize int
	total    int
}

// NewPool makes a pool of pages numbered 0..pages-1, each pageSize bytes.
func NewPool(pages, pageSize int) *Pool {
	p := &Pool{free: make([]int32, pages), pageSize: pageSize, total: pages}
	// Hand pages out from the start of the arena so that RSS grows from one end.
	for i := range p.free {
		p.free[i] = int32(pages - 1 - i)
	}
	return p
}

// Get takes a free page; false when none is left.
func (p *Pool) Get() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.free)
	if n == 0 {
		return 0, false
	}
	page := p.free[n-1]
	p.free = p.free[:n-1]
	return int(page), true
}

// Put returns a page taken with Get.
func (p *Pool) Put(page int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, int32(page))
}

// Free is the number of pages not yet taken.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Total is the number of pages the pool started with.
func (p *Pool) Total() int { return p.total }

// PageSize is the size of each page in bytes.
func (p *Pool) PageSize() int { return p.pageSize }

// Remove takes out of the free list every page marked in used: pages a
// restored allocator holds already (SegAllocator.Restore).
func (p *Pool) Remove(used []bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	free := p.free[:0]
	for _, page := range p.free {
		if int(page) >= len(used) || !used[page] {
			free = append(free, page)
		}
	}
	p.free = free
}
