package engine

import (
	"strconv"

	"github.com/memhive/memhive/slab"
)

// Mode is a storage command's mode.
type Mode uint8

// Storage modes, as memcached's set, add, replace, append, prepend, cas.
const (
	ModeSet Mode = iota
	ModeAdd
	ModeReplace
	ModeAppend
	ModePrepend
	ModeCAS
)

// Status is the outcome of a command.
type Status uint8

// Outcomes; the protocol layer maps each to its reply.
const (
	Stored     Status = iota // STORED
	NotStored                // NOT_STORED: condition not met (add on a hit, replace on a miss, ...)
	Exists                   // EXISTS: CAS mismatch
	NotFound                 // NOT_FOUND
	Deleted                  // DELETED
	Touched                  // TOUCHED
	OK                       // incr/decr done
	NonNumeric               // incr/decr on a value that is not a decimal number
	TooLarge                 // key+value reaches the item size limit (also after append/prepend)
	NoMemory                 // nothing could be evicted to make room
)

// Ref is a live item found by Get or GetAndTouch. It holds its stripe's
// lock: read what is needed, then call Release, without calling the engine
// in between. Key and Value alias item memory: they are valid until
// Release, and must not be kept (copy them, as into an output buffer).
type Ref struct {
	s  *stripe
	it slab.Handle
}

// Key is the item's key.
func (r Ref) Key() []byte { return r.s.items.Key(r.it) }

// Value is the item's value.
func (r Ref) Value() []byte { return r.s.items.Value(r.it) }

// Flags is the item's client flags.
func (r Ref) Flags() uint32 { return r.s.items.Flags(r.it) }

// CAS is the item's CAS unique value.
func (r Ref) CAS() uint64 { return r.s.items.CAS(r.it) }

// Release unlocks the item's stripe.
func (r Ref) Release() { r.s.mu.Unlock() }

// Get looks a key up for a get/gets, counting cmd_get and hits or misses.
// On a hit the returned Ref holds a lock until Release.
func (e *Engine) Get(key []byte) (Ref, bool) { return e.lookup(key, false, 0) }

// GetAndTouch looks a key up and sets its expiry (gat, gats), counting
// cmd_touch and touch hits or misses as memcached does.
func (e *Engine) GetAndTouch(key []byte, exptime int64) (Ref, bool) {
	return e.lookup(key, true, exptime)
}

func (e *Engine) lookup(key []byte, touch bool, exptime int64) (Ref, bool) {
	var exp uint32
	if touch {
		exp = e.clock.RelTime(exptime)
	}
	s, h, now := e.lockKey(key)
	it := s.getLocked(h, key, now)
	switch {
	case touch && it == 0:
		s.st.cmdTouch++
		s.st.touchMisses++
	case touch:
		s.st.cmdTouch++
		s.st.touchHits++
		s.alloc.ClassStats(it).TouchHits++
		s.setExptimeLocked(it, exp)
	case it == 0:
		s.st.cmdGet++
		s.st.getMisses++
	default:
		s.st.cmdGet++
		s.st.getHits++
		s.alloc.ClassStats(it).GetHits++
	}
	if it == 0 {
		s.mu.Unlock()
		return Ref{}, false
	}
	s.items.SetIFlags(it, s.items.IFlags(it)|slab.ItemFetched)
	s.touchLRULocked(it, now)
	return Ref{s, it}, true
}

// Touch sets a key's expiry without reading it.
func (e *Engine) Touch(key []byte, exptime int64) Status {
	exp := e.clock.RelTime(exptime)
	s, h, now := e.lockKey(key)
	defer s.mu.Unlock()
	s.st.cmdTouch++
	it := s.getLocked(h, key, now)
	if it == 0 {
		s.st.touchMisses++
		return NotFound
	}
	s.st.touchHits++
	s.alloc.ClassStats(it).TouchHits++
	s.setExptimeLocked(it, exp)
	// memcached's touch fetches the item with a bump: it counts as read.
	s.items.SetIFlags(it, s.items.IFlags(it)|slab.ItemFetched)
	s.touchLRULocked(it, now)
	return Touched
}

