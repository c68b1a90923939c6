package bench

import (
	"math"
	"math/rand/v2"
)

// Zipf draws ranks 0..n-1 of a key space, rank r with probability
// proportional to 1/(r+1)^s, for any exponent s > 0. math/rand's Zipf
// wants s > 1, but the skew measured in production caches is often below
// 1 (about 0.9), where the tail holds much of the traffic and a cache's
// choice of what to keep shows in its hit ratio.
//
// A Zipf holds the cumulative distribution, 8 bytes per rank, computed
// once by NewZipf; it is read-only afterwards, so any number of goroutines
// may draw from one Zipf, each with its own *rand.Rand.
type Zipf struct {
	cdf []float64 // cdf[r]: probability of a rank <= r; the last is exactly 1
}

// NewZipf returns the distribution of exponent s over n ranks (n >= 1,
// s > 0).
func NewZipf(n int, s float64) *Zipf {
	n = max(n, 1)
	cdf := make([]float64, n)
	var sum float64
	for r := range cdf {
		sum += math.Pow(float64(r+1), -s)
		cdf[r] = sum
	}
	for r := range cdf {
		cdf[r] /= sum
	}
	// Rounding must not leave a uniform draw above the last entry.
	cdf[n-1] = 1
	return &Zipf{cdf: cdf}
}

// N is the number of ranks.
func (z *Zipf) N() int { return len(z.cdf) }

// Rank draws a rank with rng: by inversion, the first rank whose
// cumulative probability exceeds a uniform draw in [0, 1), found by binary
// search (17 steps for 128k ranks). It allocates nothing, and the ranks a
// given rng state yields are always the same.
func (z *Zipf) Rank(rng *rand.Rand) int {
	u := rng.Float64()
	lo, hi := 0, len(z.cdf)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if z.cdf[mid] > u {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// ValueSize is the size of key k's value, in lo..hi bytes. It is fixed per
// key, as a database row's is, so that every set of a key, by any
// connection, stores the same size; and it is spread uniformly over the
// range by a hash of k, so that a key's rank (its popularity) says nothing
// about its size.
func ValueSize(k, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + int(mix64(uint64(k))%uint64(hi-lo+1))
}

// mix64 is SplitMix64's finalizer: a bijection of 64-bit integers whose
// every output bit depends on every input bit.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// KeysForBytes is the smallest key count whose values (ValueSize(k, lo,
// hi) for k from 0) add up to at least bytes: the key space a workload
// needs to hold that much data.
func KeysForBytes(bytes int64, lo, hi int) int {
	var sum int64
	n := 0
	for sum < bytes {
		sum += int64(ValueSize(n, lo, hi))
		n++
	}
	return n
}
