package arena

// Words are arrays of uint32 for indexes over item memory (the engine's
// hash buckets). Large ones live outside the Go heap, as items do, for the
// same reason: a cache of ten million items keeps a bucket array of tens
// of megabytes alive for hours, which on the heap would count towards
// GOGC's target (the heap may grow to twice the live data before the next
// collection) and, each time the array doubles, leave the old one as
// garbage until a collection and the scavenger return it. Unmapped, a
// replaced array's memory goes back to the kernel at once.
//
// Small arrays stay on the heap: every mapping is an entry in the
// process's map table, which the kernel bounds (vm.max_map_count, 65,530
// by default), and a server of thousands of small caches, each with
// several stripes, must not run into that bound for arrays whose memory
// hardly matters.

// mapWordsMin is the smallest array MapWords maps: 64 KiB.
const mapWordsMin = 16 << 10

// FreeWords releases an array made by MapWords; the array must not be
// used afterwards. Arrays MapWords left on the heap are simply dropped.
func FreeWords(w []uint32) error {
	if cap(w) < mapWordsMin {
		return nil
	}
	return freeMappedWords(w)
}
