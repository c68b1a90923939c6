// Package arena holds memhive's item memory: one large region mapped with
// mmap outside the Go heap and split into equal pages that package slab
// carves into chunks.
//
// # Why off-heap
//
// A cache keeps gigabytes of small values alive for hours. On the Go heap
// every one of them would be scanned by each garbage collection and would
// count towards GOGC's target, so a 4 GiB cache would let the heap grow to
// about 8 GiB before the next cycle and spend its CPU marking bytes that
// never change. The arena's region comes from an anonymous private mmap:
// the collector neither scans it nor counts it, RSS grows only as pages are
// first written (MAP_NORESERVE, no swap reservation), and Release hands a
// page's memory back to the kernel when slab empties it.
//
// # Offsets, not pointers
//
// The collector does not know about the region, so a Go pointer into it
// would keep nothing alive and must never be the only reference to Go
// memory; equally, Go pointers must never be stored inside it. Everything
// refers to items by integer offsets: page i spans
// Mem()[i*PageSize() : (i+1)*PageSize()], and slab's item handles are
// offsets from the start of Mem. Integer handles also keep the index that
// engine builds over them free of pointers, so the collector skips it too.
// Slices of Mem are valid only until Close, which unmaps the region.
//
// # NUMA
//
// On machines whose sysfs shows several NUMA nodes, New spreads pages over
// the nodes round-robin with mbind(2), so that memory bandwidth and
// capacity of every node are used evenly; Node reports where a page went.
// On one node (the common case) nothing is bound.
//
// # Huge pages
//
// Items are read at random all over the region, so transparent huge pages
// save TLB misses. The region is not madvised MADV_HUGEPAGE, which would
// fault in 2 MiB at the first byte written there and charge every
// partly written segment up to 2 MiB of RSS. Instead CollapseWritten,
// called periodically (package engine does, five times a second),
// collapses the 2 MiB spans that are at least three quarters written, over
// pages all in use (MADV_COLLAPSE, Linux 6.1+).
//
// # Race builds
//
// Under the race detector (build tag race) the region is an ordinary heap
// slice with the same API, so that accesses to it are instrumented and
// -race runs work; it is not meant for production sizes.
package arena
