package engine

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memhive/memhive/slab"
)

// exported is what a test keeps of one ExportedItem: copies, since the
// callback's slices are reused.
type exported struct {
	value   string
	flags   uint32
	expires int64
	cas     uint64
}

// exportAll runs Export to the end and returns every item by key,
// failing the test on a key reported twice.
func exportAll(t testing.TB, e *Engine) map[string]exported {
	t.Helper()
	got := map[string]exported{}
	var dup string
	if !e.Export(func(it ExportedItem) bool {
		k := string(it.Key)
		if _, ok := got[k]; ok && dup == "" {
			dup = k
		}
		got[k] = exported{string(it.Value), it.Flags, it.Expires, it.CAS}
		return true
	}) {
		t.Fatal("Export stopped without its callback asking it to")
	}
	if dup != "" {
		t.Fatalf("Export reported %q twice", dup)
	}
	return got
}

// TestExportEverySizeClass: an item filling each size class exactly, and
// the largest item the limit allows (key+value 1 MiB - 1), come out of
// Export byte for byte, with their flags, expiry and CAS.
func TestExportEverySizeClass(t *testing.T) {
	e, clk := newTestEngine(t, 128)
	want := map[string]exported{}
	put := func(key string, n int, flags uint32, exptime int64) {
		t.Helper()
		val := bytes.Repeat([]byte{byte(n)}, n)
		for i := 0; i < n; i += 4093 {
			val[i] = byte(i / 4093) // not one repeated byte: catches a shifted copy
		}
		st, cas := e.Store(ModeSet, []byte(key), flags, exptime, val, 0)
		if st != Stored {
			t.Fatalf("%s: %d-byte value: %v", key, n, st)
		}
		var expires int64
		if exptime != 0 {
			expires = clk.Unix() + exptime
		}
		want[key] = exported{string(val), flags, expires, cas}
	}
	for i, size := range e.mem.classes.Sizes {
		key := fmt.Sprintf("class-%02d", i)
		// The value that fills the class's chunk, or the largest the
		// limit allows in the last class.
		n := min(size-slab.HeaderSize, e.MaxItemSize()-1) - len(key)
		put(key, n, uint32(i)*0x01010101, int64(i%3)*100)
	}
	put("largest", e.MaxItemSize()-1-len("largest"), 0xffffffff, 0)
	put("empty", 0, 0, 0)
	got := exportAll(t, e)
	if len(got) != len(want) {
		t.Errorf("exported %d items, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s (%d bytes) not exported", k, len(w.value))
		case g.value != w.value:
			t.Errorf("%s: value of %d bytes differs from the %d stored", k, len(g.value), len(w.value))
		case g.flags != w.flags || g.expires != w.expires || g.cas != w.cas:
			t.Errorf("%s: flags %#x expires %d cas %d, want %#x %d %d", k, g.flags, g.expires, g.cas, w.flags, w.expires, w.cas)
		}
	}
}

// TestExportSkipsDeadItems: expired, flushed and invalidated (stale)
// items are not handed on; expiry is reported as a unix time; items
// stored after a flush are.
func TestExportSkipsDeadItems(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *Engine, clk *Clock)
		want  []string
	}{
		{"expired", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("short"), 0, 10, []byte("v"), 0)
			e.Store(ModeSet, []byte("long"), 0, 100, []byte("v"), 0)
			e.Store(ModeSet, []byte("never"), 0, 0, []byte("v"), 0)
			clk.Advance(10)
		}, []string{"long", "never"}},
		{"absolute expiry in the past", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("past"), 0, clk.Unix()-5, []byte("v"), 0)
			e.Store(ModeSet, []byte("future"), 0, clk.Unix()+maxRelativeExptime+10, []byte("v"), 0)
		}, []string{"future"}},
		{"flushed", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("before"), 0, 0, []byte("v"), 0)
			clk.Advance(1)
			e.FlushAll(0)
			clk.Advance(1)
			e.Store(ModeSet, []byte("after"), 0, 0, []byte("v"), 0)
		}, []string{"after"}},
		{"flushed in the same second", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("before"), 0, 0, []byte("v"), 0)
			e.FlushAll(0)
			e.Store(ModeSet, []byte("after"), 0, 0, []byte("v"), 0)
		}, []string{"after"}},
		{"delayed flush not yet due", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("kept"), 0, 0, []byte("v"), 0)
			e.FlushAll(60)
		}, []string{"kept"}},
		{"invalidated", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("stale"), 0, 0, []byte("v"), 0)
			e.Store(ModeSet, []byte("fresh"), 0, 0, []byte("v"), 0)
			e.MetaDelete([]byte("stale"), MetaDeleteOptions{Invalidate: true})
		}, []string{"fresh"}},
		{"deleted", func(e *Engine, clk *Clock) {
			e.Store(ModeSet, []byte("gone"), 0, 0, []byte("v"), 0)
			e.Store(ModeSet, []byte("here"), 0, 0, []byte("v"), 0)
			e.Delete([]byte("gone"), 0)
		}, []string{"here"}},
		{"empty cache", func(e *Engine, clk *Clock) {}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, clk := newTestEngine(t, 8)
			c.setup(e, clk)
			before := e.Stats()
			got := exportAll(t, e)
			if len(got) != len(c.want) {
				t.Errorf("exported %v, want %v", keysOf(got), c.want)
			}
			for _, k := range c.want {
				if _, ok := got[k]; !ok {
					t.Errorf("%s not exported (got %v)", k, keysOf(got))
				}
			}
			if after := e.Stats(); after != before {
				t.Errorf("Export changed the stats:\n%+v\n%+v", before, after)
			}
		})
	}
}

