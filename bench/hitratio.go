package bench

import (
	"context"
	"fmt"
)

// HitRatioMemoryMiB is both servers' item memory in H1 and H2, whatever
// CompareConfig.MemoryMiB is: their key spaces are sized against it, at
// about twice as much data as it holds, so that each server must choose
// what to keep.
const HitRatioMemoryMiB = 64

// The hit-ratio workloads' sizes. Requests are counted in gets, not
// time, so that every run asks for the same keys in the same order per
// connection. On this 2-core machine (30,000 to 75,000 gets/s at
// pipeline 1, while other tests ran), three rounds took about a minute
// for H1 and 90 s for H2 (whose rounds each start anew): within the 4
// minutes they may take.
const (
	// hitRatioZipfS is the key popularity's exponent, the skew often
	// measured in production caches.
	hitRatioZipfS = 0.9
	// hitRatioBytes is the data of the Zipf key spaces: twice the memory.
	hitRatioBytes = 2 * HitRatioMemoryMiB << 20
	// h1Warm is H1's warm-up: it fills the 64 MiB (some 56,000 items)
	// from empty, then turns the cache over once more (65,000 to 71,000
	// evictions in all, measured). An LRU's content is then a function of
	// the recent requests alone, not of the order it was filled in, and
	// memcached's segmented LRU and memhive's policy have had as long to
	// sort their segments.
	h1Warm = 600_000
	// h2Fill is H2's first phase, 1,000,000 keys of 100-byte values asked
	// once each: about three times what the memory holds (350,000 of
	// them in memcached, 420,000 in memhive), so both servers are full
	// of small items and evicting.
	h2Fill = 1_000_000
	// h2Warm is H2's short warm-up on the new keys: about one memory's
	// worth of 2,000-byte sets, enough for a server that moves its memory
	// to the new size to hold the hot keys, too little for one that waits
	// to be forced.
	h2Warm = 100_000
	// h1Window and h2Window are the gets of one measured window (one
	// round, one server): tens of thousands of misses, and so of
	// evictions, per window; a hit ratio's sampling error of about 0.001.
	h1Window, h2Window = 300_000, 200_000
)

// hitRatioPlan is an H workload's load on each server: fills and warm-ups
// in order, not measured, then the measured window, once per round with
// the round's seed. Addr is filled in per server.
type hitRatioPlan struct {
	warm    []AsideConfig
	measure AsideConfig
	// fresh: every round starts both servers anew and repeats warm
	// (see hitRatio).
	fresh bool
}

// hitRatioH1 is H1: cache-aside over Zipf-distributed keys whose values
// are 100 to 2,000 bytes, twice the memory's worth.
func (c *CompareConfig) hitRatioH1(ctx context.Context, dir string) (Row, error) {
	keys := KeysForBytes(hitRatioBytes, 100, 2000)
	zipf := NewZipf(keys, hitRatioZipfS)
	w := Workload{ID: "H1", MemoryMiB: HitRatioMemoryMiB, Target: "misses <= 0.8x memcached",
		Name: fmt.Sprintf("hit ratio, cache-aside (get; on a miss, set), text, 16 conns, pipeline 1: Zipf s=%.1f over %d keys, values 100-2,000 B fixed per key (2x the memory), both servers -m %d; %d gets of warm-up, %d per round",
			hitRatioZipfS, keys, HitRatioMemoryMiB, h1Warm, h1Window)}
	zipfLoad := AsideConfig{Conns: 16, Pipeline: 1, Keys: keys, KeyPrefix: "h1:", Zipf: zipf, ValueMin: 100, ValueMax: 2000}
	warm := zipfLoad
	// Pipelined for speed: which keys are asked, and so what the cache
	// ends up holding, does not depend on the depth.
	warm.Pipeline, warm.Requests, warm.Seed = 16, h1Warm, 1000
	measure := zipfLoad
	measure.Requests = h1Window
	return c.hitRatio(ctx, dir, w, hitRatioPlan{warm: []AsideConfig{warm}, measure: measure})
}

