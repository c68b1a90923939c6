// Package bench is memhive's load generator, in the spirit of
// memtier_benchmark: many connections, pipelining, a set:get mix over a
// key space with a chosen distribution, the text and binary protocols
// (binary with SASL), latency percentiles from an HDR-style histogram, and
// a runner that measures memhive and memcached side by side.
package bench

import (
	"math"
	"math/bits"
)

// subBuckets is the linear resolution inside each power of two: values
// are recorded within 1/64 (1.6%) of their true value, the way an HDR
// histogram with two significant digits does.
const subBuckets = 64

// Histogram counts latencies in nanoseconds in log-linear buckets. It is
// not safe for concurrent use: each connection keeps its own and they are
// merged at the end.
type Histogram struct {
	counts [64 * subBuckets]uint64
	total  uint64
	max    int64
}

func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	exp := bits.Len64(uint64(v)) - 7 // v >> exp is in [64, 128)
	return (exp+1)*subBuckets + int(v>>exp) - subBuckets
}

// lowest is the smallest value that falls in bucket b.
func lowest(b int) int64 {
	if b < subBuckets {
		return int64(b)
	}
	exp := b/subBuckets - 1
	return int64(b%subBuckets+subBuckets) << exp
}

// Record counts one value.
func (h *Histogram) Record(ns int64) {
	h.counts[bucketOf(ns)]++
	h.total++
	if ns > h.max {
		h.max = ns
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest value recorded.
func (h *Histogram) Max() int64 { return h.max }

// Quantile returns the value below which a fraction q of the values fall
// (the lowest value of the bucket holding the q-th value).
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(lowest(b), h.max)
		}
	}
	return h.max
}
