package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/memhive/memhive/slab"
)

// TestUsageReachesLimitAtFirstEviction fills a real 8 MiB cache and checks
// what its dashboard is built on: usage (total_malloced, the memory the
// cache holds) stays under the limit while nothing is evicted and equals
// the limit, in whole pages, once the first item is evicted; the analytics
// API, "stats" and "stats slabs" agree; bytes (what its items take)
// never exceeds usage.
func TestUsageReachesLimitAtFirstEviction(t *testing.T) {
	h := startHive(t, "", "--memory", "64", "--overcommit")
	const limitMiB = 8
	l := h.createCache("usage", limitMiB)
	tc := dialText(t, h.Addr)
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	statsOf := func(sub string) map[string]string {
		m := map[string]string{}
		for line := tc.cmd("stats " + sub + "\r\n"); line != "END"; line = tc.line() {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "STAT" {
				t.Fatalf("stats %s: %q", sub, line)
			}
			m[f[1]] = f[2]
		}
		return m
	}
	slabs := func() map[string]string { return statsOf("slabs") }
	num := func(m map[string]string, name string) uint64 {
		t.Helper()
		v, err := strconv.ParseUint(m[name], 10, 64)
		if err != nil {
			t.Fatalf("stat %s=%q: %v", name, m[name], err)
		}
		return v
	}
	settings := statsOf("settings")
	page, charge := num(settings, "slab_page_size"), num(settings, "item_size_max")
	limit := uint64(limitMiB << 20)
	full := limit / charge * page // the limit's pages (each counts as item_size_max), whole

	// Two small items: bytes counts what each takes in its segment, and
	// one segment (page) holds both.
	tc.cmd("set a 0 0 1\r\n1\r\n")
	tc.cmd("set b 0 0 1\r\n2\r\n")
	sl := slabs()
	if got, want := num(tc.stats(), "bytes"), uint64(2*slab.SegItemSize(1, 1, 0)); got != want {
		t.Fatalf("bytes %d for two one-byte items, want %d", got, want)
	}
	if got := num(sl, "total_malloced"); got != page {
		t.Fatalf("total_malloced %d with two small items, want one page (%d)", got, page)
	}

	value := strings.Repeat("v", 900)
	for i := 0; ; i++ {
		var batch strings.Builder
		for j := 0; j < 50; j++ {
			fmt.Fprintf(&batch, "set k%d-%d 0 0 %d noreply\r\n%s\r\n", i, j, len(value), value)
		}
		if got := tc.cmd(batch.String() + "mn\r\n"); got != "MN" { // fences the noreply sets
			t.Fatalf("mn after the sets: %q", got)
		}
		st := tc.stats()
		usage := num(slabs(), "total_malloced")
		if num(st, "bytes") > usage || usage > full {
			t.Fatalf("after %d sets: bytes %s, usage %d, the limit's pages %d", (i+1)*50, st["bytes"], usage, full)
		}
		if num(st, "evictions") == 0 {
			if i > 10000 {
				t.Fatal("no eviction after 500,000 sets into an 8 MiB cache")
			}
			continue
		}
		if usage != full {
			t.Fatalf("first eviction (within %d sets) with usage %d, want the limit's %d pages: %d", (i+1)*50, usage, full/page, full)
		}
		var api map[string]map[string]uint64
		if code := h.apiGet(l, fmt.Sprintf("/api/v1/%d/stats", l.CacheID), &api); code != 200 || len(api) != 1 {
			t.Fatalf("analytics stats: status %d, %d servers", code, len(api))
		}
		for server, s := range api {
			if s["total_malloced"] != usage || s["limit_maxbytes"] != limit || s["evictions"] == 0 {
				t.Fatalf("analytics stats of %s: total_malloced %d limit_maxbytes %d evictions %d; stats slabs says %d of %d", server, s["total_malloced"], s["limit_maxbytes"], s["evictions"], usage, limit)
			}
		}
		t.Logf("first eviction within %d sets: usage %d of limit %d (%.4f), items' chunks %s", (i+1)*50, usage, limit, float64(usage)/float64(limit), st["bytes"])
		return
	}
}
