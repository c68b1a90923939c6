package engine

import (
	"bytes"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/memhive/memhive/codec"
)

func newTestEngine(t testing.TB, memMiB int64) (*Engine, *Clock) {
	t.Helper()
	clk := NewClock(time.Hour) // ticks only when a test advances it
	t.Cleanup(clk.Stop)
	e, err := New(Config{MemoryBytes: memMiB << 20, Clock: clk, CrawlInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, clk
}

func get(t testing.TB, e *Engine, key string) (string, uint32, uint64, bool) {
	t.Helper()
	r, ok := e.Get([]byte(key))
	if !ok {
		return "", 0, 0, false
	}
	defer r.Release()
	return string(r.Value()), r.Flags(), r.CAS(), true
}

func TestStoreModes(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	k := []byte("k")
	steps := []struct {
		mode  Mode
		value string
		want  Status
		after string // value after the step, "" with found=false means missing
	}{
		{ModeReplace, "a", NotStored, ""},
		{ModeAppend, "a", NotStored, ""},
		{ModePrepend, "a", NotStored, ""},
		{ModeAdd, "v1", Stored, "v1"},
		{ModeAdd, "v2", NotStored, "v1"},
		{ModeReplace, "v3", Stored, "v3"},
		{ModeAppend, "-end", Stored, "v3-end"},
		{ModePrepend, "start-", Stored, "start-v3-end"},
		{ModeSet, "s", Stored, "s"},
	}
	for i, st := range steps {
		got, _ := e.Store(st.mode, k, 7, 0, []byte(st.value), 0)
		if got != st.want {
			t.Fatalf("step %d: mode %d: got %d want %d", i, st.mode, got, st.want)
		}
		v, _, _, ok := get(t, e, "k")
		if st.after == "" {
			if ok {
				t.Fatalf("step %d: found %q, want missing", i, v)
			}
			continue
		}
		if !ok || v != st.after {
			t.Fatalf("step %d: value %q (found %v), want %q", i, v, ok, st.after)
		}
	}
}

func TestAppendKeepsFlagsAndExpiry(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	e.Store(ModeSet, []byte("k"), 42, 100, []byte("a"), 0)
	if st, _ := e.Store(ModeAppend, []byte("k"), 9, 0, []byte("b"), 0); st != Stored {
		t.Fatal(st)
	}
	v, flags, _, _ := get(t, e, "k")
	if v != "ab" || flags != 42 {
		t.Fatalf("got %q flags %d", v, flags)
	}
	clk.Advance(101)
	if _, _, _, ok := get(t, e, "k"); ok {
		t.Fatal("append reset the expiry")
	}
}

func TestCAS(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	if st, _ := e.Store(ModeCAS, []byte("k"), 0, 0, []byte("x"), 1); st != NotFound {
		t.Fatalf("cas on missing: %d", st)
	}
	_, c1 := e.Store(ModeSet, []byte("k"), 0, 0, []byte("x"), 0)
	_, _, got, _ := get(t, e, "k")
	if got != c1 || c1 == 0 {
		t.Fatalf("gets cas %d, store returned %d", got, c1)
	}
	if st, _ := e.Store(ModeCAS, []byte("k"), 0, 0, []byte("y"), c1+1); st != Exists {
		t.Fatalf("bad cas: %d", st)
	}
	st, c2 := e.Store(ModeCAS, []byte("k"), 0, 0, []byte("y"), c1)
	if st != Stored || c2 == c1 {
		t.Fatalf("good cas: %d %d", st, c2)
	}
	if st, _ := e.Store(ModeCAS, []byte("k"), 0, 0, []byte("z"), c1); st != Exists {
		t.Fatalf("stale cas: %d", st)
	}
	s := e.Stats()
	if s.CasHits != 1 || s.CasBadval != 2 || s.CasMisses != 1 {
		t.Fatalf("cas stats %+v", s)
	}
}

func TestCASUniqueAcrossStripes(t *testing.T) {
	e, _ := newTestEngine(t, 64)
	seen := map[uint64]bool{}
	for i := 0; i < 5000; i++ {
		_, c := e.Store(ModeSet, []byte(fmt.Sprint("key", i)), 0, 0, []byte("v"), 0)
		if seen[c] {
			t.Fatalf("cas %d issued twice", c)
		}
		seen[c] = true
	}
}

func TestExpiry(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	now := clk.Unix()
	cases := []struct {
		exptime int64
		alive   bool
	}{
		{0, true},
		{-1, false},
		{10, true},
		{maxRelativeExptime, true},
		{now - 10, false},   // absolute, past
		{1000000000, false}, // absolute, long past
		{now + 1000, true},  // absolute, future
	}
	for _, c := range cases {
		key := []byte(fmt.Sprint("k", c.exptime))
		e.Store(ModeSet, key, 0, c.exptime, []byte("v"), 0)
		if _, _, _, ok := get(t, e, string(key)); ok != c.alive {
			t.Errorf("exptime %d: alive %v, want %v", c.exptime, ok, c.alive)
		}
	}
	clk.Advance(11)
	if _, _, _, ok := get(t, e, "k10"); ok {
		t.Error("relative exptime 10 still alive after 11 s")
	}
	if _, _, _, ok := get(t, e, "k0"); !ok {
		t.Error("exptime 0 expired")
	}
}

func TestTouchAndGAT(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	e.Store(ModeSet, []byte("k"), 3, 10, []byte("v"), 0)
	if st := e.Touch([]byte("k"), 100); st != Touched {
		t.Fatal(st)
	}
	if st := e.Touch([]byte("nope"), 100); st != NotFound {
		t.Fatal(st)
	}
	clk.Advance(50)
	r, ok := e.GetAndTouch([]byte("k"), 0)
	if !ok || string(r.Value()) != "v" || r.Flags() != 3 {
		t.Fatal("gat missed")
	}
	r.Release()
	clk.Advance(1000)
	if _, _, _, ok := get(t, e, "k"); !ok {
		t.Fatal("gat with exptime 0 did not make the item permanent")
	}
	st := e.Stats()
	if st.CmdTouch != 3 || st.TouchHits != 2 || st.TouchMisses != 1 {
		t.Fatalf("touch stats %+v", st)
	}
}

func TestDelta(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	k := []byte("n")
	type step struct {
		incr  bool
		delta uint64
		want  Status
		value uint64
		raw   string
	}
	e.Store(ModeSet, k, 5, 0, []byte("100"), 0)
	for i, s := range []step{
		{true, 1, OK, 101, "101"},
		{false, 96, OK, 5, "5  "}, // shrinks in place, padded with spaces
		{false, 10, OK, 0, "0  "}, // floors at 0
		{true, 1000, OK, 1000, "1000"},
		{true, 1<<64 - 1000, OK, 0, "0   "}, // wraps
	} {
		st, r := e.Delta(k, DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: s.incr, Delta: s.delta})
		v, flags, _, _ := get(t, e, "n")
		if st != s.want || r.Value != s.value || v != s.raw || flags != 5 {
			t.Fatalf("step %d: status %d value %d raw %q flags %d", i, st, r.Value, v, flags)
		}
	}
	e.Store(ModeSet, []byte("s"), 0, 0, []byte("12abc"), 0)
	if st, _ := e.Delta([]byte("s"), DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1}); st != NonNumeric {
		t.Fatal("non-numeric accepted")
	}
	if st, _ := e.Delta([]byte("missing"), DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1}); st != NotFound {
		t.Fatal(st)
	}
	st, r := e.Delta([]byte("auto"), DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1, Create: true, Initial: 77})
	if v, _, _, _ := get(t, e, "auto"); st != OK || r.Value != 77 || v != "77" {
		t.Fatalf("auto-create: %d %d %q", st, r.Value, v)
	}
}

