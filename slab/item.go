package slab

import "unsafe"

// Handle names one chunk of item memory: its byte offset in the arena
// divided by ChunkAlign, plus one, so that the zero Handle means "none".
// Handles are plain integers: the garbage collector never follows them.
type Handle uint32

// ChunkAlign is the alignment of every chunk; chunk sizes are multiples of
// the cache line, which is itself a multiple of this.
const ChunkAlign = 32

// HeaderSize is the size of an item's header; the key follows it, then the
// value.
//
// Layout (little-endian, offsets in bytes):
//
//	 0 hnext   uint32  next item in the engine's hash chain (a Handle)
//	 4 prev    uint32  LRU neighbour towards the head (a Handle)
//	 8 next    uint32  LRU neighbour towards the tail (a Handle)
//	12 exptime uint32  expiry in server-relative seconds, 0 never
//	16 atime   uint32  last store or bump, server-relative seconds
//	20 flags   uint32  the client's opaque flags
//	24 cas     uint64  CAS unique value
//	32 nbytes  uint32  value length
//	36 nkey    uint8   key length
//	37 class   uint8   size class id
//	38 iflags  uint8   ItemLinked, ItemFetched, and the meta protocol's bits
//	39         uint8   unused
//
// No field names the owning cache: each cache's Engine has its own index
// and allocators, so an item's cache is known from where it is found.
const HeaderSize = 40

const (
	offHNext   = 0
	offPrev    = 4
	offNext    = 8
	offExptime = 12
	offAtime   = 16
	offFlags   = 20
	offCAS     = 24
	offNBytes  = 32
	offNKey    = 36
	offClass   = 37
	offIFlags  = 38
)

// Item state bits kept in the header's iflags byte.
const (
	ItemLinked  = 1 << 0 // in the hash index and an LRU list
	ItemFetched = 1 << 1 // read at least once since it was stored
	// The meta protocol's: marked stale by an invalidation (md I, ms I), a
	// recache token handed out (mg W), and a key stored base64-encoded
	// (b), which replies encode again.
	ItemStale     = 1 << 2
	ItemTokenSent = 1 << 3
	ItemKeyBinary = 1 << 4
)

// ItemSize is the number of bytes an item with the given key and value
// lengths occupies before rounding up to its chunk size.
func ItemSize(nkey, nbytes int) int { return HeaderSize + nkey + nbytes }

// Items gives typed access to item headers, keys and values in arena
// memory. It holds no state of its own beyond the memory it points at, so
// copies are cheap; it is not synchronised: the caller holds the lock that
// guards the items it touches.
type Items struct {
	base unsafe.Pointer
	mem  []byte
}

// NewItems wraps arena memory. mem must stay mapped while Items is used.
func NewItems(mem []byte) Items {
	if len(mem) == 0 {
		return Items{}
	}
	return Items{base: unsafe.Pointer(&mem[0]), mem: mem}
}

// Offset is the byte offset of h's chunk in arena memory.
func Offset(h Handle) int { return int(h-1) * ChunkAlign }

// HandleAt is the Handle of the chunk starting at byte offset off.
func HandleAt(off int) Handle { return Handle(off/ChunkAlign + 1) }

func (m Items) u32(h Handle, off int) *uint32 {
	return (*uint32)(unsafe.Add(m.base, Offset(h)+off))
}

func (m Items) u8(h Handle, off int) *uint8 {
	return (*uint8)(unsafe.Add(m.base, Offset(h)+off))
}

// HNext is the next item in h's hash chain.
func (m Items) HNext(h Handle) Handle { return Handle(*m.u32(h, offHNext)) }

// SetHNext links h to next in its hash chain.
func (m Items) SetHNext(h, next Handle) { *m.u32(h, offHNext) = uint32(next) }

// Exptime is h's expiry in server-relative seconds (0: never).
func (m Items) Exptime(h Handle) uint32 { return *m.u32(h, offExptime) }

// SetExptime sets h's expiry.
func (m Items) SetExptime(h Handle, t uint32) { *m.u32(h, offExptime) = t }

// Atime is when h was last stored or bumped in the LRU.
func (m Items) Atime(h Handle) uint32 { return *m.u32(h, offAtime) }

// SetAtime sets h's last-access time.
func (m Items) SetAtime(h Handle, t uint32) { *m.u32(h, offAtime) = t }

// Flags is h's client flags.
func (m Items) Flags(h Handle) uint32 { return *m.u32(h, offFlags) }

// SetFlags sets h's client flags.
func (m Items) SetFlags(h Handle, f uint32) { *m.u32(h, offFlags) = f }

// CAS is h's CAS unique value.
func (m Items) CAS(h Handle) uint64 { return *(*uint64)(unsafe.Add(m.base, Offset(h)+offCAS)) }

// SetCAS sets h's CAS unique value.
func (m Items) SetCAS(h Handle, c uint64) { *(*uint64)(unsafe.Add(m.base, Offset(h)+offCAS)) = c }

// Class is h's size class.
func (m Items) Class(h Handle) int { return int(*m.u8(h, offClass)) }

// IFlags is h's state bits (ItemLinked, ItemFetched, ...).
func (m Items) IFlags(h Handle) uint8 { return *m.u8(h, offIFlags) }

// SetIFlags replaces h's state bits.
func (m Items) SetIFlags(h Handle, f uint8) { *m.u8(h, offIFlags) = f }

// Key is h's key. The slice aliases arena memory: it is valid while the
// caller holds the lock guarding h and h stays allocated.
func (m Items) Key(h Handle) []byte {
	off := Offset(h)
	n := int(m.mem[off+offNKey])
	return m.mem[off+HeaderSize : off+HeaderSize+n : off+HeaderSize+n]
}

// Value is h's value, aliasing arena memory like Key.
func (m Items) Value(h Handle) []byte {
	off := Offset(h)
	start := off + HeaderSize + int(m.mem[off+offNKey])
	n := int(*m.u32(h, offNBytes))
	return m.mem[start : start+n : start+n]
}

// Init writes a fresh header for h and copies key into it; the value area
// (nbytes long) is left for the caller to fill through Value.
func (m Items) Init(h Handle, key []byte, nbytes int, flags, exptime, now uint32) {
	off := Offset(h)
	class := m.mem[off+offClass] // set by Alloc, kept
	hdr := m.mem[off : off+HeaderSize]
	clear(hdr)
	hdr[offClass] = class
	*m.u32(h, offExptime) = exptime
	*m.u32(h, offAtime) = now
	*m.u32(h, offFlags) = flags
	*m.u32(h, offNBytes) = uint32(nbytes)
	hdr[offNKey] = uint8(len(key))
	copy(m.mem[off+HeaderSize:], key)
}
