package engine

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/memhive/memhive/codec"
)

// TestDeadItemLookups checks that every command that looks a key up counts
// the expired or flushed item it meets, in get_expired or get_flushed, and
// frees it, as memcached 1.6.18's do_item_get does: reads, but also
// stores, deletes, incr/decr, touch, the meta commands and the unlink after
// a set refused as too large. Expected figures were taken from memcached
// -o no_lru_crawler,no_lru_maintainer with the stored value in another
// slab class than the dead item's (so that memcached's allocation does not
// reclaim it from its LRU tail first).
func TestDeadItemLookups(t *testing.T) {
	k := []byte("k")
	v := []byte("v")
	release := func(r Ref, ok bool) Status {
		if ok {
			r.Release()
			return OK
		}
		return NotFound
	}
	store := func(m Mode, cas uint64) func(e *Engine) Status {
		return func(e *Engine) Status { st, _ := e.Store(m, k, 0, 0, v, cas); return st }
	}
	cases := []struct {
		name string
		op   func(e *Engine) Status
		want Status
		// items is curr_items after the command: 0 when the dead item
		// is freed, 1 when the command stores a new one.
		items uint64
	}{
		{"get", func(e *Engine) Status { return release(e.Get(k)) }, NotFound, 0},
		{"gat", func(e *Engine) Status { return release(e.GetAndTouch(k, 0)) }, NotFound, 0},
		{"touch", func(e *Engine) Status { return e.Touch(k, 0) }, NotFound, 0},
		{"set", store(ModeSet, 0), Stored, 1},
		{"add", store(ModeAdd, 0), Stored, 1},
		{"replace", store(ModeReplace, 0), NotStored, 0},
		{"append", store(ModeAppend, 0), NotStored, 0},
		{"prepend", store(ModePrepend, 0), NotStored, 0},
		{"cas", store(ModeCAS, 1), NotFound, 0},
		// The server unlinks the key of a set refused as too large (see
		// codec.Request.Refused); the engine's Store refuses it unseen.
		{"set too large", func(e *Engine) Status {
			st, _ := e.Store(ModeSet, k, 0, 0, make([]byte, DefaultMaxItemSize), 0)
			e.Unlink(k)
			return st
		}, TooLarge, 0},
		{"delete", func(e *Engine) Status { return e.Delete(k, 0) }, NotFound, 0},
		{"incr", func(e *Engine) Status {
			st, _ := e.Delta(k, DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1})
			return st
		}, NotFound, 0},
		{"decr", func(e *Engine) Status {
			st, _ := e.Delta(k, DeltaOptions{ParseValue: codec.SafeStrtoull, Delta: 1})
			return st
		}, NotFound, 0},
		{"mg", func(e *Engine) Status { r, hit, _ := e.MetaGet(k, false); return release(r, hit) }, NotFound, 0},
		{"mg N (vivify)", func(e *Engine) Status { r, hit, _ := e.MetaGet(k, true); return release(r, hit) }, OK, 1},
		{"md", func(e *Engine) Status { return e.MetaDelete(k, MetaDeleteOptions{}) }, NotFound, 0},
		{"ma", func(e *Engine) Status {
			st, res := e.MetaDelta(k, DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1})
			if st == OK {
				res.Ref.Release()
			}
			return st
		}, NotFound, 0},
		{"me", func(e *Engine) Status { return release(e.Peek(k)) }, NotFound, 0},
	}
	for _, c := range cases {
		for _, flushed := range []bool{false, true} {
			name := c.name + "/expired"
			if flushed {
				name = c.name + "/flushed"
			}
			t.Run(name, func(t *testing.T) {
				e, _ := newTestEngine(t, 8)
				if flushed {
					e.Store(ModeSet, k, 0, 0, []byte("1"), 0)
					e.FlushAll(0)
				} else {
					e.Store(ModeSet, k, 0, -1, []byte("1"), 0)
				}
				before := e.Stats()
				if st := c.op(e); st != c.want {
					t.Fatalf("status %d, want %d", st, c.want)
				}
				after := e.Stats()
				expired, flush := after.GetExpired-before.GetExpired, after.GetFlushed-before.GetFlushed
				if flushed && (expired != 0 || flush != 1) || !flushed && (expired != 1 || flush != 0) {
					t.Errorf("get_expired +%d, get_flushed +%d; want +1 in get_%s", expired, flush, map[bool]string{false: "expired", true: "flushed"}[flushed])
				}
				if after.CurrItems != c.items {
					t.Errorf("curr_items %d, want %d", after.CurrItems, c.items)
				}
				if after.Expired != after.GetExpired {
					t.Errorf("analytics expired %d, want get_expired %d (the crawler did not run)", after.Expired, after.GetExpired)
				}
				// A second lookup finds nothing dead: counted once.
				c.op(e)
				if again := e.Stats(); again.GetExpired != after.GetExpired || again.GetFlushed != after.GetFlushed {
					t.Errorf("a second %s counted again: get_expired %d, get_flushed %d", c.name, again.GetExpired, again.GetFlushed)
				}
			})
		}
	}
}

