package engine

import "github.com/memhive/memhive/slab"

// counters are one stripe's command counters, guarded by its lock. They
// are summed when stats are read, so no counter is shared between cores.
type counters struct {
	cmdGet, getHits, getMisses, getExpired, getFlushed uint64
	cmdSet, cmdTouch, touchHits, touchMisses, cmdFlush uint64
	deleteHits, deleteMisses                           uint64
	incrHits, incrMisses, decrHits, decrMisses         uint64
	casHits, casMisses, casBadval                      uint64
	storeNoMemory                                      uint64
	totalItems, evictions, crawlerReclaimed            uint64
	crawlerChecked, crawlerExpired                     uint64
}

func (c *counters) add(o *counters) {
	c.cmdGet += o.cmdGet
	c.getHits += o.getHits
	c.getMisses += o.getMisses
	c.getExpired += o.getExpired
	c.getFlushed += o.getFlushed
	c.cmdSet += o.cmdSet
	c.cmdTouch += o.cmdTouch
	c.touchHits += o.touchHits
	c.touchMisses += o.touchMisses
	c.cmdFlush += o.cmdFlush
	c.deleteHits += o.deleteHits
	c.deleteMisses += o.deleteMisses
	c.incrHits += o.incrHits
	c.incrMisses += o.incrMisses
	c.decrHits += o.decrHits
	c.decrMisses += o.decrMisses
	c.casHits += o.casHits
	c.casMisses += o.casMisses
	c.casBadval += o.casBadval
	c.storeNoMemory += o.storeNoMemory
	c.totalItems += o.totalItems
	c.evictions += o.evictions
	c.crawlerReclaimed += o.crawlerReclaimed
	c.crawlerChecked += o.crawlerChecked
	c.crawlerExpired += o.crawlerExpired
}

// Stats is a snapshot of the engine's counters, named as memcached's
// "stats" fields.
type Stats struct {
	CmdGet, GetHits, GetMisses, GetExpired, GetFlushed uint64
	CmdSet, CmdTouch, TouchHits, TouchMisses, CmdFlush uint64
	DeleteHits, DeleteMisses                           uint64
	IncrHits, IncrMisses, DecrHits, DecrMisses         uint64
	CasHits, CasMisses, CasBadval                      uint64
	StoreNoMemory                                      uint64
	CurrItems, TotalItems                              uint64
	Bytes                                              uint64 // memory held by live items: the sum of their chunks (header, key, value, class rounding)
	Evictions, ExpiredUnfetched                        uint64
	// Expired counts the items found expired, by a command
	// (GetExpired) or by the crawler: MemCachier's "expired". memcached
	// has no such field (its reclaimed counts its LRU maintainer's
	// reclaims, which memhive's crawler does instead).
	Expired                               uint64
	EvictedUnfetched, EvictedActive       uint64
	CrawlerReclaimed, CrawlerItemsChecked uint64
	SlabsMoved                            uint64
	LimitMaxbytes                         uint64
	// TotalMalloced is the memory the cache holds: its pages, whole,
	// whatever they hold (memcached's total_malloced). Evictions begin
	// when the cache holds LimitMaxbytes/PageCharge pages (or, with
	// overcommitted limits, when the shared pool has no page left); as a
	// page is a little larger than its charge, usage is then the limit
	// plus 64 bytes or so per page.
	TotalMalloced         uint64
	TotalPages, FreePages uint64
	HashBuckets           uint64
}

