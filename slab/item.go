package slab

// Handle names one item in arena memory: its byte offset divided by the
// store's alignment, plus one, so that the zero Handle means "none"
// (SegItems.Offset, SegItems.HandleAt). Handles are plain integers: the
// garbage collector never follows them.
type Handle uint32

// ChunkAlign is the alignment of the size classes' chunk sizes (Classes),
// which "stats slabs" reports; chunk sizes are multiples of the cache
// line, which is itself a multiple of this.
const ChunkAlign = 32

// HeaderSize is the header of the slab store memhive used before its
// segment store (memcached's own is 48 bytes). Items are still counted in
// the size classes by ItemSize, so that "stats slabs", "stats items" and
// the meta protocol's "me" report the classes they did, as memcached's
// count items by the class their size picks.
const HeaderSize = 40

// Item state bits, kept in the item header's iflags byte.
const (
	ItemLinked  = 1 << 0 // in the hash index
	ItemFetched = 1 << 1 // read at least once since it was stored
	// The meta protocol's: marked stale by an invalidation (md I, ms I), a
	// recache token handed out (mg W), and a key stored base64-encoded
	// (b), which replies encode again.
	ItemStale     = 1 << 2
	ItemTokenSent = 1 << 3
	ItemKeyBinary = 1 << 4
)

// ItemSize is the size by which an item with the given key and value
// lengths is counted in the size classes (see HeaderSize).
func ItemSize(nkey, nbytes int) int { return HeaderSize + nkey + nbytes }