// TestMetaDeltaResult pins what MetaDelta reports beside its status: the
// item locked in Ref, whether Create made it, and whether a number too
// long for the old value put a new item in its place.
func TestMetaDeltaResult(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	incr := DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1}
	if st, res := e.MetaDelta([]byte("c"), incr); st != NotFound || res != (MetaDeltaResult{}) {
		t.Fatalf("miss: %v %+v", st, res)
	}
	for i, want := range []struct {
		value             uint64
		raw               string
		created, replaced bool
	}{
		{8, "8", true, false},   // created with Initial
		{9, "9", false, false},  // in place
		{10, "10", false, true}, // one digit more: a new item
	} {
		o := incr
		o.Create, o.Initial = true, 8
		st, res := e.MetaDelta([]byte("c"), o)
		if st != OK {
			t.Fatalf("step %d: %v", i, st)
		}
		raw, cas := string(res.Ref.Value()), res.Ref.CAS()
		res.Ref.Release()
		if res.Value != want.value || raw != want.raw || res.CAS != cas ||
			res.Created != want.created || res.Replaced != want.replaced {
			t.Fatalf("step %d: %+v value %q cas %d, want %+v", i, res.DeltaResult, raw, cas, want)
		}
	}
}

func TestDelete(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	_, c := e.Store(ModeSet, []byte("k"), 0, 0, []byte("v"), 0)
	if st := e.Delete([]byte("k"), c+1); st != Exists {
		t.Fatal(st)
	}
	if st := e.Delete([]byte("k"), 0); st != Deleted {
		t.Fatal(st)
	}
	if st := e.Delete([]byte("k"), 0); st != NotFound {
		t.Fatal(st)
	}
}

