// Package slab keeps items in arena pages: it lays out an item's header,
// key and value in one chunk, carves pages into chunks of size classes,
// keeps one LRU list per class, and evicts or moves pages between classes
// to make room. It knows nothing of keys' hashing, commands or caches;
// the engine gives each of its lock stripes one Allocator.
//
// # Pieces
//
//   - Pool (pool.go) hands whole pages out to allocators and takes them
//     back; a PageSource in front of it is where a cache's quota applies.
//   - Classes (classes.go) is the table of chunk sizes, growing by
//     memcached's -f factor up to a whole page.
//   - Allocator (alloc.go) owns the pages it took: per class, a free list
//     and an LRU list (head: most recently used). Alloc takes a free chunk,
//     a new page, the class's LRU tail, or a page from the class whose tail
//     is older; ReleasePage gives a page back when the cache shrinks.
//   - Items (item.go) reads and writes headers in place; the layout is
//     HeaderSize's comment.
//   - SegAllocator and SegItems (segalloc.go, segitems.go) are the
//     segment store of issue 16, which the engine does not use yet:
//     items packed back to back in pages (segments) with a 25-byte
//     header, one open segment per expiry class, and room made by whole
//     segments (an expired one freed, or the oldest merged, keeping the
//     items read since they were written).
//
// # Who owns which bytes
//
// A chunk belongs to its Allocator from Alloc until Free; its header's
// class and item flags are set by Alloc, the rest is the caller's to write
// (Items.Init) before Link puts it on its LRU list. Key and value bytes
// are the caller's to copy in; what Items.Key and Items.Value return
// aliases arena memory and is valid only while the caller holds the lock
// that guards the allocator (the engine's stripe lock): copy it out before
// unlocking. When the allocator needs the chunk back it asks the Index
// first (Evicted, Moved), under that same lock.
//
// Items are named by Handle, an offset into the arena, never by a Go
// pointer, so the garbage collector never scans item memory.
//
// # Locks
//
// An Allocator is not safe for concurrent use: its caller's lock guards
// it. Pool.mu guards the pool's free list; an allocator takes it (through
// Get and Put) while its caller holds the stripe lock, never the other way
// round.
package slab
