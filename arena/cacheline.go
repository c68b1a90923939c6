package arena

import "github.com/klauspost/cpuid/v2"

// defaultCacheLine is assumed when cpuid cannot tell: it is the line size of
// every current x86-64 and most arm64 cores.
const defaultCacheLine = 64

// cacheLine is computed once; cpuid probes the CPU in its own init.
var cacheLine = validCacheLine(cpuid.CPU.CacheLine)

// CacheLineSize is the CPU's cache-line size in bytes as reported by cpuid
// (64 when unknown). slab rounds chunk sizes to it so that no two items share
// a line. It is always a power of two of at least 32.
func CacheLineSize() int { return cacheLine }

// validCacheLine rejects sizes that cannot be a real line (hypervisors and
// odd CPUs report 0 or garbage) rather than let slab build classes on them.
func validCacheLine(n int) int {
	if n < 32 || n > 1024 || n&(n-1) != 0 {
		return defaultCacheLine
	}
	return n
}