func keysOf(m map[string]exported) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestExportExpiresIsUnixTime: a relative exptime comes out as the unix
// time it ends at, an absolute one as itself.
func TestExportExpiresIsUnixTime(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	abs := clk.Unix() + 40*24*3600
	e.Store(ModeSet, []byte("rel"), 0, 3600, []byte("v"), 0)
	e.Store(ModeSet, []byte("abs"), 0, abs, []byte("v"), 0)
	e.Store(ModeSet, []byte("max-rel"), 0, maxRelativeExptime, []byte("v"), 0)
	got := exportAll(t, e)
	for k, w := range map[string]int64{"rel": clk.Unix() + 3600, "abs": abs, "max-rel": clk.Unix() + maxRelativeExptime} {
		if got[k].expires != w {
			t.Errorf("%s: expires %d, want %d", k, got[k].expires, w)
		}
	}
}

// TestExportStops: fn returning false ends the walk at once, and Export
// says so.
func TestExportStops(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	for i := 0; i < 1000; i++ {
		e.Store(ModeSet, []byte("k"+strconv.Itoa(i)), 0, 0, []byte("v"), 0)
	}
	calls := 0
	if e.Export(func(ExportedItem) bool { calls++; return calls < 10 }) {
		t.Error("Export reported a full walk after fn stopped it")
	}
	if calls != 10 {
		t.Errorf("fn called %d times after it asked to stop at 10", calls)
	}
}

// TestExportManyBatches: a cache much larger than one batch (in items,
// in bytes and in buckets, over several stripes) comes out whole.
func TestExportManyBatches(t *testing.T) {
	e, err := New(Config{MemoryBytes: 64 << 20, Stripes: 4, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const n = 20000
	for i := 0; i < n; i++ {
		v := bytes.Repeat([]byte{'x'}, i%700)
		if st, _ := e.Store(ModeSet, []byte("key:"+strconv.Itoa(i)), uint32(i), 0, v, 0); st != Stored {
			t.Fatalf("store %d: %v", i, st)
		}
	}
	got := exportAll(t, e)
	if len(got) != n {
		t.Fatalf("exported %d items, want %d", len(got), n)
	}
	for i := 0; i < n; i++ {
		g := got["key:"+strconv.Itoa(i)]
		if len(g.value) != i%700 || g.flags != uint32(i) {
			t.Fatalf("key:%d: %d bytes, flags %d", i, len(g.value), g.flags)
		}
	}
}

// TestExportDuringTraffic: while writers add keys, overwrite others and
// delete a third set (growing the index under the walk), Export reports
// every key that stayed live throughout exactly once, with one of the
// values it held, and never reports a key twice. Run it with -race.
func TestExportDuringTraffic(t *testing.T) {
	e, err := New(Config{MemoryBytes: 64 << 20, Stripes: 4, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const stable = 5000
	for i := 0; i < stable; i++ {
		e.Store(ModeSet, []byte("stable:"+strconv.Itoa(i)), 0, 0, []byte("v0"), 0)
		e.Store(ModeSet, []byte("churn:"+strconv.Itoa(i)), 0, 0, []byte("v0"), 0)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := i % stable
				switch w {
				case 0: // new keys: the index grows under the walk
					e.Store(ModeSet, []byte(fmt.Sprintf("new:%d", i)), 0, 0, []byte("n"), 0)
				case 1: // overwrite a stable key with another value
					e.Store(ModeSet, []byte("stable:"+strconv.Itoa(k)), 0, 0, []byte("v"+strconv.Itoa(1+i%2)), 0)
				case 2: // delete and re-add the churn keys
					e.Delete([]byte("churn:"+strconv.Itoa(k)), 0)
					e.Store(ModeSet, []byte("churn:"+strconv.Itoa(k)), 0, 0, []byte("v0"), 0)
				}
				if i%64 == 0 {
					time.Sleep(time.Microsecond) // let the walk in
				}
			}
		}(w)
	}
	for range 5 {
		got := exportAll(t, e) // fails on a key reported twice
		for i := 0; i < stable; i++ {
			g, ok := got["stable:"+strconv.Itoa(i)]
			if !ok {
				t.Fatalf("stable:%d, live throughout, not exported", i)
			}
			if g.value != "v0" && g.value != "v1" && g.value != "v2" {
				t.Fatalf("stable:%d exported as %q", i, g.value)
			}
		}
		t.Logf("walk exported %d items", len(got))
	}
	stop.Store(true)
	wg.Wait()
}

// BenchmarkExport: how fast a cache of 100-byte values is walked, in
// items a second, and what it allocates per item (0 once the batch
// buffers have grown).
func BenchmarkExport(b *testing.B) {
	e, _ := newTestEngine(b, 256)
	const n = 200_000
	val := make([]byte, 100)
	for i := 0; i < n; i++ {
		e.Store(ModeSet, []byte("key:"+strconv.Itoa(i)), 0, 0, val, 0)
	}
	var sink int
	fn := func(it ExportedItem) bool { sink += len(it.Value); return true }
	e.Export(fn) // warm the batch buffers up
	b.ReportAllocs()
	b.SetBytes(n * int64(len(val)))
	b.ResetTimer()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range b.N {
		e.Export(fn)
	}
	runtime.ReadMemStats(&after)
	b.StopTimer()
	items := float64(n) * float64(b.N)
	b.ReportMetric(items/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/items, "allocs/item")
	if sink == 0 {
		b.Fatal("nothing exported")
	}
}
