// Package engine is memhive's cache: a lock-striped hash index over items
// kept in off-heap segments (package slab), with memcached 1.6's command
// semantics (storage modes, CAS, expiry, incr/decr, touch, flush_all) and
// its stats.
//
// # Stripes
//
// The key space is split into stripes by the go-farm hash of the key
// (each cache has an Engine of its own). A stripe owns everything its items
// touch: its hash chains, its slab.SegAllocator (segments, expiry
// classes, eviction by merging segments) and its counters. One mutex per
// stripe guards all of it, so a request takes exactly one lock and no lock
// is ever held while another stripe's is taken.
//
// Every command on a key opens with lockKey (memcached's item_lock in
// thread.c): hash the key, read the clock, lock the key's stripe. A
// function or method named ...Locked (memcached's do_ prefix) assumes that
// lock is held and never takes it; so do the stripe's slab.SegIndex
// methods (Evicted, Moved, Reclaim), which its allocator calls, and the
// methods of a Ref.
//
// # Lock order
//
//  1. Engine.resizeMu (SetLimit and Close of this cache; a resize then
//     takes each stripe's lock in turn to move its share of pages)
//  2. stripe.mu (one at a time; never two stripes at once)
//  3. slab.Pool.mu (taken inside SegAllocator.Alloc when a stripe needs
//     a page, and when a shrink gives pages back)
//
// The clock, the flush time and a cache's page quota are atomics read
// without locks. The whole process's order, from the control store down,
// is in package server's documentation.
//
// # Lifetimes
//
// Items are referenced by slab.Handle (integer offsets), never pointers.
// A Ref returned by Get holds its stripe's lock: the caller copies what it
// needs (into its output buffer) and calls Release promptly, without
// calling the engine in between. The engine copies the keys and values it
// is given, so a request's slices may be reused once a call returns; the
// slices a Ref gives out alias item memory and are valid until Release.
package engine
