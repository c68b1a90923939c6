package slab

import (
	"encoding/binary"
	"math/bits"
)

// SegIndex is a SegAllocator's view of the structure that finds items
// (the engine's hash chains). Its methods are called with the caller's
// lock held.
type SegIndex interface {
	// Evicted is told about a linked item the allocator drops to make
	// room: it must remove h from the index and count the eviction.
	Evicted(h Handle)
	// Moved is told that the item at from now lives at to (a
	// byte-for-byte copy): the index must refer to to.
	Moved(from, to Handle)
	// Reclaim reports whether the linked item h has expired, or been
	// flushed, by now; if so it has removed h from the index and counted
	// it as reclaimed, and the allocator drops it.
	Reclaim(h Handle, now uint32) bool
}

// segNever is a segment's expiry when one of its items never expires.
const segNever = ^uint32(0)

// numTTL is the number of expiry classes: items that never expire, and
// twelve ranges of remaining lifetime growing by four (under 4 s, under
// 16 s, ..., 4^12 s and more). Each class appends to its own segment, so
// that a segment's items expire at about the same time and the segment
// can go whole once its latest expiry has passed.
const numTTL = 13

// mergeSegments is how many of the oldest segments one eviction merges:
// the items worth most (merge), at most a segment's worth, are copied
// into the first, and the other pages are freed. Measured on H1 (see
// BENCHMARKS.md), merging 3, 4 or 8 kept no more hits than 2.
const mergeSegments = 2

// probationPercent is the share of an allocator's segments that new
// items may take (probation segments) before merges turn to them; the
// rest hold items a merge kept (main segments). A new item is weighed
// once, when its probation segment is merged; an item that was kept
// lives a whole turn of the main segments until it is weighed again.
// Measured on H1: 5 to 20 did as well as each other and better than no
// split (see BENCHMARKS.md).
const probationPercent = 10

// The read counter (SegItems.freq): a new item starts at newItemFreq, as
// the miss that stored it was a read and an item never read since must
// still compete with one read once; every read adds one, up to
// segFreqMax; every merge that keeps an item takes one away, so that
// what an item was worth fades unless it is read again.
const newItemFreq = 2

// segment is one page's bookkeeping. A page starts with segHeaderSize
// bytes holding the segment's number in its allocator's segs (so that an
// item's segment is found from its handle), then items back to back.
type segment struct {
	page    int32
	used    int32  // bytes written, from the page's start
	live    int32  // bytes of linked items (unaligned sizes)
	items   int32  // linked items
	maxExp  uint32 // latest expiry of the items written; segNever if one never expires
	created uint32 // when it was opened, or last merged into (seconds, for stats)
	// seq orders segments by age: the allocator's count of segments
	// opened and merged into when it was. Seconds would not do: a busy
	// cache opens many segments a second, and a merge must never take a
	// newer one for the oldest.
	seq  uint64
	ttl  int8 // the expiry class it was opened for
	main bool // a merge wrote it: its items were kept (probationPercent)
}

// SegAllocator is the segment store's allocator for one lock stripe:
// items are appended to the open segment of their expiry
// class, a delete or overwrite only marks an item unlinked (its bytes
// become dead space), and room is made by whole segments: one whose
// items have all expired is freed, else the oldest segments are merged
// into one, keeping the items read most for their size (Bump, merge)
// and evicting the rest. Dead bytes are reclaimed by the same merges.
//
// It keeps per-size-class counts (memcached's "stats slabs" and "stats
// items" report by class), with the classes of Classes: an item's class
// follows from its size.
//
// Not safe for concurrent use: the caller's lock guards it, as for
// Allocator.
type SegAllocator struct {
	Items SegItems
	// ExpiredFirst has Alloc free a segment whose items have all expired
	// before it takes a page, as memcached's LRU maintainer reclaims
	// expired items in the background; without it (memcached with
	// no_lru_maintainer, memhive without its crawler) a page is taken
	// while the cache has one to take, and expired items stay to be
	// found, and counted, by the commands that look them up.
	ExpiredFirst bool

	classes  *Classes
	pool     PageSource
	pageSize int
	index    SegIndex
	segs     []segment
	open     [numTTL]int32 // each class's segment taking appends, or -1
	cls      []segClass
	seq      uint64 // the last segment.seq given
	// spare are pages a merge freed beyond the one it was asked for,
	// kept for the next segments: the cache holds its limit once it has
	// reached it, as memcached's total_malloced stays flat, rather than
	// dropping by a merge's pages at each eviction.
	spare []int32
	// Scratch of merge, kept so that making room allocates nothing.
	victims []int
	// mainSegs is how many of segs are main segments (segment.main).
	mainSegs int
}