// Delete removes a key. A non-zero cas must match the item's (binary
// protocol), else Exists.
func (e *Engine) Delete(key []byte, cas uint64) Status {
	s, h, now := e.lockKey(key)
	defer s.mu.Unlock()
	it := s.getLocked(h, key, now)
	if it == 0 {
		s.st.deleteMisses++
		return NotFound
	}
	if cas != 0 && s.items.CAS(it) != cas {
		return Exists
	}
	s.st.deleteHits++
	s.alloc.ClassStats(it).DeleteHits++
	s.removeLocked(it)
	return Deleted
}

// Unlink drops key's item if there is one: memcached does this when a set
// is refused, so a failed write leaves no stale value. Like memcached's
// item_get there, the lookup counts an expired or flushed item it meets
// (get_expired, get_flushed); nothing else is counted.
func (e *Engine) Unlink(key []byte) {
	s, h, now := e.lockKey(key)
	if it := s.getLocked(h, key, now); it != 0 {
		s.removeLocked(it)
	}
	s.mu.Unlock()
}

// Store runs a storage command. cas is the client's CAS value for ModeCAS;
// for append and prepend a non-zero cas must match too (binary protocol; a
// binary set, add or replace with a CAS is ModeCAS). It returns the
// outcome and, when stored, the item's new CAS value. key and value are
// copied into item memory: the caller may reuse them once Store returns.
func (e *Engine) Store(mode Mode, key []byte, flags uint32, exptime int64, value []byte, cas uint64) (Status, uint64) {
	return e.StoreMeta(mode, key, flags, exptime, value, cas, StoreOptions{})
}

// StoreOptions are the meta protocol's additions to a store (ms).
type StoreOptions struct {
	// Stale (ms I with C): a CAS value lower than the item's stores the
	// value anyway, marked stale, keeping the item's expiry and token.
	Stale bool
	// KeyBinary marks the item's key as sent base64-encoded.
	KeyBinary bool
	// SetCAS (ms E) gives the new item CASValue instead of a fresh one.
	SetCAS   bool
	CASValue uint64
}

// StoreMeta is Store with the meta protocol's options.
func (e *Engine) StoreMeta(mode Mode, key []byte, flags uint32, exptime int64, value []byte, cas uint64, o StoreOptions) (Status, uint64) {
	if e.tooLarge(len(key) + len(value)) {
		return TooLarge, 0
	}
	exp := e.clock.RelTime(exptime)
	s, h, now := e.lockKey(key)
	defer s.mu.Unlock()
	s.countSetLocked(len(key), len(value))
	old := s.getLocked(h, key, now)
	var iflags uint8
	if o.KeyBinary {
		iflags = slab.ItemKeyBinary
	}
	newCAS := uint64(0)
	if o.SetCAS {
		newCAS = o.CASValue
	}

	if old == 0 {
		switch mode {
		case ModeCAS:
			s.st.casMisses++
			return NotFound, 0
		case ModeReplace, ModeAppend, ModePrepend:
			return NotStored, 0
		}
		return s.storeNewLocked(h, key, flags, exp, now, value, nil, iflags, newCAS)
	}

	switch mode {
	case ModeAdd:
		s.touchLRULocked(old, now)
		return NotStored, 0
	case ModeCAS:
		oldCAS := s.items.CAS(old)
		if cas != 0 && cas < oldCAS && o.Stale {
			// memcached's CAS_STALE: an older writer's value, kept as
			// stale until someone wins the token to recache it.
			s.st.casHits++
			s.alloc.ClassStats(old).CasHits++
			iflags |= slab.ItemStale | s.items.IFlags(old)&slab.ItemTokenSent
			return s.storeNewLocked(h, key, flags, s.items.Exptime(old), now, value, nil, iflags, newCAS)
		}
		if cas != oldCAS {
			s.st.casBadval++
			s.alloc.ClassStats(old).CasBadval++
			return Exists, 0
		}
		s.st.casHits++
		s.alloc.ClassStats(old).CasHits++
		return s.storeNewLocked(h, key, flags, exp, now, value, nil, iflags, newCAS)
	case ModeSet, ModeReplace:
		return s.storeNewLocked(h, key, flags, exp, now, value, nil, iflags, newCAS)
	case ModeAppend, ModePrepend:
		if cas != 0 && cas != s.items.CAS(old) {
			return Exists, 0
		}
		oldVal := s.items.Value(old)
		if e.tooLarge(len(key) + len(oldVal) + len(value)) {
			// memcached answers NOT_STORED here (its allocation fails);
			// MemCachier's limit holds "also after append/prepend", so
			// the client hears the same too-large answer as for a set.
			return TooLarge, 0
		}
		// memcached builds the joined item afresh: no binary-key mark.
		iflags &^= slab.ItemKeyBinary
		// Keep the old value across the allocation, which may evict it.
		s.scratch = append(s.scratch[:0], oldVal...)
		oflags, oexp := s.items.Flags(old), s.items.Exptime(old)
		if mode == ModeAppend {
			return s.storeNewLocked(h, key, oflags, oexp, now, s.scratch, value, iflags, newCAS)
		}
		return s.storeNewLocked(h, key, oflags, oexp, now, value, s.scratch, iflags, newCAS)
	}
	return NotStored, 0
}

