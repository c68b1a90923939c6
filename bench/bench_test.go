package bench

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := int64(1); i <= 100000; i++ {
		h.Record(i * 1000) // 1 µs .. 100 ms
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50_000_000}, {0.99, 99_000_000}, {0.999, 99_900_000}} {
		got := h.Quantile(c.q)
		if got > c.want || float64(got) < float64(c.want)*0.98 {
			t.Errorf("q%.3f = %d, want within 2%% below %d", c.q, got, c.want)
		}
	}
	if h.Max() != 100_000_000 || h.Count() != 100000 {
		t.Fatalf("max %d count %d", h.Max(), h.Count())
	}
	for i := 0; i < 100000; i++ {
		v := rand.Int64N(1 << 40)
		if lowest(bucketOf(v)) > v || bucketOf(v) >= len(h.counts) {
			t.Fatalf("value %d: bucket %d starts at %d", v, bucketOf(v), lowest(bucketOf(v)))
		}
	}
}

// TestSmoke runs each protocol for a moment against memhive and checks
// that every reply was right and the histogram filled.
func TestSmoke(t *testing.T) {
	s := testserver.StartMemhive(t, "--memory", "64")
	for _, proto := range []string{"text", "binary", "meta"} {
		cfg := Config{Addr: s.Addr, Protocol: proto, Conns: 4, Pipeline: 8, Keys: 1000, ValueMin: 10, ValueMax: 200, Requests: 20000}
		if err := Prefill(context.Background(), cfg); err != nil {
			t.Fatalf("%s prefill: %v", proto, err)
		}
		r, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if r.Ops != 20000 || r.Sets+r.Gets != r.Ops || r.Hits != r.Gets || r.Histogram().Count() != 20000 || r.P99us <= 0 {
			t.Fatalf("%s: %+v", proto, r)
		}
	}
	// Time-bounded, Zipf keys, text.
	r, err := Run(context.Background(), Config{Addr: s.Addr, Conns: 2, Keys: 5000, Distribution: "zipf", Duration: 300 * time.Millisecond})
	if err != nil || r.Ops == 0 || r.Misses == 0 {
		t.Fatalf("zipf run: %+v %v", r, err)
	}
}

// TestKeyList: with KeyList, the prefill stores exactly the listed keys
// and the load asks for them, not KeyPrefix-numbered ones.
func TestKeyList(t *testing.T) {
	s := testserver.StartMemhive(t, "--memory", "64")
	listed := Config{Addr: s.Addr, Conns: 2, Pipeline: 4, KeyList: []string{"alpha", "beta", "gamma", "delta", "epsilon"}, GetRatio: 1, Requests: 2000}
	if err := Prefill(context.Background(), listed); err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), listed)
	if err != nil || r.Gets != 2000 || r.Hits != 2000 {
		t.Fatalf("gets of the listed keys: %+v %v; want 2000 hits", r, err)
	}
	// The numbered keys were never stored.
	numbered := listed
	numbered.KeyList, numbered.Keys = nil, 5
	if r, err := Run(context.Background(), numbered); err != nil || r.Misses != 2000 {
		t.Fatalf("gets of numbered keys after a listed prefill: %+v %v; want 2000 misses", r, err)
	}
}