// hitRatioH2 is H2, memcached's slab calcification: the cache is full of
// 100-byte values when the traffic moves to new keys with 2,000-byte
// values; memcached's memory stays with the small items' slab class
// until its automover moves it, a page at a time.
func (c *CompareConfig) hitRatioH2(ctx context.Context, dir string) (Row, error) {
	keys := KeysForBytes(hitRatioBytes, 2000, 2000)
	w := Workload{ID: "H2", MemoryMiB: HitRatioMemoryMiB, Target: "hits >= 2x memcached",
		Name: fmt.Sprintf("hit ratio after the value size changes, cache-aside, text, both servers -m %d: %d keys of 100 B asked once (a fill), then Zipf s=%.1f over %d new keys of 2,000 B (2x the memory); %d gets of warm-up, %d measured at 16 conns, pipeline 1; each round on new servers",
			HitRatioMemoryMiB, h2Fill, hitRatioZipfS, keys, h2Warm, h2Window)}
	fill := AsideConfig{Conns: 8, Pipeline: 32, Keys: h2Fill, KeyPrefix: "h2a:", ValueMin: 100, ValueMax: 100}
	zipfLoad := AsideConfig{Conns: 16, Pipeline: 1, Keys: keys, KeyPrefix: "h2b:", Zipf: NewZipf(keys, hitRatioZipfS), ValueMin: 2000, ValueMax: 2000}
	warm := zipfLoad
	warm.Pipeline, warm.Requests, warm.Seed = 16, h2Warm, 1000
	measure := zipfLoad
	measure.Requests = h2Window
	return c.hitRatio(ctx, dir, w, hitRatioPlan{warm: []AsideConfig{fill, warm}, measure: measure, fresh: true})
}

// hitRatio runs an H workload. In a steady-state workload (H1) both
// servers are started and warmed once, and a round is then one measured
// window on each, memhive then memcached, each window a new seed (the
// same for both servers) and so a new sequence of keys: the hit ratio is
// a property of the steady state the warm-up reaches, which successive
// windows sample, and repeating the warm-ups, which take most of the
// time, would not fit H1 and H2 in about 4 minutes. A workload that
// measures a transient (plan.fresh: H2, the moment the value size
// changes) starts both servers anew each round and repeats its fill and
// warm-up, so that every round measures the same moment: in successive
// windows memcached's slab automover, which moves a page at a time on a
// timer, would have closed more of the gap each round, and the median
// would depend on how long the run took.
//
// The hit ratios are the servers' own: deltas of get_hits and get_misses
// over each window, which must agree with the driver's counts.
func (c *CompareConfig) hitRatio(ctx context.Context, dir string, w Workload, plan hitRatioPlan) (Row, error) {
	row := Row{Workload: w, Memhive: Measurement{Server: "memhive"}, Memc: Measurement{Server: "memcached"}}
	var sides []*hitSide
	stop := func() {
		for _, s := range sides {
			s.p.Stop()
		}
		sides = nil
	}
	defer stop()
	setsFailed := map[string]int64{}
	for round := 0; round < c.Rounds; round++ {
		if sides == nil {
			var err error
			if sides, err = c.startWarm(ctx, dir, w, plan, &row); err != nil {
				return row, err
			}
		}
		for _, s := range sides {
			if err := c.measureWindow(ctx, w, plan, s, round); err != nil {
				return row, err
			}
			setsFailed[s.p.Name] += s.setsFailed
			s.setsFailed = 0
		}
		if plan.fresh {
			stop()
		}
	}
	row.Note = fmt.Sprintf("items held at the end: memhive %d, memcached %d", row.Memhive.Items, row.Memc.Items)
	for _, name := range []string{"memhive", "memcached"} {
		if n := setsFailed[name]; n > 0 {
			row.Note += fmt.Sprintf("; %s refused %d sets (out of memory)", name, n)
		}
	}
	return row, nil
}

// hitSide is one server of an H workload.
type hitSide struct {
	p          *Proc
	m          *Measurement
	setsFailed int64 // sets refused in the measured window
}