// segClass is one size class's counts.
type segClass struct {
	items int
	bytes int64 // of its linked items, their size here
	stats ClassStats
}

// NewSegAllocator makes an allocator drawing pages of pageSize bytes from
// pool, laid out in items' memory; index is told when items go or move.
func NewSegAllocator(items SegItems, classes *Classes, pageSize int, pool PageSource, index SegIndex) *SegAllocator {
	a := &SegAllocator{
		Items:    items,
		classes:  classes,
		pool:     pool,
		pageSize: pageSize,
		index:    index,
		cls:      make([]segClass, len(classes.Sizes)),
	}
	for i := range a.open {
		a.open[i] = -1
	}
	return a
}

// ttlClass is the expiry class of an item expiring at exp (0: never),
// stored at now.
func ttlClass(exp, now uint32) int {
	if exp == 0 {
		return 0
	}
	left := uint32(1)
	if exp > now {
		left = exp - now
	}
	return 1 + min(bits.Len32(left)/2, numTTL-2)
}

// align rounds off up to the items' alignment.
func (a *SegAllocator) align(off int) int {
	m := a.Items.Align() - 1
	return (off + m) &^ m
}

// classOf is the size class an item of ItemSize size bytes is counted
// in; items larger than the largest class count in it.
func (a *SegAllocator) classOf(size int) int {
	if cl := a.classes.ClassFor(size); cl >= 0 {
		return cl
	}
	return len(a.classes.Sizes) - 1
}

// classOfItem is the size class h is counted in: the class the slab
// store would give it (by ItemSize, not by its size here), so that the
// counts by class of commands (SizeStats, by ItemSize) and of items
// agree, and "me" reports the same class whichever store holds it.
func (a *SegAllocator) classOfItem(h Handle) int {
	off := a.Items.Offset(h)
	_, n := a.Items.header(h)
	return a.classOf(ItemSize(int(a.Items.mem[off+segOffNKey]), n))
}

// Class is h's size class (see classOfItem).
func (a *SegAllocator) Class(h Handle) int { return a.classOfItem(h) }

// segOf is the number of the segment h lies in.
func (a *SegAllocator) segOf(h Handle) int {
	page := a.Items.Offset(h) / a.pageSize
	return int(binary.LittleEndian.Uint32(a.Items.mem[page*a.pageSize:]))
}

// setSegNumber writes segment i's number at the start of its page.
func (a *SegAllocator) setSegNumber(i int) {
	binary.LittleEndian.PutUint32(a.Items.mem[int(a.segs[i].page)*a.pageSize:], uint32(i))
}

// Alloc returns room for an item of size bytes (SegItemSize) expiring at
// exp, stored at now, or 0 when size is larger than a segment holds or
// nothing can be evicted. The caller writes it (Items.Init) before Link.
func (a *SegAllocator) Alloc(size int, exp, now uint32) Handle {
	if size > a.pageSize-segHeaderSize {
		return 0
	}
	cl := ttlClass(exp, now)
	// Each turn either places the item or frees room: a page taken or
	// freed, or a lone segment compacted; a bounded number of turns
	// covers a cache of one page whose every item was just read.
	for turn := 0; turn < 2*mergeSegments+2; turn++ {
		if h := a.appendTo(a.open[cl], size, exp); h != 0 {
			return h
		}
		// With ExpiredFirst, expired items' memory before more is
		// taken: a cache whose items expire holds the memory it needs,
		// not its limit.
		if a.ExpiredFirst {
			if page, ok := a.freeExpired(now); ok {
				a.openSegment(cl, page, now)
				continue
			}
		}
		if page, ok := a.takePage(); ok {
			a.openSegment(cl, page, now)
			continue
		}
		if page, ok := a.freeExpired(now); ok {
			a.openSegment(cl, page, now)
			continue
		}
		// Another class's open segment with room: a tiny cache cannot
		// keep a page per class.
		for _, i := range a.open {
			if h := a.appendTo(i, size, exp); h != 0 {
				return h
			}
		}
		if !a.merge(now) {
			break
		}
	}
	a.cls[a.classOf(size)].stats.OutOfMemory++
	return 0
}

