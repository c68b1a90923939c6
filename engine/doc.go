// Package engine is memhive's cache: a lock-striped hash index over items
// kept in off-heap slab memory, with memcached 1.6's command semantics
// (storage modes, CAS, expiry, incr/decr, touch, flush_all) and its stats.
//
// # Stripes
//
// The key space is split into stripes by the go-farm hash of (cache id,
// key). A stripe owns everything its items touch: its hash chains, its
// slab.Allocator (size classes, LRU lists, eviction) and its counters. One
// mutex per stripe guards all of it, so a request takes exactly one lock
// and no lock is ever held while another stripe's is taken.
//
// # Lock order
//
//  1. stripe.mu (one at a time; never two stripes at once)
//  2. slab.Pool.mu (taken inside Allocator.Alloc when a stripe needs a page)
//
// The clock and the flush time are atomics read without locks.
//
// # Lifetimes
//
// Items are referenced by slab.Handle (integer offsets), never pointers.
// A Ref returned by Get holds its stripe's lock: the caller copies what it
// needs (into its output buffer) and calls Release promptly, without
// calling the engine in between.
package engine
