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
	return r.s.items.Class(r.it) + 1, slab.ItemSize(len(r.Key()), len(r.Value()))
}

// Bump marks the item fetched and moves it up its LRU, as a get does.
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
	h := hash(key)
	s := e.stripeFor(h)
	now := e.clock.Now()
	s.mu.Lock()
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
	h := hash(key)
	s := e.stripeFor(h)
	s.mu.Lock()
	it := s.getLocked(h, key, e.clock.Now())
	if it == 0 {
		s.mu.Unlock()
		return Ref{}, false
	}
	return Ref{s, it}, true
}

// MetaDelete is md: with hasCAS the item's CAS must equal cas (else
// Exists); with invalidate the item is kept, marked stale, its token
// cleared and its CAS renewed, with a new expiry if newTTL; otherwise it is
// deleted.
func (e *Engine) MetaDelete(key []byte, hasCAS bool, cas uint64, invalidate, newTTL bool, exptime int64) Status {
	h := hash(key)
	s := e.stripeFor(h)
	now := e.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.getLocked(h, key, now)
	if it == 0 {
		s.st.deleteMisses++
		return NotFound
	}
	if hasCAS && s.items.CAS(it) != cas {
		s.st.deleteMisses++
		return Exists
	}
	if !invalidate {
		s.st.deleteHits++
		s.alloc.ClassStats(it).DeleteHits++
		s.removeLocked(it)
		return Deleted
	}
	if newTTL {
		s.setExptimeLocked(it, e.clock.RelTime(exptime))
	}
	f := s.items.IFlags(it)
	s.items.SetIFlags(it, (f|slab.ItemStale)&^slab.ItemTokenSent)
	s.items.SetCAS(it, s.nextCAS())
	return Deleted
}

// MetaDelta is ma: Delta, except that a miss with vivify creates the item
// with initial and no expiry (created reports it), and that on OK the item
// is returned locked, for the caller to read and set its expiry in the
// order of the flags, then Release.
//
// replaced reports that the new number did not fit in place, so that a new
// item took the old one's place: memcached then hands ma the old, unlinked
// item, so ma's T and N change nothing (what it reads is the same).
func (e *Engine) MetaDelta(key []byte, incr bool, delta, cas uint64, vivify bool, initial uint64) (st Status, res DeltaResult, r Ref, created, replaced bool) {
	h := hash(key)
	s := e.stripeFor(h)
	s.mu.Lock()
	before := s.getLocked(h, key, e.clock.Now())
	created = vivify && before == 0
	st, res, it := s.deltaLocked(h, key, incr, delta, cas, created, initial, 0)
	if st != OK || it == 0 {
		s.mu.Unlock()
		return st, res, Ref{}, false, false
	}
	return st, res, Ref{s, it}, created, !created && it != before
}