// appendTo places an item of size bytes at the end of segment i (-1:
// none), or returns 0 when it does not fit.
func (a *SegAllocator) appendTo(i int32, size int, exp uint32) Handle {
	if i < 0 {
		return 0
	}
	s := &a.segs[i]
	off := a.align(int(s.used))
	if off+size > a.pageSize {
		return 0
	}
	s.used = int32(off + size)
	s.maxExp = laterExp(s.maxExp, exp)
	return a.Items.HandleAt(int(s.page)*a.pageSize + off)
}

// laterExp is the later of a segment's expiry and an item's (0: never).
func laterExp(seg, item uint32) uint32 {
	if item == 0 {
		return segNever
	}
	return max(seg, item)
}

// openSegment makes page the open segment of expiry class cl; the one it
// replaces is sealed (it takes no more appends).
func (a *SegAllocator) openSegment(cl, page int, now uint32) {
	a.seq++
	a.segs = append(a.segs, segment{page: int32(page), used: segHeaderSize, created: now, seq: a.seq, ttl: int8(cl)})
	i := len(a.segs) - 1
	a.setSegNumber(i)
	a.open[cl] = int32(i)
}

// removeSegment forgets segment i (its page is the caller's), moving the
// last segment into its place.
func (a *SegAllocator) removeSegment(i int) {
	if a.segs[i].main {
		a.mainSegs--
	}
	for cl := range a.open {
		if a.open[cl] == int32(i) {
			a.open[cl] = -1
		}
	}
	last := len(a.segs) - 1
	if i != last {
		a.segs[i] = a.segs[last]
		a.setSegNumber(i)
		for cl := range a.open {
			if a.open[cl] == int32(last) {
				a.open[cl] = int32(i)
			}
		}
	}
	a.segs = a.segs[:last]
}

// freeExpired frees a segment whose items have all expired by now,
// returning its page.
func (a *SegAllocator) freeExpired(now uint32) (int, bool) {
	for i := range a.segs {
		if s := &a.segs[i]; s.maxExp != 0 && s.maxExp != segNever && s.maxExp <= now {
			return a.dropSegment(i, now), true
		}
	}
	return 0, false
}

// dropSegment removes every item of segment i (an expired or flushed
// one as reclaimed, any other as evicted) and the segment, and returns
// its page.
func (a *SegAllocator) dropSegment(i int, now uint32) int {
	a.walk(i, func(h Handle, size int) {
		if a.Items.IFlags(h)&ItemLinked == 0 {
			return
		}
		if !a.index.Reclaim(h, now) {
			a.evicted(h)
			a.index.Evicted(h)
		}
		a.unlinked(h, size)
	})
	page := int(a.segs[i].page)
	a.removeSegment(i)
	return page
}

// walk calls fn for every item written in segment i, in order. fn may
// overwrite bytes before the item it is given, never after.
func (a *SegAllocator) walk(i int, fn func(h Handle, size int)) {
	base := int(a.segs[i].page) * a.pageSize
	for off := segHeaderSize; off < int(a.segs[i].used); {
		off = a.align(off)
		h := a.Items.HandleAt(base + off)
		size := a.Items.Size(h)
		fn(h, size)
		off += size
	}
}

