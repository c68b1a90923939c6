package tenancy

import (
	"cmp"
	"encoding/binary"
	"iter"
	"math"
	"slices"

	"github.com/memhive/memhive/engine"
)

// The graceful handover: a node leaving the cluster (SIGTERM) first sends
// each of its items to the node that owns the item's key once it has
// gone, so that a rolling restart costs no misses. This file plans it
// (which item goes where) and encodes each item as the request that
// stores it there; the server carries the requests over its peer
// connections. It lives in tenancy because the plan is a question about
// the caches this node serves and who owns their keys (Owners); the wire
// format is a dozen bytes of header, written here rather than by
// importing codec, which tenancy does not depend on (DESIGN.md's layout):
// the tests check every request against codec's parser.

// Handoff is one item on its way to its new owner, as HandOver yields it.
// Item's Key and Value point into a buffer the walk reuses: they are
// valid until the yield returns (append the request to an output buffer
// with AppendHandoff before then).
type Handoff struct {
	Cache uint32 // the cache the item belongs to
	Owner Node   // the node that owns the key once this one has left
	Item  engine.ExportedItem
}

// HandOver yields every live item of caches (in the order given, each
// cache's items in no particular order) with its owner under after: the
// cluster's owners as they are without this node, which the caller
// builds (Owners.Set with the other live nodes). Items after says this
// node owns are not yielded, so that with no other node left (the last
// node stopping) there is nothing to hand over.
//
// The caches keep serving meanwhile: see engine.Export for what a walk
// sees of concurrent writes. No lock is held while the loop body runs, so
// it may block on a peer's connection (flow control) without stalling
// any request. Breaking out of the loop ends the walk.
func HandOver(after *Owners, caches []*Cache) iter.Seq[Handoff] {
	return func(yield func(Handoff) bool) {
		for _, c := range caches {
			eng := c.Engine()
			if eng == nil {
				continue
			}
			h := Handoff{Cache: c.ID()}
			if !eng.Export(func(it engine.ExportedItem) bool {
				owner, self := after.Owner(h.Cache, it.Key)
				if self {
					return true
				}
				h.Owner, h.Item = owner, it
				return yield(h)
			}) {
				return
			}
		}
	}
}

// Caches lists the caches served, in id order: what a leaving node hands
// over, in an order that its log and a test can follow.
func (t *Tenants) Caches() []*Cache {
	t.mu.RLock()
	caches := make([]*Cache, 0, len(t.byID))
	for _, c := range t.byID {
		caches = append(caches, c)
	}
	t.mu.RUnlock()
	slices.SortFunc(caches, func(a, b *Cache) int { return cmp.Compare(a.id, b.id) })
	return caches
}

// The binary protocol's request header and the opcodes a handover uses
// (protocol_binary.h; codec names them OpAdd and OpAddQ).
const (
	binMagicRequest = 0x80
	binOpAdd        = 0x02
	binOpAddQ       = 0x12
	binHeaderLen    = 24
	binStoreExtras  = 8 // flags, expiry
)

// maxRelativeExptime is the largest exptime memcached reads as seconds
// from now (30 days); a larger one is an absolute unix time.
const maxRelativeExptime = 60 * 60 * 24 * 30

// AppendHandoff appends to dst the binary-protocol request that stores it
// on its new owner, with its key, value and flags exactly, and its expiry
// as memcached reads one (HandoffExptime); now is the unix time the
// request is built at (the engine's Clock().Unix()). It returns dst
// unchanged and false when the item has expired by now.
//
// The request is an ADD (ADDQ when quiet: the owner then answers only a
// failure), never a SET: while this node was leaving, the key's new
// owner already served its clients, so it may hold a newer value of the
// key, written through forwarding after this node's copy was taken; ADD
// stores the handed-over value only where the key is missing, so an older
// value never overwrites a newer one. The header's CAS is 0 (store
// unconditionally) and the owner issues the item a CAS of its own;
// opaque is echoed in the owner's reply, for matching it to the request.
// An owner that already holds the key answers "key exists" (status 0x02),
// even to ADDQ: the expected outcome when it holds a newer value, not a
// failure to count as one.
//
// What ADD cannot tell apart: a key deleted on its new owner after this
// node's copy was taken and before the copy arrives is missing there, so
// the copy stores the old value again. The window is the handover's
// length; the copy then lives no longer than the item would have here.
func AppendHandoff(dst []byte, it *engine.ExportedItem, now int64, quiet bool, opaque uint32) ([]byte, bool) {
	exptime, live := HandoffExptime(it.Expires, now)
	if !live {
		return dst, false
	}
	op := byte(binOpAdd)
	if quiet {
		op = binOpAddQ
	}
	body := binStoreExtras + len(it.Key) + len(it.Value)
	dst = append(dst, binMagicRequest, op)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(it.Key)))
	dst = append(dst, binStoreExtras, 0, 0, 0) // extras length, data type, vbucket
	dst = binary.BigEndian.AppendUint32(dst, uint32(body))
	dst = binary.BigEndian.AppendUint32(dst, opaque)
	dst = binary.BigEndian.AppendUint64(dst, 0) // CAS
	dst = binary.BigEndian.AppendUint32(dst, it.Flags)
	dst = binary.BigEndian.AppendUint32(dst, exptime)
	dst = append(dst, it.Key...)
	return append(dst, it.Value...), true
}

// HandoffExptime is the expiry field that makes the new owner expire an
// item when this node would have: expires is its end in unix seconds (0:
// never), now the current unix time. Up to 30 days ahead it is the
// seconds left, which memcached reads as relative: that keeps the item's
// remaining life whatever the difference between the two nodes' clocks.
// Further ahead it must be the absolute time (memcached reads anything
// over 30 days so), capped at the field's largest value (in 2106). live
// is false when the item has expired by now: a relative 0 would mean
// "never", and the item is not worth sending.
func HandoffExptime(expires, now int64) (exptime uint32, live bool) {
	if expires == 0 {
		return 0, true
	}
	left := expires - now
	switch {
	case left <= 0:
		return 0, false
	case left <= maxRelativeExptime:
		return uint32(left), true
	default:
		return uint32(min(expires, math.MaxUint32)), true
	}
}