// storeNewLocked allocates an item holding first+second, with the state
// bits iflags and CAS value cas (0: a fresh one), replaces any item with
// the same key, and links it. A failed allocation on a set drops the old
// item too, so that a stale value does not outlive a write that was
// acknowledged as failed (memcached does the same). key, first and second
// are copied after the allocation, which may evict or move items: they
// must not alias item memory (append and prepend copy the old value into
// s.scratch first).
func (s *stripe) storeNewLocked(h uint64, key []byte, flags, exp, now uint32, first, second []byte, iflags uint8, cas uint64) (Status, uint64) {
	n := len(first) + len(second)
	it := s.alloc.Alloc(slab.SegItemSize(len(key), n, flags), exp, now)
	if it == 0 {
		if old := s.findLocked(h, key); old != 0 {
			s.removeLocked(old)
		}
		s.st.storeNoMemory++
		return NoMemory, 0
	}
	s.items.Init(it, key, n, flags, exp, now)
	v := s.items.Value(it)
	copy(v, first)
	copy(v[len(first):], second)
	if cas == 0 {
		cas = s.nextCASLocked()
	}
	s.items.SetCAS(it, cas)
	if iflags != 0 {
		s.items.SetIFlags(it, iflags)
	}
	// The allocation may have evicted the old item; look it up again.
	if old := s.findLocked(h, key); old != 0 {
		s.removeLocked(old)
	}
	s.linkLocked(h, it)
	return Stored, cas
}

// DeltaOptions describe an incr or decr (Delta, MetaDelta).
type DeltaOptions struct {
	Incr  bool   // add Delta (incr); false takes it away (decr)
	Delta uint64 // the amount
	// CAS, when not 0, must equal the item's CAS value, else Exists.
	CAS uint64
	// Create makes a missing key an item holding Initial that expires at
	// Exptime (a client exptime; 0: never): the binary protocol's incr and
	// decr with an expiration other than 0xffffffff, and ma's N.
	Create  bool
	Initial uint64
	Exptime int64
	// ParseValue reads the item's value as a number, refusing what is not
	// one: the protocol's parser (codec.SafeStrtoull), since memcached reads
	// the value with the same safe_strtoull as a command line's numbers.
	// The engine keeps no number syntax of its own. Required.
	ParseValue func([]byte) (uint64, bool)
}

// DeltaResult is what Delta reports besides its Status.
type DeltaResult struct {
	Value uint64 // the new value (Initial when the item was created)
	CAS   uint64 // the item's new CAS value
}

// Delta runs an incr or decr: 64-bit unsigned, wrapping on incr, stopping
// at 0 on decr. It returns OK and the new value, or why not: NotFound,
// Exists (a CAS mismatch), NonNumeric, or NoMemory when the new number
// needs a larger item that cannot be allocated.
func (e *Engine) Delta(key []byte, o DeltaOptions) (Status, DeltaResult) {
	s, h, now := e.lockKey(key)
	defer s.mu.Unlock()
	st, res, _ := s.deltaLocked(h, key, s.getLocked(h, key, now), now, &o)
	return st, res
}