func TestFlushAll(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	e.Store(ModeSet, []byte("a"), 0, 0, []byte("1"), 0)
	e.FlushAll(0)
	if _, _, _, ok := get(t, e, "a"); ok {
		t.Fatal("flush_all left an item")
	}
	e.Store(ModeSet, []byte("b"), 0, 0, []byte("2"), 0)
	if _, _, _, ok := get(t, e, "b"); !ok {
		t.Fatal("item stored after flush_all is gone")
	}
	// Delayed: items stored before the deadline go when it passes.
	e.FlushAll(10)
	if _, _, _, ok := get(t, e, "b"); !ok {
		t.Fatal("delayed flush acted early")
	}
	clk.Advance(11)
	if _, _, _, ok := get(t, e, "b"); ok {
		t.Fatal("delayed flush did not act")
	}
	e.Store(ModeSet, []byte("c"), 0, 0, []byte("3"), 0)
	if _, _, _, ok := get(t, e, "c"); !ok {
		t.Fatal("item stored after the delayed flush is gone")
	}
}

// TestTooLarge pins the boundary: key + value must be less than the limit,
// also after append and prepend, and a refused append leaves the item.
func TestTooLarge(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	big := make([]byte, DefaultMaxItemSize)
	const last = DefaultMaxItemSize - 1 // the largest key+value stored
	if st, _ := e.Store(ModeSet, []byte("k"), 0, 0, big[:last], 0); st != TooLarge {
		t.Fatal("key + value of exactly the limit:", st)
	}
	if st, _ := e.Store(ModeSet, []byte("k"), 0, 0, big[:last-1], 0); st != Stored {
		t.Fatal("key + value one byte under the limit:", st)
	}
	for _, mode := range []Mode{ModeAppend, ModePrepend} {
		e.Store(ModeSet, []byte("j"), 0, 0, big[:last-11], 0)
		if st, _ := e.Store(mode, []byte("j"), 0, 0, big[:11], 0); st != TooLarge {
			t.Fatalf("mode %d reaching the limit: %v", mode, st)
		}
		if v, _, _, ok := get(t, e, "j"); !ok || len(v) != last-11 {
			t.Fatalf("mode %d: the refused append changed the item (present %v, %d bytes)", mode, ok, len(v))
		}
		if st, _ := e.Store(mode, []byte("j"), 0, 0, big[:10], 0); st != Stored {
			t.Fatalf("mode %d one byte under the limit: %v", mode, st)
		}
	}
}

