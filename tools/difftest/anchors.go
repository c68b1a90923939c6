package difftest

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// Dead items: what makes get_expired, get_flushed, curr_items, reclaimed
// and expired_unfetched comparable.
//
// The test runs memcached with -o no_lru_crawler,no_lru_maintainer and
// memhive with --crawl-interval 0, so neither frees an expired or flushed
// item in the background: a command that looks the item up frees it and
// counts it in get_expired or get_flushed, and until then it counts in
// curr_items. One reclaim remains in memcached: without the LRU maintainer
// its LRU is flat, and every allocation in a slab class first walks up to
// five items from the tail of that class's LRU, unlinking the expired and
// flushed ones it meets (counted in reclaimed and expired_unfetched) and
// stopping at the first live one (do_item_alloc_pull and lru_pull_tail in
// items.c; seen by experiment: "set a 0 -1 1" then "set b 0 0 1" leaves
// curr_items 1, reclaimed 1). memhive has no such reclaim (its reclaimed
// is always 0), so the generator keeps every tail live:
//
//   - Before any other request, one anchor per memcached slab class is
//     stored: a live item (no expiry) under a key of its own that no other
//     request touches, so it stays the least recently used item of its
//     class, and the walk stops at it. (A flat LRU bumps an item only when
//     it is fetched, and at most once a minute.)
//   - The walk skips an item whose item lock it cannot take. The allocating
//     thread holds the lock of the key it appends to or increments, and
//     batches run one at a time, so no other lock is held: anchors' keys
//     are chosen so that their item locks (murmur3 of the key, modulo
//     1024 locks with -t 2) are none of the generator's keys' locks.
//   - A flush kills the anchors too. Every request that flushes is followed
//     at once by a sweep: a quiet lookup of every key that may hold an item
//     (each frees its flushed item and counts it in get_flushed on both
//     servers), then the anchors are stored again, into empty classes.
//   - Expiry times never race the clock (see expiry): items are dead from
//     the start (a negative or past expiry) or outlive the run.

// mcClassSizes are memcached 1.6.18's slab class chunk sizes with the
// test's settings (-m 1024 -t 2, default -f 1.25 -n 48, 1 MiB pages and
// slab_chunk_max 512 KiB), as "memcached -vv" prints them. An item of n
// bytes (mcItemSize) goes to the first class of at least n bytes; larger
// ones are made of chunks of the last class, and the last chunk of a
// smaller one.
var mcClassSizes = []int{
	96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856,
	2320, 2904, 3632, 4544, 5680, 7104, 8880, 11104, 13880, 17352, 21696,
	27120, 33904, 42384, 52984, 66232, 82792, 103496, 129376, 161720,
	202152, 252696, 315872, 394840, 524288,
}

// mcItemSize is the size of memcached's item for a key and value with
// client flags 0: see mcMaxKV.
func mcItemSize(key, value int) int { return 48 + 8 + key + 1 + value + 2 }

// mcItemLocks is the number of memcached's item locks with -t 2
// (memcached_thread_init in thread.c: 2^10 below 3 threads).
const mcItemLocks = 1 << 10

// anchor is a key stored to stay at the tail of one memcached slab class,
// with the value length that puts its item in that class.
type anchor struct {
	key string
	n   int
}

// makeAnchors returns one anchor per slab class, each as large as its
// class allows, with keys whose item locks differ from those of keys.
func makeAnchors(keys []string) []anchor {
	taken := map[uint32]bool{}
	for _, k := range keys {
		taken[murmur3([]byte(k))%mcItemLocks] = true
	}
	var out []anchor
	for c, size := range mcClassSizes {
		for i := 0; ; i++ {
			k := "anchor" + strconv.Itoa(c+1) + "-" + strconv.Itoa(i)
			if !taken[murmur3([]byte(k))%mcItemLocks] {
				out = append(out, anchor{k, size - mcItemSize(len(k), 0)})
				break
			}
		}
	}
	return out
}

// murmur3 is MurmurHash3_x86_32 with seed 0, memcached 1.6.18's default
// hash (murmur3_hash.c).
func murmur3(key []byte) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	var h uint32
	n := len(key)
	for ; len(key) >= 4; key = key[4:] {
		k := binary.LittleEndian.Uint32(key)
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	var k uint32
	switch len(key) {
	case 3:
		k ^= uint32(key[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(key[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(key[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// sweepKeys are the keys a sweep looks up: every key a request may store
// under, the anchors included.
func (g *Generator) sweepKeys() []string {
	out := append([]string(nil), g.keys...)
	out = append(out, statsProbe)
	for _, a := range g.anchors {
		out = append(out, a.key)
	}
	return out
}

// sweepText appends a sweep (see above) to a text request: "mg <key> q"
// for every key (a miss answers nothing), then the anchors with noreply.
func (g *Generator) sweepText(t *tb) {
	for _, k := range g.sweepKeys() {
		t.raw([]byte("mg " + k + " q\r\n"))
	}
	g.anchorsText(t)
}

// anchorsText appends "set <anchor> 0 0 <n> noreply" for every anchor.
func (g *Generator) anchorsText(t *tb) {
	for _, a := range g.anchors {
		t.raw([]byte("set " + a.key + " 0 0 " + strconv.Itoa(a.n) + " noreply\r\n"))
		t.raw(filler('A', a.n)).raw([]byte("\r\n"))
	}
}

// sweepBinary appends a sweep to a binary request: GETQ for every key,
// SETQ for every anchor (both answer nothing when all goes well).
func (g *Generator) sweepBinary(b *Batch, p *bb) {
	for _, k := range g.sweepKeys() {
		p.packet(b, opGetQ, k, nil, nil, nil)
	}
	for _, a := range g.anchors {
		p.packet(b, opSetQ, a.key, make([]byte, 8), filler('A', a.n), nil)
	}
}
