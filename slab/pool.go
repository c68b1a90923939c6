package slab

import "sync"

// Pool hands out whole arena pages to allocators. Pages are taken once and
// kept by the allocator that took them (which moves them between its own
// size classes); the pool only shrinks. Safe for concurrent use.
type Pool struct {
	mu       sync.Mutex
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
