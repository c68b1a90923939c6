package slab

// Index is the allocator's view of the structure that finds items (the
// engine's hash chains). Its methods are called with the caller's lock held.
type Index interface {
	// Evicted is told about an item the allocator is about to reclaim to
	// make room: it must remove h from the index and account for it. The
	// allocator then takes h off its LRU list and frees the chunk itself.
	Evicted(h Handle)
	// Moved is told that the item at from now lives at to (a byte-for-byte
	// copy, made when a page changes class): the index must refer to to.
	Moved(from, to Handle)
}

// Allocator carves pages from a Pool into chunks of its size classes, keeps
// one LRU list per class, and evicts to make room when the pool is empty.
//
// An Allocator is not safe for concurrent use: the engine gives each of its
// lock stripes its own Allocator and calls it with the stripe lock held.
type Allocator struct {
	Items    Items
	classes  *Classes
	pool     PageSource
	pageSize int
	cls      []classState
	index    Index
}

type classState struct {
	pages      []int32
	free       Handle // free list, linked through the hnext field
	nfree      int
	head, tail Handle // LRU list: head is the most recently used
	nitems     int    // linked items
	stats      ClassStats
}

// ClassStats counts one class's events; see memcached's "stats items".
type ClassStats struct {
	Evicted         uint64 // items evicted to make room
	EvictedNonzero  uint64 // of those, items that had an expiry time set
	EvictedUnfetch  uint64 // of those, items never read
	OutOfMemory     uint64 // allocations that found nothing to evict
	PagesMoved      uint64 // pages taken from another class
	Rescued         uint64 // items copied out of a moving page instead of evicted
	ExpiredUnfetch  uint64 // expired items the crawler freed that were never read
	CrawlerReclaims uint64 // expired and flushed items freed by the crawler

	// Command outcomes by the class of the item they found (for SetCmds,
	// of the item the data asked for), memcached's per-class slab_stats
	// of "stats slabs". The engine counts them under the stripe lock, so
	// their sums over the classes are its cache-wide counts.
	SetCmds, GetHits, TouchHits, DeleteHits uint64
	CasHits, CasBadval, IncrHits, DecrHits  uint64
}

// ClassUsage is a snapshot of one class for "stats slabs" and "stats items".
type ClassUsage struct {
	ChunkSize     int
	ChunksPerPage int
	Pages         int
	UsedChunks    int
	FreeChunks    int
	Items         int
	TailAtime     uint32 // last access of the LRU tail (0 when empty)
	ClassStats
}

// NewAllocator makes an allocator drawing pages of pageSize bytes from
// pool, whose pages are laid out in items' memory; index is told when items
// go or move.
func NewAllocator(items Items, classes *Classes, pageSize int, pool PageSource, index Index) *Allocator {
	return &Allocator{
		Items:    items,
		classes:  classes,
		pool:     pool,
		pageSize: pageSize,
		cls:      make([]classState, len(classes.Sizes)),
		index:    index,
	}
}

// Classes is the size-class table this allocator uses.
func (a *Allocator) Classes() *Classes { return a.classes }

// ChunkSize is the size of the chunk h occupies: the memory its item
// holds, header, key, value and the rounding up to its class together.
func (a *Allocator) ChunkSize(h Handle) int { return a.classes.Sizes[a.Items.Class(h)] }

// Alloc returns a chunk that holds size bytes, or 0 when size is larger
// than a page or nothing can be evicted.
// The chunk's class is set; the rest of its header is the caller's to
// write (Items.Init) before Link.
func (a *Allocator) Alloc(size int) Handle {
	cl := a.classes.ClassFor(size)
	if cl < 0 {
		return 0
	}
	c := &a.cls[cl]
	if c.free == 0 {
		if page, ok := a.pool.Get(); ok {
			a.addPage(cl, page)
		} else if !a.makeRoom(cl) {
			c.stats.OutOfMemory++
			return 0
		}
	}
	h := c.free
	c.free = a.Items.HNext(h)
	c.nfree--
	*a.Items.u8(h, offClass) = uint8(cl)
	*a.Items.u8(h, offIFlags) = 0
	return h
}

// makeRoom frees at least one chunk of class cl by evicting its LRU tail or
// by moving a page from another class whose tail is older.
func (a *Allocator) makeRoom(cl int) bool {
	c := &a.cls[cl]
	victim := a.victimClass(cl)
	if c.tail != 0 && (victim < 0 || !a.olderTail(victim, cl)) {
		a.evictItem(c.tail)
		return true
	}
	if victim < 0 {
		return false
	}
	a.movePage(victim, cl)
	return c.free != 0
}