// startWarm starts both servers and runs the plan's fills and warm-ups on
// each.
func (c *CompareConfig) startWarm(ctx context.Context, dir string, w Workload, plan hitRatioPlan, row *Row) ([]*hitSide, error) {
	var sides []*hitSide
	fail := func(err error) ([]*hitSide, error) {
		for _, s := range sides {
			s.p.Stop()
		}
		return nil, err
	}
	for _, name := range []string{"memhive", "memcached"} {
		p, _, err := c.server(name, w, dir)
		if err != nil {
			return fail(err)
		}
		m := &row.Memhive
		if name == "memcached" {
			m = &row.Memc
		}
		sides = append(sides, &hitSide{p: p, m: m})
	}
	for _, s := range sides {
		for i, load := range plan.warm {
			load.Addr = s.p.Addr
			r, err := RunAside(ctx, load)
			if err != nil {
				return fail(fmt.Errorf("%s warm-up %d: %w", s.p.Name, i+1, err))
			}
			st, err := ServerStats(s.p.Addr)
			if err != nil {
				return fail(err)
			}
			c.logf("%-4s %-9s warm-up %d: %d gets in %.1f s, hit ratio %.4f; %d items held, %d evictions",
				w.ID, s.p.Name, i+1, r.Gets, r.Seconds, r.HitRatio(), st["curr_items"], st["evictions"])
			if st["evictions"] == 0 {
				return fail(fmt.Errorf("%s evicted nothing in warm-up %d: the cache is not full, the figures would not be a hit ratio under pressure", s.p.Name, i+1))
			}
		}
	}
	return sides, nil
}

// measureWindow runs one measured window of the plan on s, with the
// round's seed, and records its hit ratio.
func (c *CompareConfig) measureWindow(ctx context.Context, w Workload, plan hitRatioPlan, s *hitSide, round int) error {
	load := plan.measure
	load.Addr, load.Seed = s.p.Addr, uint64(round+1)
	before, err := ServerStats(s.p.Addr)
	if err != nil {
		return err
	}
	r, err := RunAside(ctx, load)
	if err != nil {
		return fmt.Errorf("%s round %d: %w", s.p.Name, round+1, err)
	}
	after, err := ServerStats(s.p.Addr)
	if err != nil {
		return err
	}
	hits := after["get_hits"] - before["get_hits"]
	misses := after["get_misses"] - before["get_misses"]
	if err := crossCheck(r, hits, misses); err != nil {
		return fmt.Errorf("%s round %d: %w", s.p.Name, round+1, err)
	}
	ratio := float64(hits) / float64(hits+misses)
	s.m.HitRatio = append(s.m.HitRatio, ratio)
	s.m.Items = after["curr_items"]
	s.setsFailed += r.SetsFailed
	c.logf("%-4s %-9s round %d: hit ratio %.4f (%d hits, %d misses in %.1f s, %.0f gets/s); %d items held",
		w.ID, s.p.Name, round+1, ratio, hits, misses, r.Seconds, float64(r.Gets)/r.Seconds, s.m.Items)
	return nil
}

// hitRatioLine renders an H row of the table: each server's hit ratio
// (min / median / max over the rounds), and memhive's misses (H1) or hits
// (H2) as a multiple of memcached's, from the medians.
func hitRatioLine(r Row) string {
	w := r.Workload
	a1, a2, a3 := stats(r.Memhive.HitRatio)
	b1, b2, b3 := stats(r.Memc.HitRatio)
	ratio := fmt.Sprintf("misses **%.2fx**", (1-a2)/(1-b2))
	if w.ID == "H2" {
		ratio = fmt.Sprintf("hits **%.2fx**", a2/b2)
	}
	return fmt.Sprintf("| %s | %s (%s) | hit ratio %.4f / %.4f / %.4f | hit ratio %.4f / %.4f / %.4f | %s | | | | %s |\n",
		w.ID, w.Name, r.Note, a1, a2, a3, b1, b2, b3, ratio, w.Target)
}