// TestCrawlerCounts checks what the crawler counts, as memcached's LRU
// crawler does (crawler_expired_eval): every item it frees in
// crawler_reclaimed, flushed ones included; only expired items never
// fetched in expired_unfetched; the analytics' expired only expired items.
func TestCrawlerCounts(t *testing.T) {
	e, clk := newTestEngine(t, 8)
	for i := 0; i < 4; i++ {
		e.Store(ModeSet, []byte(fmt.Sprint("f", i)), 0, 0, []byte("v"), 0)
	}
	get(t, e, "f0") // fetched or not, a flushed item is not expired_unfetched
	e.FlushAll(0)
	if n := e.CrawlOnce(); n != 4 {
		t.Fatalf("crawler freed %d flushed items, want 4", n)
	}
	st := e.Stats()
	if st.CrawlerReclaimed != 4 || st.ExpiredUnfetched != 0 || st.Expired != 0 || st.CurrItems != 0 || st.GetFlushed != 0 {
		t.Fatalf("after crawling 4 flushed items: crawler_reclaimed %d (want 4), expired_unfetched %d (0), expired %d (0), curr_items %d (0), get_flushed %d (0)",
			st.CrawlerReclaimed, st.ExpiredUnfetched, st.Expired, st.CurrItems, st.GetFlushed)
	}
	for i := 0; i < 3; i++ {
		e.Store(ModeSet, []byte(fmt.Sprint("x", i)), 0, 5, []byte("v"), 0)
	}
	get(t, e, "x0")
	clk.Advance(6)
	if n := e.CrawlOnce(); n != 3 {
		t.Fatalf("crawler freed %d expired items, want 3", n)
	}
	st = e.Stats()
	if st.CrawlerReclaimed != 7 || st.ExpiredUnfetched != 2 || st.Expired != 3 || st.GetExpired != 0 {
		t.Fatalf("after crawling 3 expired items (1 fetched): crawler_reclaimed %d (want 7), expired_unfetched %d (2), expired %d (3), get_expired %d (0)",
			st.CrawlerReclaimed, st.ExpiredUnfetched, st.Expired, st.GetExpired)
	}
	var classReclaims, classUnfetched uint64
	for _, c := range e.SlabStats() {
		classReclaims += c.CrawlerReclaims
		classUnfetched += c.ExpiredUnfetch
	}
	if classReclaims != 7 || classUnfetched != 2 {
		t.Errorf("stats items: crawler_reclaimed %d over the classes (want 7), expired_unfetched %d (2)", classReclaims, classUnfetched)
	}
}