// victimClass picks the class, other than cl, that should give up a page:
// one holding no items at all if any; else, among classes with more than
// one page, the one whose LRU tail is oldest (ties: the one with most
// pages); a class's last page is taken only when no class has two.
func (a *Allocator) victimClass(cl int) int {
	best := -1
	better := func(i, j int) bool { // is class i a better victim than j?
		vi, vj := &a.cls[i], &a.cls[j]
		if (len(vi.pages) > 1) != (len(vj.pages) > 1) {
			return len(vi.pages) > 1
		}
		ti, tj := a.Items.Atime(vi.tail), a.Items.Atime(vj.tail)
		if ti != tj {
			return ti < tj
		}
		return len(vi.pages) > len(vj.pages)
	}
	for i := range a.cls {
		v := &a.cls[i]
		if i == cl || len(v.pages) == 0 {
			continue
		}
		if v.nitems == 0 {
			return i
		}
		if best < 0 || better(i, best) {
			best = i
		}
	}
	return best
}

// olderTail reports whether class v's LRU tail was used clearly longer ago
// than class cl's, so that taking a page from v evicts colder data.
func (a *Allocator) olderTail(v, cl int) bool {
	if a.cls[v].nitems == 0 {
		return true
	}
	return a.Items.Atime(a.cls[v].tail)+1 < a.Items.Atime(a.cls[cl].tail)
}

func (a *Allocator) evictItem(h Handle) {
	c := &a.cls[a.Items.Class(h)]
	c.stats.Evicted++
	if a.Items.Exptime(h) != 0 {
		c.stats.EvictedNonzero++
	}
	if a.Items.IFlags(h)&ItemFetched == 0 {
		c.stats.EvictedUnfetch++
	}
	a.index.Evicted(h)
	a.Unlink(h)
	a.Free(h)
}

// movePage takes one page from class from and gives it to class to.
func (a *Allocator) movePage(from, to int) {
	a.addPage(to, a.takePage(from))
}

// ReleasePage gives one page back to the page source, taken from the class
// that can best spare it (as when a class needs a page), evicting that
// class's least recently used items as needed. It is how a cache shrinks
// to a lower limit; false when the allocator holds no page.
func (a *Allocator) ReleasePage() bool {
	victim := a.victimClass(-1)
	if victim < 0 {
		return false
	}
	a.pool.Put(a.takePage(victim))
	return true
}

// ReleaseAll gives every page back to the page source, dropping every
// item without telling the index: for a cache that is going away, whose
// index is dropped with it.
func (a *Allocator) ReleaseAll() {
	for i := range a.cls {
		for _, page := range a.cls[i].pages {
			a.pool.Put(int(page))
		}
		a.cls[i] = classState{stats: a.cls[i].stats}
	}
}

// takePage removes one page from class from (the one holding its LRU
// tail, or any page when it has no items) and returns it. The class loses
// a page's worth of its least recently used items: live items in the
// moving page are copied into chunks freed elsewhere in the class (by
// evicting from its tail) rather than evicted themselves.
func (a *Allocator) takePage(from int) int {
	src := &a.cls[from]
	idx := 0
	if src.tail != 0 {
		idx = a.pageIndex(from, src.tail)
	}
	page := int(src.pages[idx])
	src.pages[idx] = src.pages[len(src.pages)-1]
	src.pages = src.pages[:len(src.pages)-1]
	start, end := page*a.pageSize, (page+1)*a.pageSize
	inPage := func(h Handle) bool { off := Offset(h); return off >= start && off < end }

	// Drop the page's free chunks from the class's free list.
	var head, last Handle
	n := 0
	for h := src.free; h != 0; {
		next := a.Items.HNext(h)
		if !inPage(h) {
			if last == 0 {
				head = h
			} else {
				a.Items.SetHNext(last, h)
			}
			last = h
			n++
		}
		h = next
	}
	if last != 0 {
		a.Items.SetHNext(last, 0)
	}
	src.free, src.nfree = head, n

	// Evict from the LRU tail until the live items of the page fit in the
	// chunks free elsewhere, so the class loses its oldest items wherever
	// they sit; then copy the page's survivors out.
	size := a.classes.Sizes[from]
	need := 0
	for off := start; off+size <= end; off += size {
		if a.Items.IFlags(HandleAt(off))&ItemLinked != 0 {
			need++
		}
	}
	for src.nfree < need {
		v := src.tail
		wasInPage := inPage(v)
		a.evictItem(v)
		if wasInPage {
			// Its chunk goes with the page: take it back off the free list.
			src.free = a.Items.HNext(v)
			src.nfree--
			need--
		}
	}
	for off := start; off+size <= end; off += size {
		h := HandleAt(off)
		if a.Items.IFlags(h)&ItemLinked == 0 {
			continue
		}
		dst := src.free
		src.free = a.Items.HNext(dst)
		src.nfree--
		a.relocate(h, dst)
		src.stats.Rescued++
	}
	src.stats.PagesMoved++
	return page
}

// relocate copies the linked item at from into the free chunk to, moves
// its LRU position and tells the index.
func (a *Allocator) relocate(from, to Handle) {
	c := &a.cls[a.Items.Class(from)]
	n := ItemSize(len(a.Items.Key(from)), len(a.Items.Value(from)))
	copy(a.Items.mem[Offset(to):Offset(to)+n], a.Items.mem[Offset(from):Offset(from)+n])
	prev := Handle(*a.Items.u32(to, offPrev))
	next := Handle(*a.Items.u32(to, offNext))
	if prev != 0 {
		*a.Items.u32(prev, offNext) = uint32(to)
	} else {
		c.head = to
	}
	if next != 0 {
		*a.Items.u32(next, offPrev) = uint32(to)
	} else {
		c.tail = to
	}
	a.index.Moved(from, to)
	*a.Items.u8(from, offIFlags) = 0
}

