package bench

import (
	"context"
	"testing"

	"github.com/memhive/memhive/internal/testserver"
)

// TestAsideSmoke drives cache-aside loads against memhive with 2 MiB for
// about 3 MB of keys, so that it hits, misses and evicts: every get is a
// hit or a miss, every miss is followed by a set, and the server counted
// exactly the hits and misses the driver did.
func TestAsideSmoke(t *testing.T) {
	s := testserver.StartMemhive(t, "--memory", "2")
	ctx := context.Background()
	const keys = 3000
	stats := func() map[string]int64 {
		st, err := ServerStats(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// A fill: each key asked once, so every get misses.
	fill := AsideConfig{Addr: s.Addr, Conns: 3, Pipeline: 8, Keys: 500, KeyPrefix: "fill:", ValueMin: 100, ValueMax: 100}
	r, err := RunAside(ctx, fill)
	if err != nil || r.Gets != 500 || r.Misses != 500 || r.Sets != 500 || r.SetsFailed != 0 {
		t.Fatalf("fill: %+v %v; want 500 gets, misses and sets", r, err)
	}
	for _, pipeline := range []int{1, 8} {
		before := stats()
		load := AsideConfig{Addr: s.Addr, Conns: 4, Pipeline: pipeline, Requests: 20_001, Keys: keys, KeyPrefix: "z:",
			Zipf: NewZipf(keys, 0.9), ValueMin: 100, ValueMax: 2000, Seed: uint64(pipeline)}
		r, err := RunAside(ctx, load)
		if err != nil {
			t.Fatalf("pipeline %d: %v", pipeline, err)
		}
		after := stats()
		if r.Gets != load.Requests || r.Hits+r.Misses != r.Gets || r.Sets != r.Misses || r.SetsFailed != 0 {
			t.Fatalf("pipeline %d: %+v; want %d gets, each a hit or a miss, a set per miss", pipeline, r, load.Requests)
		}
		if r.Hits == 0 || r.Misses == 0 {
			t.Fatalf("pipeline %d: %+v; want both hits and misses", pipeline, r)
		}
		d := func(name string) int64 { return after[name] - before[name] }
		if d("get_hits") != r.Hits || d("get_misses") != r.Misses || d("cmd_set") != r.Sets {
			t.Fatalf("pipeline %d: server counted %d hits, %d misses, %d sets; driver %d, %d, %d",
				pipeline, d("get_hits"), d("get_misses"), d("cmd_set"), r.Hits, r.Misses, r.Sets)
		}
		if err := crossCheck(r, d("get_hits"), d("get_misses")); err != nil {
			t.Fatal(err)
		}
	}
	if st := stats(); st["evictions"] == 0 {
		t.Fatalf("no evictions: the smoke test's keys should not fit in 2 MiB")
	}
	// The cross-check catches a gross disagreement.
	if crossCheck(AsideResult{Gets: 1000, Hits: 900, Misses: 100}, 800, 200) == nil {
		t.Fatalf("crossCheck accepted 800 hits against 900")
	}
}
