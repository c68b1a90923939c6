package bench

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestZipfDeterministic: the same seed draws the same ranks, another seed
// others.
func TestZipfDeterministic(t *testing.T) {
	z := NewZipf(100_000, 0.9)
	draw := func(seed uint64) []int {
		rng := rand.New(rand.NewPCG(seed, 7))
		ranks := make([]int, 1000)
		for i := range ranks {
			ranks[i] = z.Rank(rng)
		}
		return ranks
	}
	a, b, c := draw(1), draw(1), draw(2)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d: %d, then %d with the same seed", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same > len(a)/2 {
		t.Fatalf("seeds 1 and 2 agree on %d of %d draws", same, len(a))
	}
}

// TestZipfFrequencies: the first rank is the most frequent, and the first
// is 10^s times as frequent as the tenth.
func TestZipfFrequencies(t *testing.T) {
	const n, s, draws = 1000, 0.9, 1_000_000
	z := NewZipf(n, s)
	if z.N() != n {
		t.Fatalf("N() = %d, want %d", z.N(), n)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	counts := make([]int, n)
	for i := 0; i < draws; i++ {
		r := z.Rank(rng)
		if r < 0 || r >= n {
			t.Fatalf("rank %d out of 0..%d", r, n-1)
		}
		counts[r]++
	}
	for r, c := range counts[1:] {
		if c >= counts[0] {
			t.Fatalf("rank %d drawn %d times, the first %d", r+1, c, counts[0])
		}
	}
	// ~12,000 draws of the tenth rank: a standard error of about 1%.
	got, want := float64(counts[0])/float64(counts[9]), math.Pow(10, s)
	if math.Abs(got/want-1) > 0.05 {
		t.Fatalf("first/tenth rank frequency %.3f, want %.3f within 5%%", got, want)
	}
	if counts[n-1] == 0 {
		t.Fatalf("the last rank was never drawn")
	}
}

func TestZipfRankAllocatesNothing(t *testing.T) {
	z := NewZipf(100_000, 0.9)
	rng := rand.New(rand.NewPCG(1, 2))
	sink := 0
	if a := testing.AllocsPerRun(1000, func() { sink += z.Rank(rng) }); a != 0 {
		t.Fatalf("%v allocations per rank", a)
	}
	_ = sink
}

// TestValueSize: a key's size is fixed, within the bounds, and the sizes
// spread over all of them, averaging the middle.
func TestValueSize(t *testing.T) {
	const lo, hi, keys = 100, 2000, 200_000
	var sum int64
	seenLo, seenHi := false, false
	for k := 0; k < keys; k++ {
		v := ValueSize(k, lo, hi)
		if v < lo || v > hi {
			t.Fatalf("key %d: size %d out of %d..%d", k, v, lo, hi)
		}
		if v2 := ValueSize(k, lo, hi); v2 != v {
			t.Fatalf("key %d: size %d, then %d", k, v, v2)
		}
		seenLo, seenHi = seenLo || v == lo, seenHi || v == hi
		sum += int64(v)
	}
	if mean := float64(sum) / keys; !seenLo || !seenHi || math.Abs(mean-(lo+hi)/2.0) > 10 {
		t.Fatalf("sizes: mean %.1f, want about %d; %d seen %v, %d seen %v", mean, (lo+hi)/2, lo, seenLo, hi, seenHi)
	}
	if ValueSize(5, 100, 100) != 100 {
		t.Fatalf("fixed size: %d", ValueSize(5, 100, 100))
	}
	n := KeysForBytes(1<<20, lo, hi)
	var total int64
	for k := 0; k < n; k++ {
		total += int64(ValueSize(k, lo, hi))
	}
	if total < 1<<20 || total-int64(ValueSize(n-1, lo, hi)) >= 1<<20 {
		t.Fatalf("KeysForBytes(1 MiB) = %d keys of %d bytes", n, total)
	}
}
