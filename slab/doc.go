// Package slab keeps items in arena pages, as segments (issue 16): items
// are appended back to back to the open segment of their expiry class,
// with a compact header, and room is made by whole segments. It knows
// nothing of keys' hashing, commands or caches; the engine gives each of
// its lock stripes one SegAllocator.
//
// # Pieces
//
//   - Pool (pool.go) hands whole pages out to allocators and takes them
//     back; a PageSource in front of it is where a cache's quota applies.
//   - SegItems (segitems.go) reads and writes items in place; the layout
//     is in the file's comment: a 25-byte header (hash link, expiry, last
//     access, CAS, key length, state bits, 3-byte value length), client
//     flags only when not zero, then key and value.
//   - SegAllocator (segalloc.go) owns the pages it took, each one
//     segment. Alloc appends to the open segment of the item's expiry
//     class (13 classes: never, and ranges of remaining lifetime growing
//     by four), takes a page, frees a segment whose items have all
//     expired, or merges the oldest segments into one, keeping the items
//     read most per byte (a 4-bit read counter in the atime field's top
//     bits) and evicting the rest; new items start in probation
//     segments, merged apart from the main segments merges write; a
//     delete or an overwrite leaves dead bytes, which merges reclaim.
//     ReleasePage gives a page back when the cache shrinks.
//   - Classes (classes.go) is the table of memcached-style chunk sizes,
//     growing by the -f factor up to a whole page. Segments have no size
//     classes, but items are counted by the class their ItemSize picks,
//     so that "stats slabs" and "stats items" report per class as
//     memcached does.
//
// # Why segments
//
// A slab store spends a 40-byte header, LRU links and the rounding of its
// chunk classes on every item; packed items cost their header alone (T4
// in BENCHMARKS.md: about 157 bytes of RSS for a 15-byte key and a
// 100-byte value, against memcached's 197), and a cache whose item sizes
// change never strands memory in a class that is no longer asked for
// (memcached's slab calcification, H2).
//
// # Who owns which bytes
//
// Room Alloc returns belongs to its SegAllocator; the caller writes the
// item (SegItems.Init), then Link marks it live. Key and value bytes are
// the caller's to copy in; what SegItems.Key and SegItems.Value return
// aliases arena memory and is valid only while the caller holds the lock
// that guards the allocator (the engine's stripe lock), and only until
// the next Alloc, which may move or drop items: copy it out first. When
// the allocator drops or moves an item it tells the SegIndex (Evicted,
// Reclaim, Moved), under that same lock.
//
// Items are named by Handle, an offset into the arena, never by a Go
// pointer, so the garbage collector never scans item memory.
//
// # Locks
//
// A SegAllocator is not safe for concurrent use: its caller's lock guards
// it. Pool.mu guards the pool's free list; an allocator takes it (through
// Get and Put) while its caller holds the stripe lock, never the other way
// round.
package slab