func (a *Allocator) pageIndex(cl int, h Handle) int {
	off := Offset(h)
	for i, p := range a.cls[cl].pages {
		if off >= int(p)*a.pageSize && off < int(p+1)*a.pageSize {
			return i
		}
	}
	return 0
}

// addPage carves page into chunks of class cl and puts them on its free
// list, lowest address first.
func (a *Allocator) addPage(cl, page int) {
	c := &a.cls[cl]
	c.pages = append(c.pages, int32(page))
	size := a.classes.Sizes[cl]
	start := page * a.pageSize
	n := a.pageSize / size
	for i := n - 1; i >= 0; i-- {
		h := HandleAt(start + i*size)
		*a.Items.u8(h, offClass) = uint8(cl)
		*a.Items.u8(h, offIFlags) = 0
		a.Items.SetHNext(h, c.free)
		c.free = h
	}
	c.nfree += n
}

// Free returns an unlinked chunk to its class's free list.
func (a *Allocator) Free(h Handle) {
	c := &a.cls[a.Items.Class(h)]
	*a.Items.u8(h, offIFlags) = 0
	a.Items.SetHNext(h, c.free)
	c.free = h
	c.nfree++
}

// Link puts h at the head of its class's LRU list and marks it linked.
func (a *Allocator) Link(h Handle) {
	c := &a.cls[a.Items.Class(h)]
	*a.Items.u8(h, offIFlags) |= ItemLinked
	*a.Items.u32(h, offPrev) = 0
	*a.Items.u32(h, offNext) = uint32(c.head)
	if c.head != 0 {
		*a.Items.u32(c.head, offPrev) = uint32(h)
	}
	c.head = h
	if c.tail == 0 {
		c.tail = h
	}
	c.nitems++
}

// Unlink takes h off its LRU list and clears its linked bit.
func (a *Allocator) Unlink(h Handle) {
	c := &a.cls[a.Items.Class(h)]
	prev := Handle(*a.Items.u32(h, offPrev))
	next := Handle(*a.Items.u32(h, offNext))
	if prev != 0 {
		*a.Items.u32(prev, offNext) = uint32(next)
	} else {
		c.head = next
	}
	if next != 0 {
		*a.Items.u32(next, offPrev) = uint32(prev)
	} else {
		c.tail = prev
	}
	*a.Items.u8(h, offIFlags) &^= ItemLinked
	c.nitems--
}

// Bump moves a linked item to the head of its LRU list.
func (a *Allocator) Bump(h Handle) {
	c := &a.cls[a.Items.Class(h)]
	if c.head == h {
		return
	}
	a.Unlink(h)
	a.Link(h)
}

// CountCrawled records that the crawler freed h, expired or (flushed)
// flushed. As memcached's crawler, it counts an expired item never read
// as expired_unfetched, a flushed one not.
func (a *Allocator) CountCrawled(h Handle, flushed bool) {
	c := &a.cls[a.Items.Class(h)]
	c.stats.CrawlerReclaims++
	if !flushed && a.Items.IFlags(h)&ItemFetched == 0 {
		c.stats.ExpiredUnfetch++
	}
}

// ClassStats is the event counters of h's class, for the engine to count
// a command's outcome in (see ClassStats.GetHits). Valid until the next
// call on a.
func (a *Allocator) ClassStats(h Handle) *ClassStats { return &a.cls[a.Items.Class(h)].stats }

// SizeStats is the event counters of the class an item of size bytes
// would take (see ClassStats), or nil when no class holds it.
func (a *Allocator) SizeStats(size int) *ClassStats {
	cl := a.classes.ClassFor(size)
	if cl < 0 {
		return nil
	}
	return &a.cls[cl].stats
}

// Usage appends a snapshot of every class to dst.
func (a *Allocator) Usage(dst []ClassUsage) []ClassUsage {
	for i := range a.cls {
		c := &a.cls[i]
		u := ClassUsage{
			ChunkSize:     a.classes.Sizes[i],
			ChunksPerPage: a.classes.PerPage[i],
			Pages:         len(c.pages),
			FreeChunks:    c.nfree,
			Items:         c.nitems,
			ClassStats:    c.stats,
		}
		u.UsedChunks = len(c.pages)*a.classes.PerPage[i] - c.nfree
		if c.tail != 0 {
			u.TailAtime = a.Items.Atime(c.tail)
		}
		dst = append(dst, u)
	}
	return dst
}

// Pages is the number of pages this allocator holds.
func (a *Allocator) Pages() int {
	n := 0
	for i := range a.cls {
		n += len(a.cls[i].pages)
	}
	return n
}

// ResetStats zeroes every class's event counters.
func (a *Allocator) ResetStats() {
	for i := range a.cls {
		a.cls[i].stats = ClassStats{}
	}
}