// Stats sums every stripe's counters. It takes each stripe's lock in turn.
func (e *Engine) Stats() Stats {
	var c counters
	var st Stats
	var usage []slab.ClassUsage
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		c.add(&s.st)
		st.CurrItems += uint64(s.count)
		st.Bytes += uint64(s.bytes)
		st.HashBuckets += uint64(len(s.buckets))
		usage = s.alloc.Usage(usage[:0])
		s.mu.Unlock()
		for _, u := range usage {
			st.ExpiredUnfetched += u.ExpiredUnfetch
			st.EvictedUnfetched += u.EvictedUnfetch
			st.SlabsMoved += u.PagesMoved
		}
	}
	st.CmdGet, st.GetHits, st.GetMisses, st.GetExpired, st.GetFlushed = c.cmdGet, c.getHits, c.getMisses, c.getExpired, c.getFlushed
	st.CmdSet, st.CmdTouch, st.TouchHits, st.TouchMisses, st.CmdFlush = c.cmdSet, c.cmdTouch, c.touchHits, c.touchMisses, c.cmdFlush
	st.DeleteHits, st.DeleteMisses = c.deleteHits, c.deleteMisses
	st.IncrHits, st.IncrMisses, st.DecrHits, st.DecrMisses = c.incrHits, c.incrMisses, c.decrHits, c.decrMisses
	st.CasHits, st.CasMisses, st.CasBadval = c.casHits, c.casMisses, c.casBadval
	st.StoreNoMemory = c.storeNoMemory
	st.TotalItems, st.Evictions = c.totalItems, c.evictions
	st.CrawlerReclaimed, st.CrawlerItemsChecked = c.crawlerReclaimed, c.crawlerChecked
	st.Expired = c.getExpired + c.crawlerExpired
	st.LimitMaxbytes = uint64(e.LimitBytes())
	// The pages this cache could still take: its remaining quota, as far
	// as the shared pool has them.
	limit, taken := e.quota.limit.Load(), e.quota.taken.Load()
	st.TotalMalloced = uint64(taken) * uint64(e.mem.PageSize())
	st.TotalPages = uint64(limit)
	st.FreePages = uint64(max(0, min(limit-taken, int64(e.mem.FreePages()))))
	return st
}

// ClassStats is one size class summed over every stripe, for "stats slabs"
// and "stats items". Classes that never held a page are left out by callers
// as memcached does.
type ClassStats struct {
	ID int
	slab.ClassUsage
	OldestAtime uint32 // access time of the oldest LRU tail across stripes (0: none)
}

// SlabStats sums the size classes of every stripe.
func (e *Engine) SlabStats() []ClassStats {
	out := make([]ClassStats, len(e.mem.classes.Sizes))
	var usage []slab.ClassUsage
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		usage = s.alloc.Usage(usage[:0])
		s.mu.Unlock()
		for id, u := range usage {
			o := &out[id]
			o.ID = id
			o.ChunkSize, o.ChunksPerPage = u.ChunkSize, u.ChunksPerPage
			o.Pages += u.Pages
			o.UsedChunks += u.UsedChunks
			o.FreeChunks += u.FreeChunks
			o.Items += u.Items
			o.Evicted += u.Evicted
			o.EvictedNonzero += u.EvictedNonzero
			o.EvictedUnfetch += u.EvictedUnfetch
			o.OutOfMemory += u.OutOfMemory
			o.PagesMoved += u.PagesMoved
			o.ExpiredUnfetch += u.ExpiredUnfetch
			o.CrawlerReclaims += u.CrawlerReclaims
			o.SetCmds += u.SetCmds
			o.GetHits += u.GetHits
			o.TouchHits += u.TouchHits
			o.DeleteHits += u.DeleteHits
			o.CasHits += u.CasHits
			o.CasBadval += u.CasBadval
			o.IncrHits += u.IncrHits
			o.DecrHits += u.DecrHits
			if u.TailAtime != 0 && (o.OldestAtime == 0 || u.TailAtime < o.OldestAtime) {
				o.OldestAtime = u.TailAtime
			}
		}
	}
	return out
}

// ResetStats zeroes every counter ("stats reset"); item counts and bytes,
// which describe what is stored, are kept.
func (e *Engine) ResetStats() {
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		s.st = counters{}
		s.alloc.ResetStats()
		s.mu.Unlock()
	}
}

// countSetLocked counts a storage command carrying keyLen+valueLen bytes
// in cmd_set and in the cmd_set of the class its item takes: memcached
// counts set_cmds by the class of the item it allocated for the data,
// whatever the command's outcome.
func (s *stripe) countSetLocked(keyLen, valueLen int) {
	s.st.cmdSet++
	if c := s.alloc.SizeStats(slab.ItemSize(keyLen, valueLen)); c != nil {
		c.SetCmds++
	}
}

// CountBadSet counts a storage command whose data block did not end in
// "\r\n" (refused with CLIENT_ERROR bad data chunk): memcached counts it in
// cmd_set before it checks the data. key picks the stripe whose counters
// take it.
func (e *Engine) CountBadSet(key []byte, valueLen int) {
	s, _, _ := e.lockKey(key)
	s.countSetLocked(len(key), valueLen)
	s.mu.Unlock()
}
