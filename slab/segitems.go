package slab

import "encoding/binary"

// The segment store's item layout (issue 16). Items are packed back to
// back in segments (pages) with a compact header, instead of one per
// chunk of a size class with a fixed 40-byte header: no LRU links (a
// segment ages as a whole), no class byte (an item's class, which stats
// still report, follows from its size), client flags only when not zero,
// and a 3-byte value length unless the value is 16 MiB or more.
//
// Layout (little-endian, offsets in bytes from the item's start):
//
//	 0 hnext   uint32  next item in the engine's hash chain (a Handle)
//	 4 exptime uint32  expiry in server-relative seconds, 0 never
//	 8 atime   uint32  last store or access, server-relative seconds, in
//	                   the low 28 bits; the top 4 are the allocator's
//	                   read counter (segFreqShift)
//	12 cas     uint64  CAS unique value
//	20 nkey    uint8   key length
//	21 iflags  uint8   the state bits (ItemLinked ...) and two layout
//	                   bits; bit 5 is free
//	22 nbytes  uint24  value length; uint32 with segLongValue
//	   flags   uint32  client flags, with segHasFlags only
//	   key, then value
//
// A segment starts with segHeaderSize bytes of its own (the allocator's
// segment number), then its items, each starting at a multiple of the
// store's alignment (SegItems.Align), so that a uint32 Handle addresses
// the whole arena.
const (
	segOffHNext   = 0
	segOffExptime = 4
	segOffAtime   = 8
	segOffCAS     = 12
	segOffNKey    = 20
	segOffIFlags  = 21
	segOffNBytes  = 22

	// segBaseHeader is the header without client flags, with a 3-byte
	// value length.
	segBaseHeader = 25
	// segHeaderSize is a segment's own header at the start of its page.
	segHeaderSize = 8
)

// The layout bits kept in iflags beside the item state bits; IFlags and
// SetIFlags hide them.
const (
	segHasFlags  = 1 << 6 // a 4-byte client flags field follows nbytes
	segLongValue = 1 << 7 // nbytes is 4 bytes long
	segLayout    = segHasFlags | segLongValue
)

// The atime field's top bits hold the allocator's read counter, which a
// merge keeps items by (SegAllocator.Bump). Atime is seconds since the
// process started, so 28 bits last 8.5 years of uptime; Atime and
// SetAtime hide the counter, and a time past 28 bits wraps.
const (
	segFreqShift = 28
	segAtimeMask = 1<<segFreqShift - 1
	segFreqMax   = 1<<(32-segFreqShift) - 1
)

// maxShortValue is the largest value length a 3-byte field holds.
const maxShortValue = 1<<24 - 1

// SegItemSize is the bytes an item with these lengths and client flags
// occupies in a segment, before alignment.
func SegItemSize(nkey, nbytes int, flags uint32) int {
	return segHeaderLen(nbytes, flags) + nkey + nbytes
}

func segHeaderLen(nbytes int, flags uint32) int {
	n := segBaseHeader
	if nbytes > maxShortValue {
		n++
	}
	if flags != 0 {
		n += 4
	}
	return n
}

// SegItems gives typed access to items in segments: like Items, for the
// segment layout. A Handle h names the item at byte offset (h-1)<<shift
// of the arena. Not synchronised: the caller holds the lock guarding the
// items it touches.
type SegItems struct {
	mem   []byte
	shift uint
}

// NewSegItems wraps arena memory whose items are aligned to 1<<shift
// bytes. SegShift picks shift for an arena size.
func NewSegItems(mem []byte, shift uint) SegItems { return SegItems{mem: mem, shift: shift} }

// SegShift is the smallest alignment shift whose uint32 handles address
// an arena of size bytes: 0 (no padding at all) up to 4 GiB, 1 up to 8
// GiB, and so on.
func SegShift(size int) uint {
	var s uint
	for int64(size)>>s >= 1<<32-1 {
		s++
	}
	return s
}

// Align is the alignment of every item's start.
func (m SegItems) Align() int { return 1 << m.shift }

// Offset is the byte offset of h in arena memory.
func (m SegItems) Offset(h Handle) int { return int(h-1) << m.shift }

// HandleAt is the handle of the item at byte offset off, which must be
// aligned.
func (m SegItems) HandleAt(off int) Handle { return Handle(off>>m.shift + 1) }

// The fields are read and written through encoding/binary, never through
// *uint32 or *uint64: with no padding, an item's fields are unaligned, and
// the race build's pointer checks refuse misaligned pointers. The
// compiler turns each access into one load or store.

func (m SegItems) get32(h Handle, off int) uint32 {
	return binary.LittleEndian.Uint32(m.mem[m.Offset(h)+off:])
}

func (m SegItems) put32(h Handle, off int, v uint32) {
	binary.LittleEndian.PutUint32(m.mem[m.Offset(h)+off:], v)
}

// HNext is the next item in h's hash chain.
func (m SegItems) HNext(h Handle) Handle { return Handle(m.get32(h, segOffHNext)) }

// SetHNext links h to next in its hash chain.
func (m SegItems) SetHNext(h, next Handle) { m.put32(h, segOffHNext, uint32(next)) }

// Exptime is h's expiry in server-relative seconds (0: never).
func (m SegItems) Exptime(h Handle) uint32 { return m.get32(h, segOffExptime) }