func TestEvictionStaysWithinMemory(t *testing.T) {
	e, clk := newTestEngine(t, 16)
	rng := rand.New(rand.NewSource(1))
	val := make([]byte, 300_000)
	var last []string
	for i := 0; i < 20000; i++ {
		n := 100 + rng.Intn(2000)
		if i%50 == 0 {
			n = 1000 + rng.Intn(len(val)-1000)
		}
		if i%100 == 0 {
			clk.Advance(1) // let LRU ages differ, as they do in real use
		}
		key := fmt.Sprint("key-", i)
		st, _ := e.Store(ModeSet, []byte(key), 0, 0, val[:n], 0)
		if st != Stored {
			t.Fatalf("store %d (%d bytes): %d", i, n, st)
		}
		last = append(last, key)
		if len(last) > 3 {
			last = last[1:]
		}
	}
	st := e.Stats()
	if st.Evictions == 0 {
		t.Fatal("no evictions after writing far past the memory limit")
	}
	if st.Bytes > uint64(e.LimitBytes()) {
		t.Fatalf("bytes %d over limit %d", st.Bytes, e.LimitBytes())
	}
	for _, k := range last {
		if _, _, _, ok := get(t, e, k); !ok {
			t.Fatalf("most recent key %s evicted", k)
		}
	}
}

func TestCrawlerReclaims(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	for i := 0; i < 1000; i++ {
		e.Store(ModeSet, []byte(fmt.Sprint("k", i)), 0, 5, []byte("v"), 0)
	}
	e.Store(ModeSet, []byte("keep"), 0, 0, []byte("v"), 0)
	clk.Advance(6)
	if n := e.CrawlOnce(); n != 1000 {
		t.Fatalf("crawler freed %d, want 1000", n)
	}
	if st := e.Stats(); st.CurrItems != 1 || st.CrawlerReclaimed != 1000 {
		t.Fatalf("after crawl: %+v", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	e, _ := newTestEngine(t, 32)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				key := []byte(fmt.Sprintf("g%d-%d", g, i%100))
				val := []byte(fmt.Sprintf("value-%d-%d", g, i))
				e.Store(ModeSet, key, 0, 0, val, 0)
				if r, ok := e.Get(key); ok {
					if !bytes.HasPrefix(r.Value(), []byte(fmt.Sprintf("value-%d-", g))) {
						t.Errorf("foreign value %q", r.Value())
					}
					r.Release()
				}
				e.Delta([]byte("counter"), DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1, Create: true})
			}
		}(g)
	}
	wg.Wait()
	v, _, _, _ := get(t, e, "counter")
	if v != "15999" { // created at 0 by the first call, then 15,999 increments
		t.Fatalf("counter %q", v)
	}
}

// TestReadCounterHiddenFromAtime: the segment store keeps each item's
// read counter in its atime field's top bits; however often an item is
// read, its last access (mg l and h, me's la) and flush_all's cut-off
// see only the time.
func TestReadCounterHiddenFromAtime(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	k := []byte("k")
	if st, _ := e.Store(ModeSet, k, 0, 0, []byte("v"), 0); st != Stored {
		t.Fatalf("set: %v", st)
	}
	clk.Advance(3)
	for i := 0; i < 40; i++ {
		r, ok := e.Get(k)
		if !ok {
			t.Fatalf("get %d missed", i)
		}
		r.Release()
	}
	clk.Advance(2)
	r, hit, _ := e.MetaGet(k, false)
	if !hit {
		t.Fatal("mg missed")
	}
	idle := r.Idle()
	r.Release()
	if idle != 2 {
		t.Errorf("idle %d s after 40 reads 2 s ago, want 2", idle)
	}
	clk.Advance(1)
	e.FlushAll(0)
	if _, _, _, ok := get(t, e, "k"); ok {
		t.Error("an item read 40 times survived flush_all")
	}
}
