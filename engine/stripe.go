package engine

import (
	"bytes"
	"sync"
	"unsafe"

	"github.com/memhive/memhive/arena"
	"github.com/memhive/memhive/slab"
)

const initialBuckets = 1 << 10

// newBuckets returns a zeroed bucket array of n heads: outside the Go heap
// once it is large (arena.MapWords says why). Free it with freeBuckets.
func newBuckets(n int) []slab.Handle {
	w, err := arena.MapWords(n)
	if err != nil {
		// The address space or the map table is exhausted: the heap
		// still works, and this array then costs the collector.
		w = make([]uint32, n)
	}
	return unsafe.Slice((*slab.Handle)(unsafe.Pointer(unsafe.SliceData(w))), n)
}

// freeBuckets releases an array made by newBuckets.
func freeBuckets(b []slab.Handle) {
	arena.FreeWords(unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), cap(b)))
}

// stripe is one lock stripe: a share of the key space with its own hash
// chains, allocator and counters, all guarded by mu.
type stripe struct {
	mu      sync.Mutex // guards every field below but e and id, and the stripe's items
	e       *Engine
	id      uint64
	items   slab.SegItems
	alloc   *slab.SegAllocator
	buckets []slab.Handle
	bmask   uint64
	count   int
	bytes   int64
	// expiring counts the linked items with an expiry time: the crawler
	// skips a stripe that has none (and no flush to apply), so caches of
	// items that never expire cost it nothing.
	expiring int

	cas       uint64 // last CAS sequence number issued here
	oldestCAS uint64 // memcached's settings.oldest_cas, for this stripe

	scratch []byte // old value kept across an allocation (append, prepend)
	st      counters

	_ [64]byte // keep neighbouring stripes' locks off one cache line
}

// nextCASLocked issues a CAS value unique across the engine: a per-stripe
// sequence interleaved with the stripe number, so no shared counter is
// touched per request.
func (s *stripe) nextCASLocked() uint64 {
	s.cas++
	return s.cas*uint64(len(s.e.stripes)) + s.id
}

// findLocked returns the item with key in h's chain, or 0.
func (s *stripe) findLocked(h uint64, key []byte) slab.Handle {
	for it := s.buckets[h&s.bmask]; it != 0; it = s.items.HNext(it) {
		if bytes.Equal(s.items.Key(it), key) {
			return it
		}
	}
	return 0
}

// linkLocked inserts a fully written item into the index and counts it
// as stored.
func (s *stripe) linkLocked(h uint64, it slab.Handle) {
	s.st.totalItems++
	s.indexLocked(h, it)
}

// indexLocked inserts a fully written item into the index.
func (s *stripe) indexLocked(h uint64, it slab.Handle) {
	b := h & s.bmask
	s.items.SetHNext(it, s.buckets[b])
	s.buckets[b] = it
	s.alloc.Link(it)
	if s.items.Exptime(it) != 0 {
		s.expiring++
	}
	s.count++
	s.bytes += int64(s.alloc.ChunkSize(it))
	if s.count > len(s.buckets)+len(s.buckets)/2 {
		s.growLocked()
	}
}

// unhashLocked removes it from its hash chain only.
func (s *stripe) unhashLocked(it slab.Handle) {
	key := s.items.Key(it)
	b := hash(key) & s.bmask
	prev := slab.Handle(0)
	for cur := s.buckets[b]; cur != 0; cur = s.items.HNext(cur) {
		if cur == it {
			if prev == 0 {
				s.buckets[b] = s.items.HNext(cur)
			} else {
				s.items.SetHNext(prev, s.items.HNext(cur))
			}
			break
		}
		prev = cur
	}
	s.count--
	if s.items.Exptime(it) != 0 {
		s.expiring--
	}
	s.bytes -= int64(s.alloc.ChunkSize(it))
}

// setExptimeLocked changes a linked item's expiry, keeping expiring right.
func (s *stripe) setExptimeLocked(it slab.Handle, exp uint32) {
	if old := s.items.Exptime(it); (old != 0) != (exp != 0) {
		if exp != 0 {
			s.expiring++
		} else {
			s.expiring--
		}
	}
	s.items.SetExptime(it, exp)
	s.alloc.Retimed(it, exp)
}