// merge makes room by merging the oldest segments of one kind (up to
// mergeSegments; see mergeKind) into the oldest of them, which becomes
// a main segment. The linked items with the highest scores (score: reads
// per byte) are kept, at most a segment's worth (half of a lone
// segment), the lowest score kept only as far as room is left, in order;
// an item never read since its counter ran down to zero is never kept.
// Each kept item's counter drops by one. Everything else is evicted.
// The pages it frees become spares; the merged segment, if anything was
// kept, counts as the newest. It reports whether it made room.
func (a *SegAllocator) merge(now uint32) bool {
	if len(a.segs) == 0 {
		return false
	}
	victims := a.oldest(mergeSegments, a.mergeKind())
	dst := victims[0]
	base := int(a.segs[dst].page) * a.pageSize
	budget := a.pageSize - segHeaderSize
	if len(victims) == 1 {
		budget /= 2
	}
	// First the expired items go, and the others' bytes are counted by
	// score, so that the lowest score kept is the one where the budget
	// runs out.
	var hist [numScores]int
	for _, v := range victims {
		a.walk(v, func(h Handle, size int) {
			if a.Items.IFlags(h)&ItemLinked == 0 {
				return
			}
			if a.index.Reclaim(h, now) {
				a.unlinked(h, size)
				return
			}
			hist[a.score(h, size)] += size
		})
	}
	cutoff, kept := numScores, 0
	for cutoff > 1 && kept+hist[cutoff-1] <= budget {
		cutoff--
		kept += hist[cutoff]
	}
	partial := budget - kept // for items scoring cutoff-1
	// Then the kept items are copied to the front of dst. dst is read
	// first, so the copy never overwrites an item not yet read.
	w := segHeaderSize
	var live, items int32
	maxExp := uint32(0)
	for _, v := range victims {
		a.walk(v, func(h Handle, size int) {
			if a.Items.IFlags(h)&ItemLinked == 0 {
				return
			}
			sc := a.score(h, size)
			to := a.align(w)
			keep := sc >= cutoff || sc == cutoff-1 && sc > 0 && size <= partial
			if !keep || to+size > a.pageSize {
				a.evicted(h)
				a.index.Evicted(h)
				a.unlinked(h, size)
				return
			}
			if sc < cutoff {
				partial -= size
			}
			dstH := a.Items.HandleAt(base + to)
			if dstH != h {
				from := a.Items.Offset(h)
				copy(a.Items.mem[base+to:base+to+size], a.Items.mem[from:from+size])
				a.index.Moved(h, dstH)
				a.cls[a.classOfItem(dstH)].stats.Rescued++
			}
			a.Items.setFreq(dstH, a.Items.freq(dstH)-1)
			w = to + size
			live += int32(size)
			items++
			maxExp = laterExp(maxExp, a.Items.Exptime(dstH))
		})
	}
	d := &a.segs[dst]
	a.seq++
	d.used, d.live, d.items, d.maxExp, d.created, d.seq = int32(w), live, items, maxExp, now, a.seq
	if !d.main {
		d.main = true
		a.mainSegs++
	}
	// A main segment takes no appends, so that new items start in
	// probation segments: its free tail waits for its next merge. Only a
	// merge that freed no page (a lone segment) has it take appends
	// again.
	for cl := range a.open {
		if a.open[cl] == int32(dst) && len(victims) > 1 {
			a.open[cl] = -1
		}
	}
	// Free the others, highest number first so that removing one does
	// not renumber another still to be removed; dst, renumbered by a
	// removal, is found again by its page.
	dstPage := d.page
	rest := victims[1:]
	sortDesc(rest)
	for _, v := range rest {
		a.spare = append(a.spare, a.segs[v].page)
		a.removeSegment(v)
	}
	if items == 0 {
		dst = a.segNumberOfPage(dstPage)
		a.spare = append(a.spare, dstPage)
		a.removeSegment(dst)
		return true
	}
	if len(victims) > 1 {
		return true
	}
	if o := a.open[d.ttl]; o < 0 || a.room(int(o)) < a.room(dst) {
		a.open[d.ttl] = int32(dst)
	}
	return a.room(dst) > 0
}

// mergeKind picks which segments the next merge takes: probation
// segments while they hold more than their share, and are more than a
// merge takes (so that the newest, which takes appends, is not merged
// while new), else main segments; either kind while the other has fewer
// than two.
func (a *SegAllocator) mergeKind() segKind {
	prob := len(a.segs) - a.mainSegs
	switch {
	case prob > mergeSegments && prob*100 > probationPercent*len(a.segs):
		return kindProbation
	case a.mainSegs >= 2:
		return kindMain
	case prob >= 2:
		return kindProbation
	}
	return kindAny
}

// segKind selects segments for oldest.
type segKind int8

const (
	kindAny segKind = iota
	kindProbation
	kindMain
)

func (k segKind) has(s *segment) bool {
	return k == kindAny || (k == kindMain) == s.main
}

// numScores is the number of score buckets (score).
const numScores = 128

// score is h's worth for a merge, its read counter per byte, as a
// bucket of a log scale with four steps per doubling: 0 for a counter
// of 0 (never kept), 1 up to numScores-1. Weighing reads by size keeps
// more items in the same bytes: a small item read as often as a large
// one is worth as many hits for less room (GDSF's idea; on H1 it made
// the difference between 0.880 and 0.886).
func (a *SegAllocator) score(h Handle, size int) int {
	f := a.Items.freq(h)
	if f == 0 {
		return 0
	}
	r := uint64(f) << 20 / uint64(size)
	e := bits.Len64(r)
	if e < 3 {
		return 1
	}
	return min(1+(e-2)*4+int(r>>(e-3))&3, numScores-1)
}

