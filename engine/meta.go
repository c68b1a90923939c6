package engine

import (
	"github.com/memhive/memhive/slab"
)

// The meta protocol's operations. memcached answers mg's and ma's return
// flags in the order the client wrote them, some of which change the item
// (T, N) and some of which read it (t, c, ...): so these operations return
// the item still locked, as a Ref, for the protocol layer to walk the flags
// in order, and Release it after.

// Expiry is the item's expiry in server time (0: never) and the server
// time now.
func (r Ref) Expiry() (exp, now uint32) { return r.s.items.Exptime(r.it), r.s.e.clock.Now() }

// ServerTime converts a client exptime to server time, as SetTTL would
// store it.
func (r Ref) ServerTime(exptime int64) uint32 { return r.s.e.clock.RelTime(exptime) }

// SetTTL gives the item a new expiry (a client exptime: relative seconds,
// an absolute unix time, or negative for already expired).
func (r Ref) SetTTL(exptime int64) {
	r.s.setExptimeLocked(r.it, r.s.e.clock.RelTime(exptime))
}

// ExpiresBefore reports whether the item expires, and before the client
// exptime given (mg R).
func (r Ref) ExpiresBefore(exptime int64) bool {
	exp := r.s.items.Exptime(r.it)
	return exp != 0 && exp < r.s.e.clock.RelTime(exptime)
}

// Idle is how many seconds ago the item was last stored or bumped (mg l).
func (r Ref) Idle() int64 { return int64(r.s.e.clock.Now()) - int64(r.s.items.Atime(r.it)) }

// Fetched reports whether the item has been read since it was stored.
func (r Ref) Fetched() bool { return r.s.items.IFlags(r.it)&slab.ItemFetched != 0 }

// Stale reports whether the item was invalidated (md I) or stored stale.
func (r Ref) Stale() bool { return r.s.items.IFlags(r.it)&slab.ItemStale != 0 }

// TokenSent reports whether a client has won the right to recache it.
func (r Ref) TokenSent() bool { return r.s.items.IFlags(r.it)&slab.ItemTokenSent != 0 }

// SendToken records that a client won the right to recache the item.
func (r Ref) SendToken() { r.s.items.SetIFlags(r.it, r.s.items.IFlags(r.it)|slab.ItemTokenSent) }

// KeyBinary reports whether the key was stored base64-encoded.
func (r Ref) KeyBinary() bool { return r.s.items.IFlags(r.it)&slab.ItemKeyBinary != 0 }

// ClassSize is the item's size class (numbered from 1, as memcached's) and
// the bytes it takes in it (me).
func (r Ref) ClassSize() (class, size int) {
	return r.s.alloc.Class(r.it) + 1, slab.ItemSize(len(r.Key()), len(r.Value()))
}

// Bump marks the item fetched and read (a merge keeps it), as a get does.
func (r Ref) Bump() {
	r.s.items.SetIFlags(r.it, r.s.items.IFlags(r.it)|slab.ItemFetched)
	r.s.touchLRULocked(r.it, r.s.e.clock.Now())
}

// MetaGet looks a key up for mg without bumping it (the caller bumps after
// reading what mg reports, unless u). On a miss with vivify it creates an
// empty item (flags 0, no expiry; never marked binary-keyed, as in
// memcached) and reports created. It counts a miss as memcached's mg
// does, always as a get; the caller counts a hit (a created item too)
// with CountMetaHit once its answer is complete.
func (e *Engine) MetaGet(key []byte, vivify bool) (r Ref, hit, created bool) {
	s, h, now := e.lockKey(key)
	it := s.getLocked(h, key, now)
	if it == 0 && vivify {
		if st, _ := s.storeNewLocked(h, key, 0, 0, now, nil, nil, 0, 0); st == Stored {
			it, created = s.findLocked(h, key), true
		}
	}
	if it == 0 {
		s.st.cmdGet++
		s.st.getMisses++
		s.mu.Unlock()
		return Ref{}, false, false
	}
	return Ref{s, it}, true, created
}

