package engine

import (
	"sync"

	"github.com/memhive/memhive/slab"
)

// Bounds on one lock hold of Export: it stops taking buckets once it has
// looked at exportBuckets of them, copied exportItems items or
// exportBytes bytes, so that requests on the stripe wait about as long as
// behind one large set. A bucket's chain is always copied whole (chains
// are short: the index grows at 1.5 items a bucket), so one hold may copy
// a little more than exportBytes.
const (
	exportBuckets = 256
	exportItems   = 128
	exportBytes   = 256 << 10
)

// ExportedItem is one live item as Export hands it to its callback: a
// copy of the item, taken under its stripe's lock.
//
// Key and Value point into a buffer that Export reuses for the next batch
// (item memory itself stays off the heap and behind the lock): they are
// valid only until the callback returns, and must be copied to be kept.
type ExportedItem struct {
	Key   []byte
	Value []byte
	Flags uint32
	// Expires is when the item expires, in unix seconds; 0 means never.
	// An absolute time rather than a TTL, so that it stays right however
	// long the caller holds on to it before acting on it.
	Expires int64
	// CAS is the item's CAS unique value on this node. Another node
	// issues its own when it stores the item.
	CAS uint64
}

// exportEntry locates one copied item in an exportBatch's buffer.
type exportEntry struct {
	keyEnd, valEnd int // ends of key and value in buf; each starts where the last ended
	flags          uint32
	expires        int64
	cas            uint64
}

// exportBatch is the copy of one lock hold's items.
type exportBatch struct {
	buf     []byte
	entries []exportEntry
}

// exportBatches keeps batch buffers across Export calls, so that a walk
// allocates nothing once buffers have grown to the size of a batch.
var exportBatches = sync.Pool{New: func() any { return new(exportBatch) }}

// Export calls fn for every live item of the cache, stripe by stripe,
// until fn returns false; it reports whether it went through to the end.
// Expired and flushed items are skipped (and left for the crawler or the
// next lookup to free), as are items marked stale by the meta protocol's
// invalidation: handing one on would make a value valid again that a
// client declared out of date. Export neither bumps nor counts anything:
// walking the cache is not a read of it.
//
// The cache keeps serving during the walk. Export never holds a lock
// while fn runs: it copies a bounded batch of buckets' items under the
// stripe's lock (see exportBuckets), unlocks, then hands the copies to fn.
// So fn may take its time (block on a peer's connection, say), and may
// even call the engine. What the walk sees of concurrent traffic:
//   - a key that stays live throughout the walk is reported exactly once,
//     with the value it had when its bucket was copied;
//   - no key is reported twice in one walk, even when the index grows;
//   - a key added, changed, deleted, evicted or expiring during the walk
//     may or may not be reported, and if reported, with either value.
func (e *Engine) Export(fn func(it ExportedItem) bool) bool {
	b := exportBatches.Get().(*exportBatch)
	defer exportBatches.Put(b)
	for i := range e.stripes {
		if !e.stripes[i].export(b, fn) {
			return false
		}
	}
	return true
}

// export walks one stripe for Export.
//
// The index may grow between two lock holds, doubling its buckets; an
// item in bucket j of a table of n buckets then lies in a bucket j' of
// the larger table with j'&(n-1) == j. So the walk counts in buckets of
// the table as it was when the walk began (n0, a power of two like every
// size since) and, for each, visits every bucket of the current table
// that holds its items: each item is looked at in exactly one lock hold,
// whatever the growth. This relies on the index never shrinking, which
// growLocked is the only one to resize; a shrink would need the walk
// changed too.
func (s *stripe) export(b *exportBatch, fn func(ExportedItem) bool) bool {
	s.mu.Lock()
	n0 := len(s.buckets)
	empty := s.count == 0
	s.mu.Unlock()
	if empty {
		return true
	}
	for next := 0; next < n0; {
		b.buf, b.entries = b.buf[:0], b.entries[:0]
		s.mu.Lock()
		next = s.exportLocked(b, next, n0, s.e.clock.Now())
		s.mu.Unlock()
		for i := range b.entries {
			en := &b.entries[i]
			start := 0
			if i > 0 {
				start = b.entries[i-1].valEnd
			}
			it := ExportedItem{
				Key:     b.buf[start:en.keyEnd:en.keyEnd],
				Value:   b.buf[en.keyEnd:en.valEnd:en.valEnd],
				Flags:   en.flags,
				Expires: en.expires,
				CAS:     en.cas,
			}
			if !fn(it) {
				return false
			}
		}
	}
	return true
}

// exportLocked copies the live items of the walk's buckets from, from+1,
// ... (counted in a table of n0 buckets) into b until a bound is reached,
// and returns the first bucket it did not copy.
func (s *stripe) exportLocked(b *exportBatch, from, n0 int, now uint32) int {
	stride := n0
	n := len(s.buckets)
	started := s.e.clock.started
	j := from
	for ; j < n0 && j-from < exportBuckets; j++ {
		if len(b.entries) >= exportItems || len(b.buf) >= exportBytes {
			break
		}
		for phys := j; phys < n; phys += stride {
			for it := s.buckets[phys]; it != 0; it = s.items.HNext(it) {
				if !s.exportableLocked(it, now) {
					continue
				}
				b.buf = append(b.buf, s.items.Key(it)...)
				keyEnd := len(b.buf)
				b.buf = append(b.buf, s.items.Value(it)...)
				var expires int64
				if exp := s.items.Exptime(it); exp != 0 {
					expires = started + int64(exp)
				}
				b.entries = append(b.entries, exportEntry{
					keyEnd:  keyEnd,
					valEnd:  len(b.buf),
					flags:   s.items.Flags(it),
					expires: expires,
					cas:     s.items.CAS(it),
				})
			}
		}
	}
	return j
}

// exportableLocked tells whether Export hands it on: live (neither
// expired nor flushed) and not marked stale. Unlike validLocked it frees
// nothing, so that a walk changes no counter.
func (s *stripe) exportableLocked(it slab.Handle, now uint32) bool {
	if exp := s.items.Exptime(it); exp != 0 && exp <= now {
		return false
	}
	if s.items.IFlags(it)&slab.ItemStale != 0 {
		return false
	}
	return !s.flushedLocked(it, now)
}