// room is the bytes segment i can still take.
func (a *SegAllocator) room(i int) int { return a.pageSize - a.align(int(a.segs[i].used)) }

// segNumberOfPage is the number of the segment on page.
func (a *SegAllocator) segNumberOfPage(page int32) int {
	return int(binary.LittleEndian.Uint32(a.Items.mem[int(page)*a.pageSize:]))
}

// takePage takes a spare page, or one from the page source.
func (a *SegAllocator) takePage() (int, bool) {
	if n := len(a.spare); n > 0 {
		page := a.spare[n-1]
		a.spare = a.spare[:n-1]
		return int(page), true
	}
	return a.pool.Get()
}

// oldest returns the numbers of the n segments of kind k opened (or
// merged into) longest ago, oldest first; fewer if there are not n.
func (a *SegAllocator) oldest(n int, k segKind) []int {
	out := a.victims[:0]
	defer func() { a.victims = out }()
	for len(out) < n {
		best := -1
		for i := range a.segs {
			if !k.has(&a.segs[i]) || contains(out, i) {
				continue
			}
			if best < 0 || a.segs[i].seq < a.segs[best].seq {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, best)
	}
	return out
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func sortDesc(xs []int) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] > xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}

// evicted counts an eviction of h in its class.
func (a *SegAllocator) evicted(h Handle) {
	st := &a.cls[a.classOfItem(h)].stats
	st.Evicted++
	if a.Items.Exptime(h) != 0 {
		st.EvictedNonzero++
	}
	if a.Items.IFlags(h)&ItemFetched == 0 {
		st.EvictedUnfetch++
	}
}

// unlinked does Unlink's accounting for h, of size bytes.
func (a *SegAllocator) unlinked(h Handle, size int) {
	s := &a.segs[a.segOf(h)]
	s.live -= int32(size)
	s.items--
	c := &a.cls[a.classOfItem(h)]
	c.items--
	c.bytes -= int64(size)
	p := &a.Items.mem[a.Items.Offset(h)+segOffIFlags]
	*p &^= ItemLinked
}

// Link marks a written item linked (in the index): it counts as live,
// and its read counter starts at newItemFreq.
func (a *SegAllocator) Link(h Handle) {
	size := a.Items.Size(h)
	s := &a.segs[a.segOf(h)]
	s.live += int32(size)
	s.items++
	c := &a.cls[a.classOfItem(h)]
	c.items++
	c.bytes += int64(size)
	a.Items.mem[a.Items.Offset(h)+segOffIFlags] |= ItemLinked
	a.Items.setFreq(h, newItemFreq)
}

// Unlink marks h unlinked (the index no longer refers to it): its bytes
// are dead space until its segment is merged or freed.
func (a *SegAllocator) Unlink(h Handle) { a.unlinked(h, a.Items.Size(h)) }

// Free gives back room Alloc returned that will not be linked (or has
// been unlinked): in a segment it stays dead space, so there is nothing
// to do. It exists so that the engine treats both allocators alike.
func (a *SegAllocator) Free(Handle) {}

// Bump records a read of h: its read counter, which a merge keeps items
// by, goes up by one unless it is at segFreqMax. The engine calls it on
// every hit.
func (a *SegAllocator) Bump(h Handle) {
	if f := a.Items.freq(h); f < segFreqMax {
		a.Items.setFreq(h, f+1)
	}
}

// Retimed is told that h's expiry changed to exp (touch, gat): its
// segment must not be freed as expired before h is.
func (a *SegAllocator) Retimed(h Handle, exp uint32) {
	s := &a.segs[a.segOf(h)]
	s.maxExp = laterExp(s.maxExp, exp)
}

// ChunkSize is the bytes h takes: its size in the segment.
func (a *SegAllocator) ChunkSize(h Handle) int { return a.Items.Size(h) }

// Classes is the size-class table the counts are kept by.
func (a *SegAllocator) Classes() *Classes { return a.classes }

// Pages is the number of pages this allocator holds.
func (a *SegAllocator) Pages() int { return len(a.segs) + len(a.spare) }