// TestClassCommandCounters checks the per-class counters of "stats slabs"
// (get_hits, cmd_set, delete_hits, incr_hits, decr_hits, cas_hits,
// cas_badval, touch_hits): each command counts once, in the class of the
// item concerned (for cmd_set, of the item it stores), as memcached's
// slab_stats do.
func TestClassCommandCounters(t *testing.T) {
	small := []byte("s")
	big := []byte("b")
	bigValue := append([]byte("12345"), bytes.Repeat([]byte(" "), 3000)...) // a number, in a class of its own
	field := map[string]func(c ClassStats) uint64{
		"get_hits":    func(c ClassStats) uint64 { return c.GetHits },
		"cmd_set":     func(c ClassStats) uint64 { return c.SetCmds },
		"delete_hits": func(c ClassStats) uint64 { return c.DeleteHits },
		"incr_hits":   func(c ClassStats) uint64 { return c.IncrHits },
		"decr_hits":   func(c ClassStats) uint64 { return c.DecrHits },
		"cas_hits":    func(c ClassStats) uint64 { return c.CasHits },
		"cas_badval":  func(c ClassStats) uint64 { return c.CasBadval },
		"touch_hits":  func(c ClassStats) uint64 { return c.TouchHits },
	}
	cases := []struct {
		name  string
		op    func(e *Engine, cas uint64)
		field string
		// cmdSet: the command also counts in cmd_set (cas), in the
		// class of the item it brings.
		cmdSet bool
		// small: it counts in the small item's class: an append counts
		// cmd_set in the class of the data it brings, as memcached counts
		// set_cmds by the item it reads the data into.
		small bool
	}{
		{"get", func(e *Engine, _ uint64) { r, _ := e.Get(big); r.Release() }, "get_hits", false, false},
		{"mg", func(e *Engine, _ uint64) { r, _, _ := e.MetaGet(big, false); r.CountMetaHit(false); r.Release() }, "get_hits", false, false},
		{"set", func(e *Engine, _ uint64) { e.Store(ModeSet, big, 0, 0, bigValue, 0) }, "cmd_set", false, false},
		{"append", func(e *Engine, _ uint64) { e.Store(ModeAppend, big, 0, 0, []byte(" "), 0) }, "cmd_set", false, true},
		{"delete", func(e *Engine, _ uint64) { e.Delete(big, 0) }, "delete_hits", false, false},
		{"md", func(e *Engine, _ uint64) { e.MetaDelete(big, MetaDeleteOptions{}) }, "delete_hits", false, false},
		{"incr", func(e *Engine, _ uint64) {
			e.Delta(big, DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1})
		}, "incr_hits", false, false},
		{"decr", func(e *Engine, _ uint64) { e.Delta(big, DeltaOptions{ParseValue: codec.SafeStrtoull, Delta: 1}) }, "decr_hits", false, false},
		{"cas", func(e *Engine, cas uint64) { e.Store(ModeCAS, big, 0, 0, bigValue, cas) }, "cas_hits", true, false},
		{"cas stale", func(e *Engine, cas uint64) { e.Store(ModeCAS, big, 0, 0, bigValue, cas+100) }, "cas_badval", true, false},
		{"touch", func(e *Engine, _ uint64) { e.Touch(big, 0) }, "touch_hits", false, false},
		{"gat", func(e *Engine, _ uint64) { r, _ := e.GetAndTouch(big, 0); r.Release() }, "touch_hits", false, false},
		{"mg T", func(e *Engine, _ uint64) { r, _, _ := e.MetaGet(big, false); r.CountMetaHit(true); r.Release() }, "touch_hits", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newTestEngine(t, 8)
			e.Store(ModeSet, small, 0, 0, []byte("1"), 0)
			_, cas := e.Store(ModeSet, big, 0, 0, bigValue, 0)
			before := e.SlabStats()
			c.op(e, cas)
			after := e.SlabStats()
			for name, f := range field {
				counts := name == c.field || name == "cmd_set" && c.cmdSet
				var total uint64
				for i := range after {
					d := f(after[i]) - f(before[i])
					total += d
					if d != 0 && counts && (after[i].ChunkSize < len(bigValue)) != c.small {
						t.Errorf("%s counted in class %d (chunks of %d bytes), not the %s item's", name, i+1, after[i].ChunkSize,
							map[bool]string{false: "big", true: "small"}[c.small])
					}
				}
				want := uint64(0)
				if counts {
					want = 1
				}
				if total != want {
					t.Errorf("%s: +%d over the classes, want +%d", name, total, want)
				}
			}
		})
	}
}

// TestDeltaChunkedIsNonNumeric checks the order of memcached's do_add_delta:
// an empty value, or one memcached keeps in chunks (an item over 512 KiB
// with the default 1 MiB pages), is non-numeric before the CAS is checked;
// any other value meets the CAS check first.
func TestDeltaChunkedIsNonNumeric(t *testing.T) {
	k := []byte("k")
	// memcached's item: 48-byte header, key and NUL, value and "\r\n",
	// 8-byte CAS; chunked above 524,288 bytes.
	const lastWhole = 524288 - 48 - 1 - 1 - 2 - 8 // value bytes, key "k", flags 0
	number := func(n int) []byte { return append([]byte("1"), bytes.Repeat([]byte(" "), n-1)...) }
	cases := []struct {
		name     string
		value    []byte
		flags    uint32
		goodCAS  bool
		want     Status
		wantIncr uint64 // incr_hits after
	}{
		{"small number, stale cas", []byte("5"), 0, false, Exists, 0},
		{"small number, cas", []byte("5"), 0, true, OK, 1},
		{"not a number, stale cas", []byte("abc"), 0, false, Exists, 0},
		{"empty, stale cas", []byte{}, 0, false, NonNumeric, 0},
		{"largest whole item, stale cas", number(lastWhole), 0, false, Exists, 0},
		{"largest whole item, cas", number(lastWhole), 0, true, OK, 1},
		{"smallest chunked item, stale cas", number(lastWhole + 1), 0, false, NonNumeric, 0},
		{"smallest chunked item, cas", number(lastWhole + 1), 0, true, NonNumeric, 0},
		{"chunked by its flags, cas", number(lastWhole - 3), 1, true, NonNumeric, 0},
		{"largest whole item with flags, cas", number(lastWhole - 4), 1, true, OK, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newTestEngine(t, 8)
			st, cas := e.Store(ModeSet, k, c.flags, 0, c.value, 0)
			if st != Stored {
				t.Fatalf("store: %d", st)
			}
			if !c.goodCAS {
				cas++
			}
			if st, _ := e.Delta(k, DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: true, Delta: 1, CAS: cas}); st != c.want {
				t.Errorf("incr: status %d, want %d", st, c.want)
			}
			if got := e.Stats().IncrHits; got != c.wantIncr {
				t.Errorf("incr_hits %d, want %d", got, c.wantIncr)
			}
		})
	}
}