// deltaLocked runs Delta on it, key's live item as getLocked found it (0:
// none). On OK it also returns the item, which the caller may go on
// reading while it holds the lock: it itself, or the item that replaced it
// when the new number did not fit in place, or the one created.
func (s *stripe) deltaLocked(h uint64, key []byte, it slab.Handle, now uint32, o *DeltaOptions) (Status, DeltaResult, slab.Handle) {
	e := s.e
	if it == 0 {
		if o.Create {
			var buf [20]byte
			digits := strconv.AppendUint(buf[:0], o.Initial, 10)
			st, newCAS := s.storeNewLocked(h, key, 0, e.clock.RelTime(o.Exptime), now, digits, nil, 0, 0)
			if st != Stored {
				return st, DeltaResult{}, 0
			}
			return OK, DeltaResult{Value: o.Initial, CAS: newCAS}, s.findLocked(h, key)
		}
		if o.Incr {
			s.st.incrMisses++
		} else {
			s.st.decrMisses++
		}
		return NotFound, DeltaResult{}, 0
	}
	v := s.items.Value(it)
	// memcached's order: an empty value is not a number, nor is one it
	// keeps in chunks, before the CAS check; the digits are read after it.
	if len(v) == 0 || s.chunkedInMemcachedLocked(it) {
		return NonNumeric, DeltaResult{}, 0
	}
	if o.CAS != 0 && s.items.CAS(it) != o.CAS {
		return Exists, DeltaResult{}, 0
	}
	// memcached's safe_strtoull on the item's data, a C string that
	// "\r\n" follows: running off the value's end is white space.
	cur, ok := o.ParseValue(v)
	if !ok {
		return NonNumeric, DeltaResult{}, 0
	}
	if o.Incr {
		cur += o.Delta
		s.st.incrHits++
		s.alloc.ClassStats(it).IncrHits++
	} else {
		if o.Delta > cur {
			cur = 0
		} else {
			cur -= o.Delta
		}
		s.st.decrHits++
		s.alloc.ClassStats(it).DecrHits++
	}
	var buf [20]byte
	digits := strconv.AppendUint(buf[:0], cur, 10)
	if len(digits) <= len(v) {
		// In place, padded with spaces as memcached does: the length of
		// the value does not change.
		copy(v, digits)
		for i := len(digits); i < len(v); i++ {
			v[i] = ' '
		}
		newCAS := s.nextCASLocked()
		s.items.SetCAS(it, newCAS)
		s.touchLRULocked(it, now)
		return OK, DeltaResult{Value: cur, CAS: newCAS}, it
	}
	// As memcached's do_add_delta, the new item keeps only the fetched
	// mark: not the meta protocol's stale, token or binary-key bits.
	keep := s.items.IFlags(it) & slab.ItemFetched
	st, newCAS := s.storeNewLocked(h, key, s.items.Flags(it), s.items.Exptime(it), now, digits, nil, keep, 0)
	if st != Stored {
		return st, DeltaResult{}, 0
	}
	return OK, DeltaResult{Value: cur, CAS: newCAS}, s.findLocked(h, key)
}

// FlushAll invalidates every item now (delay <= 0) or, with a delay, every
// item stored before the delay runs out, as memcached's flush_all does.
func (e *Engine) FlushAll(delay int64) {
	now := e.clock.Now()
	var newOldest uint32
	if delay > 0 {
		newOldest = e.clock.RelTime(delay)
	} else {
		newOldest = now
	}
	ol := newOldest - 1
	e.oldestLive.Store(ol)
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		if i == 0 {
			s.st.cmdFlush++ // once for the engine, as CountFlush does
		}
		if ol <= now {
			s.oldestCAS = s.nextCASLocked()
		}
		s.mu.Unlock()
	}
}

// CountFlush counts a flush_all in cmd_flush, once for the engine (in the
// first stripe's counters): FlushAll counts itself; a flush_all refused for
// its delay is counted here alone, as memcached counts it before it reads
// the delay.
func (e *Engine) CountFlush() {
	s := &e.stripes[0]
	s.mu.Lock()
	s.st.cmdFlush++
	s.mu.Unlock()
}

// chunkedInMemcachedLocked reports whether memcached would keep the item in
// chunks: when its whole size (a 48-byte header, the key and a NUL, 4
// bytes of client flags unless they are 0, the value and its "\r\n", the
// 8-byte CAS) exceeds its largest slab chunk: half of its 1 MiB slab page
// whatever -I says, and no more than -I (the rule codec's saslTooLarge
// follows too). memcached's incr and decr refuse such an item as
// non-numeric, before they compare the CAS.
func (s *stripe) chunkedInMemcachedLocked(it slab.Handle) bool {
	n := 48 + len(s.items.Key(it)) + 1 + len(s.items.Value(it)) + 2 + 8
	if s.items.Flags(it) != 0 {
		n += 4
	}
	return n > min(memcachedChunkMax, s.e.cfg.MaxItemSize)
}

// memcachedChunkMax is memcached's largest slab chunk (slab_chunk_size_max).
const memcachedChunkMax = 512 << 10