// SetExptime sets h's expiry. The allocator must be told too
// (SegAllocator.Retimed), so that the segment's expiry covers it.
func (m SegItems) SetExptime(h Handle, t uint32) { m.put32(h, segOffExptime, t) }

// Atime is when h was last stored or read.
func (m SegItems) Atime(h Handle) uint32 { return m.get32(h, segOffAtime) & segAtimeMask }

// SetAtime sets h's last-access time, keeping its read counter.
func (m SegItems) SetAtime(h Handle, t uint32) {
	m.put32(h, segOffAtime, m.get32(h, segOffAtime)&^segAtimeMask|t&segAtimeMask)
}

// freq is h's read counter (SegAllocator.Bump), 0 to segFreqMax.
func (m SegItems) freq(h Handle) int { return int(m.get32(h, segOffAtime) >> segFreqShift) }

// setFreq sets h's read counter to f (0 to segFreqMax), keeping its
// atime.
func (m SegItems) setFreq(h Handle, f int) {
	m.put32(h, segOffAtime, m.get32(h, segOffAtime)&segAtimeMask|uint32(f)<<segFreqShift)
}

// CAS is h's CAS unique value.
func (m SegItems) CAS(h Handle) uint64 {
	return binary.LittleEndian.Uint64(m.mem[m.Offset(h)+segOffCAS:])
}

// SetCAS sets h's CAS unique value.
func (m SegItems) SetCAS(h Handle, c uint64) {
	binary.LittleEndian.PutUint64(m.mem[m.Offset(h)+segOffCAS:], c)
}

// IFlags is h's state bits (ItemLinked, ItemFetched, ...).
func (m SegItems) IFlags(h Handle) uint8 { return m.mem[m.Offset(h)+segOffIFlags] &^ segLayout }

// SetIFlags replaces h's state bits, keeping its layout bits.
func (m SegItems) SetIFlags(h Handle, f uint8) {
	p := &m.mem[m.Offset(h)+segOffIFlags]
	*p = *p&segLayout | f&^segLayout
}

// Flags is h's client flags.
func (m SegItems) Flags(h Handle) uint32 {
	fl := m.mem[m.Offset(h)+segOffIFlags]
	if fl&segHasFlags == 0 {
		return 0
	}
	at := segBaseHeader
	if fl&segLongValue != 0 {
		at++
	}
	return m.get32(h, at)
}

// header returns h's header length and value length.
func (m SegItems) header(h Handle) (hdr, nbytes int) {
	off := m.Offset(h)
	fl := m.mem[off+segOffIFlags]
	b := m.mem[off+segOffNBytes:]
	hdr = segBaseHeader
	if fl&segLongValue != 0 {
		nbytes = int(binary.LittleEndian.Uint32(b))
		hdr++
	} else {
		nbytes = int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	}
	if fl&segHasFlags != 0 {
		hdr += 4
	}
	return hdr, nbytes
}

// Key is h's key. The slice aliases arena memory: it is valid while the
// caller holds the lock guarding h and h stays where it is.
func (m SegItems) Key(h Handle) []byte {
	off := m.Offset(h)
	hdr, _ := m.header(h)
	n := int(m.mem[off+segOffNKey])
	return m.mem[off+hdr : off+hdr+n : off+hdr+n]
}

// Value is h's value, aliasing arena memory like Key.
func (m SegItems) Value(h Handle) []byte {
	off := m.Offset(h)
	hdr, n := m.header(h)
	start := off + hdr + int(m.mem[off+segOffNKey])
	return m.mem[start : start+n : start+n]
}

// Size is the bytes h occupies, before alignment: SegItemSize of its
// lengths and flags.
func (m SegItems) Size(h Handle) int {
	hdr, n := m.header(h)
	return hdr + int(m.mem[m.Offset(h)+segOffNKey]) + n
}

// Init writes a fresh header for h, which SegAllocator.Alloc returned for
// SegItemSize(len(key), nbytes, flags) bytes, and copies key into it; the
// value area (nbytes long) is left for the caller to fill through Value.
// The state bits and the read counter start clear.
func (m SegItems) Init(h Handle, key []byte, nbytes int, flags, exptime, now uint32) {
	off := m.Offset(h)
	hdr := m.mem[off : off+segHeaderLen(nbytes, flags)]
	binary.LittleEndian.PutUint32(hdr[segOffHNext:], 0)
	binary.LittleEndian.PutUint32(hdr[segOffExptime:], exptime)
	binary.LittleEndian.PutUint32(hdr[segOffAtime:], now&segAtimeMask)
	binary.LittleEndian.PutUint64(hdr[segOffCAS:], 0)
	hdr[segOffNKey] = uint8(len(key))
	var layout uint8
	at := segOffNBytes
	if nbytes > maxShortValue {
		layout |= segLongValue
		binary.LittleEndian.PutUint32(hdr[at:], uint32(nbytes))
		at += 4
	} else {
		hdr[at], hdr[at+1], hdr[at+2] = byte(nbytes), byte(nbytes>>8), byte(nbytes>>16)
		at += 3
	}
	if flags != 0 {
		layout |= segHasFlags
		binary.LittleEndian.PutUint32(hdr[at:], flags)
	}
	hdr[segOffIFlags] = layout
	copy(m.mem[off+len(hdr):], key)
}
