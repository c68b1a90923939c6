package slab

// ClassStats counts one class's events; see memcached's "stats items".
type ClassStats struct {
	Evicted         uint64 // items evicted to make room
	EvictedNonzero  uint64 // of those, items that had an expiry time set
	EvictedUnfetch  uint64 // of those, items never read
	OutOfMemory     uint64 // allocations that found nothing to evict
	PagesMoved      uint64 // pages taken from another class (the slab store's; 0 in segments)
	Rescued         uint64 // items a merge copied forward instead of evicting
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
	TailAtime     uint32 // when its oldest items were written (0 when empty)
	ClassStats
}