// ReleasePage gives one page back to the page source, the oldest
// segment's, evicting its items; false when the allocator holds none. It
// is how a cache shrinks to a lower limit.
func (a *SegAllocator) ReleasePage(now uint32) bool {
	if n := len(a.spare); n > 0 {
		a.pool.Put(int(a.spare[n-1]))
		a.spare = a.spare[:n-1]
		return true
	}
	victims := a.oldest(1, kindAny)
	if len(victims) == 0 {
		return false
	}
	a.pool.Put(a.dropSegment(victims[0], now))
	return true
}

// ReleaseAll gives every page back to the page source, dropping every
// item without telling the index: for a cache that is going away.
func (a *SegAllocator) ReleaseAll() {
	for _, s := range a.segs {
		a.pool.Put(int(s.page))
	}
	for _, p := range a.spare {
		a.pool.Put(int(p))
	}
	a.segs, a.spare = a.segs[:0], a.spare[:0]
	a.mainSegs = 0
	for i := range a.open {
		a.open[i] = -1
	}
	for i := range a.cls {
		a.cls[i].items, a.cls[i].bytes = 0, 0
	}
}

// ClassStats is the event counters of h's size class (see
// Allocator.ClassStats).
func (a *SegAllocator) ClassStats(h Handle) *ClassStats {
	return &a.cls[a.classOfItem(h)].stats
}

// SizeStats is the event counters of the class an item of ItemSize size
// bytes is counted in.
func (a *SegAllocator) SizeStats(size int) *ClassStats { return &a.cls[a.classOf(size)].stats }

// CountCrawled records that the crawler freed h, expired or flushed (see
// Allocator.CountCrawled).
func (a *SegAllocator) CountCrawled(h Handle, flushed bool) {
	st := a.ClassStats(h)
	st.CrawlerReclaims++
	if !flushed && a.Items.IFlags(h)&ItemFetched == 0 {
		st.ExpiredUnfetch++
	}
}

// ResetStats zeroes every class's event counters.
func (a *SegAllocator) ResetStats() {
	for i := range a.cls {
		a.cls[i].stats = ClassStats{}
	}
}

// segUsage is a snapshot of the allocator's segments.
type segUsage struct {
	Segments  int
	Used      int64 // bytes written, headers and dead items included
	Live      int64 // bytes of linked items
	LiveItems int
}

// segmentUsage sums the allocator's segments.
func (a *SegAllocator) segmentUsage() segUsage {
	u := segUsage{Segments: len(a.segs)}
	for _, s := range a.segs {
		u.Used += int64(s.used)
		u.Live += int64(s.live)
		u.LiveItems += int(s.items)
	}
	return u
}

// classItems is the linked items counted in size class cl.
func (a *SegAllocator) classItems(cl int) int { return a.cls[cl].items }

// Usage appends a snapshot of every size class to dst, as
// Allocator.Usage does for "stats slabs" and "stats items". Segments
// belong to no class: each class is shown holding the share of the
// allocator's pages that its items' bytes take (at least one page while
// it holds items, the shares, spare pages included, summing to the pages
// held), its items as used chunks and no free ones; TailAtime is when
// the oldest segment was opened, for every class holding items.
func (a *SegAllocator) Usage(dst []ClassUsage) []ClassUsage {
	var total int64
	for i := range a.cls {
		total += a.cls[i].bytes
	}
	var oldest uint32
	for i, s := range a.segs {
		if i == 0 || s.created < oldest {
			oldest = s.created
		}
	}
	left := a.Pages()
	for i := range a.cls {
		c := &a.cls[i]
		u := ClassUsage{
			ChunkSize:     a.classes.Sizes[i],
			ChunksPerPage: a.classes.PerPage[i],
			UsedChunks:    c.items,
			Items:         c.items,
			ClassStats:    c.stats,
		}
		if c.items > 0 {
			u.TailAtime = oldest
			pages := 1
			if total > 0 {
				pages = max(1, int(c.bytes*int64(len(a.segs))/total))
			}
			u.Pages = min(pages, left)
			left -= u.Pages
		}
		dst = append(dst, u)
	}
	// Rounding down leaves pages over: the class holding most bytes
	// shows them, so that the pages add up.
	if left > 0 {
		best := -1
		for i := range a.cls {
			if a.cls[i].items > 0 && (best < 0 || a.cls[i].bytes > a.cls[best].bytes) {
				best = i
			}
		}
		if best >= 0 {
			dst[len(dst)-len(a.cls)+best].Pages += left
		}
	}
	return dst
}