// CountMetaHit counts an mg that found (or created) the item, once its
// answer is complete: as a touch when touch (a T flag), as a get
// otherwise. memcached counts a hit only after every flag was answered:
// an mg that stops at a flag with an error (an opaque over 32 bytes)
// fetched the item but counts nothing.
func (r Ref) CountMetaHit(touch bool) {
	s := r.s
	if touch {
		s.st.cmdTouch++
		s.st.touchHits++
		s.alloc.ClassStats(r.it).TouchHits++
		return
	}
	s.st.cmdGet++
	s.st.getHits++
	s.alloc.ClassStats(r.it).GetHits++
}

// Peek finds a key's item without counting or bumping anything (me).
func (e *Engine) Peek(key []byte) (Ref, bool) {
	s, h, now := e.lockKey(key)
	it := s.getLocked(h, key, now)
	if it == 0 {
		s.mu.Unlock()
		return Ref{}, false
	}
	return Ref{s, it}, true
}

// MetaDeleteOptions are md's flags.
type MetaDeleteOptions struct {
	// HasCAS (C): the item's CAS value must equal CAS, else Exists.
	HasCAS bool
	CAS    uint64
	// Invalidate (I) keeps the item, marked stale, its recache token
	// cleared and its CAS renewed, instead of deleting it.
	Invalidate bool
	// NewTTL (T, with I) gives the invalidated item the expiry Exptime
	// (a client exptime).
	NewTTL  bool
	Exptime int64
}

// MetaDelete is md: Deleted (also when the item was only invalidated),
// NotFound, or Exists on a CAS mismatch.
func (e *Engine) MetaDelete(key []byte, o MetaDeleteOptions) Status {
	s, h, now := e.lockKey(key)
	defer s.mu.Unlock()
	it := s.getLocked(h, key, now)
	if it == 0 {
		s.st.deleteMisses++
		return NotFound
	}
	if o.HasCAS && s.items.CAS(it) != o.CAS {
		s.st.deleteMisses++
		return Exists
	}
	if !o.Invalidate {
		s.st.deleteHits++
		s.alloc.ClassStats(it).DeleteHits++
		s.removeLocked(it)
		return Deleted
	}
	if o.NewTTL {
		s.setExptimeLocked(it, e.clock.RelTime(o.Exptime))
	}
	f := s.items.IFlags(it)
	s.items.SetIFlags(it, (f|slab.ItemStale)&^slab.ItemTokenSent)
	s.items.SetCAS(it, s.nextCASLocked())
	return Deleted
}

// MetaDeltaResult is what MetaDelta reports besides its Status.
type MetaDeltaResult struct {
	DeltaResult
	// Ref is the item, still locked, when the Status is OK: the caller
	// reads it and sets its expiry in the order of ma's flags, then
	// calls Release. It is the zero Ref otherwise.
	Ref Ref
	// Created reports that the key was missing and o.Create made the item.
	Created bool
	// Replaced reports that the new number did not fit in place, so that
	// a new item took the old one's place: memcached then hands ma the
	// old, unlinked item, so ma's T and N change nothing (what it reads
	// is the same).
	Replaced bool
}

// MetaDelta is ma: Delta, except that on OK the item is returned locked
// in the result's Ref. ma's N is o.Create with no expiry (o.Exptime 0):
// the caller sets the created item's expiry in the order of the flags.
func (e *Engine) MetaDelta(key []byte, o DeltaOptions) (Status, MetaDeltaResult) {
	s, h, now := e.lockKey(key)
	before := s.getLocked(h, key, now)
	st, res, it := s.deltaLocked(h, key, before, now, &o)
	if st != OK || it == 0 {
		s.mu.Unlock()
		return st, MetaDeltaResult{DeltaResult: res}
	}
	return st, MetaDeltaResult{DeltaResult: res, Ref: Ref{s, it}, Created: before == 0, Replaced: before != 0 && it != before}
}