// removeLocked unlinks it from the index and LRU and frees its chunk.
func (s *stripe) removeLocked(it slab.Handle) {
	s.unhashLocked(it)
	s.alloc.Unlink(it)
	s.alloc.Free(it)
}

// Evicted implements slab.SegIndex: it only has to drop the item from
// the index; the allocator unlinks it. The allocator calls it with s.mu
// held.
func (s *stripe) Evicted(it slab.Handle) {
	s.unhashLocked(it)
	s.st.evictions++
}

// Moved implements slab.SegIndex: the item at from was copied to to. The
// allocator calls it with s.mu held.
func (s *stripe) Moved(from, to slab.Handle) {
	b := hash(s.items.Key(to)) & s.bmask
	if s.buckets[b] == from {
		s.buckets[b] = to
		return
	}
	for cur := s.buckets[b]; cur != 0; cur = s.items.HNext(cur) {
		if s.items.HNext(cur) == from {
			s.items.SetHNext(cur, to)
			return
		}
	}
}

// Reclaim implements slab.SegIndex: an item the allocator finds in a
// segment it frees or merges is dropped from the index if it has expired
// or been flushed, counted as the crawler counts what it frees. The
// allocator calls it with s.mu held, and unlinks the item itself.
func (s *stripe) Reclaim(it slab.Handle, now uint32) bool {
	flushed := s.flushedLocked(it, now)
	if !flushed {
		if exp := s.items.Exptime(it); exp == 0 || exp > now {
			return false
		}
	}
	s.alloc.CountCrawled(it, flushed)
	s.unhashLocked(it)
	s.st.crawlerReclaimed++
	if !flushed {
		s.st.crawlerExpired++
	}
	return true
}

func (s *stripe) growLocked() {
	old := s.buckets
	defer freeBuckets(old)
	s.buckets = newBuckets(len(old) * 2)
	s.bmask = uint64(len(s.buckets) - 1)
	for _, head := range old {
		for it := head; it != 0; {
			next := s.items.HNext(it)
			b := hash(s.items.Key(it)) & s.bmask
			s.items.SetHNext(it, s.buckets[b])
			s.buckets[b] = it
			it = next
		}
	}
}

// validLocked tells whether a found item is still live. An expired or
// flushed item is removed and counted in get_expired or get_flushed,
// whatever the command: memcached's do_item_get counts them on every
// lookup (get, touch, set, delete, incr, the meta commands), and does not
// count them in reclaimed, which is for items its LRU maintainer reclaims.
func (s *stripe) validLocked(it slab.Handle, now uint32) bool {
	if s.flushedLocked(it, now) {
		s.removeLocked(it)
		s.st.getFlushed++
		return false
	}
	if exp := s.items.Exptime(it); exp != 0 && exp <= now {
		s.removeLocked(it)
		s.st.getExpired++
		return false
	}
	return true
}

func (s *stripe) flushedLocked(it slab.Handle, now uint32) bool {
	ol := s.e.oldestLive.Load()
	if ol == 0 || ol > now {
		return false
	}
	if s.items.Atime(it) <= ol {
		return true
	}
	return s.oldestCAS != 0 && s.items.CAS(it) < s.oldestCAS
}

// getLocked finds a live item, removing it if expired or flushed.
func (s *stripe) getLocked(h uint64, key []byte, now uint32) slab.Handle {
	it := s.findLocked(h, key)
	if it == 0 || !s.validLocked(it, now) {
		return 0
	}
	return it
}

// touchLRULocked records an access: the last-access time, written at
// most once per item per second, and a read in the item's read counter,
// which merges keep items by (slab.SegAllocator.Bump), on every hit: a
// counter bumped once a second told H1's hot keys from its warm ones no
// better than one bit did (BENCHMARKS.md).
func (s *stripe) touchLRULocked(it slab.Handle, now uint32) {
	if s.items.Atime(it) != now {
		s.items.SetAtime(it, now)
	}
	s.alloc.Bump(it)
}
