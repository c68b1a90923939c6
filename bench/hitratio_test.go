package bench

import (
	"strings"
	"testing"
)

// TestHitRatioLine: an H row shows both servers' hit ratios and compares
// misses (H1) or hits (H2), from the medians.
func TestHitRatioLine(t *testing.T) {
	row := func(id string) Row {
		return Row{Workload: Workload{ID: id, Name: "n", Target: "t"}, Note: "items held at the end: memhive 5, memcached 7",
			Memhive: Measurement{HitRatio: []float64{0.91, 0.90, 0.95}}, Memc: Measurement{HitRatio: []float64{0.80, 0.70, 0.85}}}
	}
	out := Table([]Row{row("H1"), row("H2")})
	for _, want := range []string{
		"| H1 | n (items held at the end: memhive 5, memcached 7) | hit ratio 0.9000 / 0.9100 / 0.9500 | hit ratio 0.7000 / 0.8000 / 0.8500 | misses **0.45x** |",
		"| H2 | n (items held at the end: memhive 5, memcached 7) | hit ratio 0.9000 / 0.9100 / 0.9500 | hit ratio 0.7000 / 0.8000 / 0.8500 | hits **1.14x** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
