package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// newGomemcache returns a gomemcache client for addr. The timeout is well
// above gomemcache's 500 ms default because the package's tests run in
// parallel, one of them pushing 400 MiB through loopback.
func newGomemcache(addr string, conns int) *memcache.Client {
	c := memcache.New(addr)
	c.Timeout = 5 * time.Second
	c.MaxIdleConns = conns
	return c
}

// mustGet fetches key and fails the test unless its value and flags are
// the ones given.
func mustGet(t *testing.T, c *memcache.Client, key string, value []byte, flags uint32) *memcache.Item {
	t.Helper()
	it, err := c.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(it.Value, value) {
		t.Fatalf("Get(%q) = %q (len %d), want %q (len %d)", key, abbrev(it.Value), len(it.Value), abbrev(value), len(value))
	}
	if it.Flags != flags {
		t.Fatalf("Get(%q) flags = %d, want %d", key, it.Flags, flags)
	}
	return it
}

// mustMiss fails the test unless key is absent.
func mustMiss(t *testing.T, c *memcache.Client, key string) {
	t.Helper()
	if it, err := c.Get(key); !errors.Is(err, memcache.ErrCacheMiss) {
		if err == nil {
			t.Fatalf("Get(%q) = %q, want ErrCacheMiss", key, abbrev(it.Value))
		}
		t.Fatalf("Get(%q): %v, want ErrCacheMiss", key, err)
	}
}

// mustErr fails the test unless err is want.
func mustErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func abbrev(b []byte) []byte {
	if len(b) > 40 {
		return append(append([]byte{}, b[:40]...), "..."...)
	}
	return b
}

// TestGomemcache exercises every operation of github.com/bradfitz/gomemcache
// (ASCII protocol) against one server. Subtests share the server and use
// their own keys; the flushing ones come last.
func TestGomemcache(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{memoryMiB: 64, maxItemSize: "1m"})
	c := newGomemcache(s.Addr, 25)
	defer c.Close()

	t.Run("SetGet", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "sg", Value: []byte("hello"), Flags: 42}))
		mustGet(t, c, "sg", []byte("hello"), 42)
		must(t, "Set overwrite", c.Set(&memcache.Item{Key: "sg", Value: []byte("world")}))
		mustGet(t, c, "sg", []byte("world"), 0)
		must(t, "Set max flags", c.Set(&memcache.Item{Key: "sg-flags", Value: []byte("f"), Flags: 0xffffffff}))
		mustGet(t, c, "sg-flags", []byte("f"), 0xffffffff)
		must(t, "Set empty", c.Set(&memcache.Item{Key: "sg-empty", Value: []byte{}}))
		mustGet(t, c, "sg-empty", []byte{}, 0)
		// Every byte value, including CR, LF and NUL: the data block is
		// length-delimited, never scanned.
		all := make([]byte, 0, 512)
		for i := 0; i < 512; i++ {
			all = append(all, byte(i))
		}
		all = append(all, "\r\nEND\r\n"...)
		must(t, "Set binary", c.Set(&memcache.Item{Key: "sg-binary", Value: all}))
		mustGet(t, c, "sg-binary", all, 0)
		long := strings.Repeat("k", 250)
		must(t, "Set 250-byte key", c.Set(&memcache.Item{Key: long, Value: []byte("long")}))
		mustGet(t, c, long, []byte("long"), 0)
		mustMiss(t, c, "sg-never-set")
	})

	t.Run("GetMulti", func(t *testing.T) {
		want := map[string]string{"gm-a": "1", "gm-b": "22", "gm-c": "333"}
		for k, v := range want {
			must(t, "Set", c.Set(&memcache.Item{Key: k, Value: []byte(v), Flags: uint32(len(v))}))
		}
		got, err := c.GetMulti([]string{"gm-a", "gm-missing1", "gm-b", "gm-c", "gm-missing2"})
		must(t, "GetMulti", err)
		if len(got) != len(want) {
			t.Fatalf("GetMulti returned %d items, want %d: %v", len(got), len(want), got)
		}
		for k, v := range want {
			it, ok := got[k]
			if !ok || string(it.Value) != v || it.Flags != uint32(len(v)) || it.Key != k {
				t.Fatalf("GetMulti[%q] = %+v, want value %q flags %d", k, it, v, len(v))
			}
		}
		got, err = c.GetMulti([]string{"gm-none1", "gm-none2"})
		must(t, "GetMulti all missing", err)
		if len(got) != 0 {
			t.Fatalf("GetMulti of missing keys = %v, want empty", got)
		}
	})

	t.Run("Add", func(t *testing.T) {
		must(t, "Add new", c.Add(&memcache.Item{Key: "add", Value: []byte("first")}))
		mustGet(t, c, "add", []byte("first"), 0)
		mustErr(t, "Add existing", c.Add(&memcache.Item{Key: "add", Value: []byte("second")}), memcache.ErrNotStored)
		mustGet(t, c, "add", []byte("first"), 0)
	})

	t.Run("Replace", func(t *testing.T) {
		mustErr(t, "Replace missing", c.Replace(&memcache.Item{Key: "rep", Value: []byte("x")}), memcache.ErrNotStored)
		mustMiss(t, c, "rep")
		must(t, "Set", c.Set(&memcache.Item{Key: "rep", Value: []byte("old"), Flags: 1}))
		must(t, "Replace existing", c.Replace(&memcache.Item{Key: "rep", Value: []byte("new"), Flags: 2}))
		mustGet(t, c, "rep", []byte("new"), 2)
	})

	t.Run("AppendPrepend", func(t *testing.T) {
		mustErr(t, "Append missing", c.Append(&memcache.Item{Key: "ap", Value: []byte("x")}), memcache.ErrNotStored)
		mustErr(t, "Prepend missing", c.Prepend(&memcache.Item{Key: "ap", Value: []byte("x")}), memcache.ErrNotStored)
		mustMiss(t, c, "ap")
		must(t, "Set", c.Set(&memcache.Item{Key: "ap", Value: []byte("mid"), Flags: 7}))
		// The flags of append/prepend are ignored: the item keeps its own.
		must(t, "Append", c.Append(&memcache.Item{Key: "ap", Value: []byte(">>"), Flags: 9}))
		must(t, "Prepend", c.Prepend(&memcache.Item{Key: "ap", Value: []byte("<<"), Flags: 9}))
		mustGet(t, c, "ap", []byte("<<mid>>"), 7)
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "cas", Value: []byte("v1")}))
		it := mustGet(t, c, "cas", []byte("v1"), 0)
		if it.CasID == 0 {
			t.Fatalf("Get returned CasID 0")
		}
		stale := *it
		it.Value = []byte("v2")
		must(t, "CompareAndSwap current", c.CompareAndSwap(it))
		it2 := mustGet(t, c, "cas", []byte("v2"), 0)
		if it2.CasID == stale.CasID {
			t.Fatalf("CasID unchanged (%d) after a successful CompareAndSwap", it2.CasID)
		}
		stale.Value = []byte("v3")
		mustErr(t, "CompareAndSwap stale", c.CompareAndSwap(&stale), memcache.ErrCASConflict)
		mustGet(t, c, "cas", []byte("v2"), 0)
		must(t, "Set", c.Set(&memcache.Item{Key: "cas", Value: []byte("v4")}))
		it2.Value = []byte("v5")
		mustErr(t, "CompareAndSwap after Set", c.CompareAndSwap(it2), memcache.ErrCASConflict)
		must(t, "Delete", c.Delete("cas"))
		mustErr(t, "CompareAndSwap deleted", c.CompareAndSwap(it2), memcache.ErrCacheMiss)
		mustMiss(t, c, "cas")
	})

	t.Run("Delete", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "del", Value: []byte("x")}))
		must(t, "Delete hit", c.Delete("del"))
		mustMiss(t, c, "del")
		mustErr(t, "Delete miss", c.Delete("del"), memcache.ErrCacheMiss)
	})

	t.Run("IncrementDecrement", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "n", Value: []byte("10"), Flags: 3}))
		incdec := func(incr bool, delta, want uint64) {
			t.Helper()
			var got uint64
			var err error
			if incr {
				got, err = c.Increment("n", delta)
			} else {
				got, err = c.Decrement("n", delta)
			}
			if err != nil || got != want {
				t.Fatalf("incr=%v by %d: got %d, %v; want %d", incr, delta, got, err, want)
			}
		}
		incdec(true, 5, 15)
		incdec(false, 3, 12)
		incdec(true, 88, 100)
		mustGet(t, c, "n", []byte("100"), 3)
		incdec(false, 1000, 0) // decrement stops at 0, never wraps
		it, err := c.Get("n")
		must(t, "Get after decrement", err)
		// memcached rewrites a shrinking number in place and pads it with
		// spaces ("100" becomes "0  "); an implementation may store "0"
		// instead, so compare the number, not the bytes.
		if strings.TrimRight(string(it.Value), " ") != "0" {
			t.Fatalf("value after decrement to 0 = %q", it.Value)
		}
		must(t, "Set max", c.Set(&memcache.Item{Key: "n", Value: []byte("18446744073709551615")}))
		incdec(true, 1, 0) // increment wraps at 2^64
		_, err = c.Increment("n-missing", 1)
		mustErr(t, "Increment missing", err, memcache.ErrCacheMiss)
		_, err = c.Decrement("n-missing", 1)
		mustErr(t, "Decrement missing", err, memcache.ErrCacheMiss)
		mustMiss(t, c, "n-missing")
		must(t, "Set text", c.Set(&memcache.Item{Key: "n-text", Value: []byte("abc")}))
		for _, op := range []string{"incr", "decr"} {
			if op == "incr" {
				_, err = c.Increment("n-text", 1)
			} else {
				_, err = c.Decrement("n-text", 1)
			}
			if err == nil || !strings.Contains(err.Error(), "cannot increment or decrement non-numeric value") {
				t.Fatalf("%s on non-numeric value: %v, want CLIENT_ERROR cannot increment or decrement non-numeric value", op, err)
			}
		}
		mustGet(t, c, "n-text", []byte("abc"), 0)
	})

	t.Run("TouchGetAndTouch", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "touch", Value: []byte("t"), Expiration: 100}))
		must(t, "Touch hit", c.Touch("touch", 200))
		mustGet(t, c, "touch", []byte("t"), 0)
		mustErr(t, "Touch miss", c.Touch("touch-missing", 10), memcache.ErrCacheMiss)
		it, err := c.GetAndTouch("touch", 300)
		must(t, "GetAndTouch hit", err)
		if string(it.Value) != "t" {
			t.Fatalf("GetAndTouch value = %q", it.Value)
		}
		_, err = c.GetAndTouch("touch-missing", 10)
		mustErr(t, "GetAndTouch miss", err, memcache.ErrCacheMiss)
	})

	t.Run("Expiration", func(t *testing.T) {
		// A negative expiration stores an item that is already expired.
		must(t, "Set exp -1", c.Set(&memcache.Item{Key: "exp-neg", Value: []byte("x"), Expiration: -1}))
		mustMiss(t, c, "exp-neg")
		// The server's clock ticks once a second: an item of n seconds
		// expires more than n-1 and at most n seconds after it is stored.
		// With n = 2 the items are certainly there just after they are
		// stored (it would take a stall of a whole second to miss them),
		// and they go within a few seconds; the wait polls, with a deadline.
		stored := time.Now()
		must(t, "Set exp 2", c.Set(&memcache.Item{Key: "exp-2s", Value: []byte("x"), Expiration: 2}))
		must(t, "Set exp 0", c.Set(&memcache.Item{Key: "exp-touched-short", Value: []byte("x")}))
		must(t, "Touch 2", c.Touch("exp-touched-short", 2))
		must(t, "Set exp 2", c.Set(&memcache.Item{Key: "exp-touched-long", Value: []byte("x"), Expiration: 2}))
		must(t, "Touch 100", c.Touch("exp-touched-long", 100))
		must(t, "Set exp 0", c.Set(&memcache.Item{Key: "exp-gat-short", Value: []byte("x")}))
		if _, err := c.GetAndTouch("exp-gat-short", 2); err != nil {
			t.Fatalf("GetAndTouch: %v", err)
		}
		must(t, "Set exp 100", c.Set(&memcache.Item{Key: "exp-100s", Value: []byte("x"), Expiration: 100}))
		must(t, "Set exp 0", c.Set(&memcache.Item{Key: "exp-never", Value: []byte("x")}))
		short := []string{"exp-2s", "exp-touched-short", "exp-gat-short"}
		for _, k := range short {
			mustGet(t, c, k, []byte("x"), 0)
		}
		for _, k := range short {
			for deadline := stored.Add(6 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				_, err := c.Get(k)
				if errors.Is(err, memcache.ErrCacheMiss) {
					break
				}
				if err != nil || time.Now().After(deadline) {
					t.Fatalf("Get(%q) %v after it was given 2 s: %v", k, time.Since(stored), err)
				}
			}
			if gone := time.Since(stored); gone < time.Second {
				t.Fatalf("%s, given 2 s, expired within %v", k, gone)
			}
		}
		mustGet(t, c, "exp-touched-long", []byte("x"), 0)
		mustGet(t, c, "exp-100s", []byte("x"), 0)
		mustGet(t, c, "exp-never", []byte("x"), 0)
	})

	t.Run("LargeValues", func(t *testing.T) {
		big := make([]byte, 1_000_000)
		for i := range big {
			big[i] = byte(i*7 + i>>8)
		}
		must(t, "Set 1,000,000 bytes", c.Set(&memcache.Item{Key: "big", Value: big}))
		mustGet(t, c, "big", big, 0)
		// Growing past the item size limit by append is refused as too
		// large (MemCachier's rule; memcached answers NOT_STORED) and
		// leaves the item as it was.
		if err := c.Append(&memcache.Item{Key: "big", Value: make([]byte, 100_000)}); err == nil || !strings.Contains(err.Error(), "SERVER_ERROR object too large for cache") {
			t.Fatalf("Append past the limit: %v, want SERVER_ERROR object too large for cache", err)
		}
		mustGet(t, c, "big", big, 0)

		huge := bytes.Repeat([]byte("h"), 2<<20)
		err := c.Set(&memcache.Item{Key: "big", Value: huge})
		if err == nil || !strings.Contains(err.Error(), "SERVER_ERROR object too large for cache") {
			t.Fatalf("Set 2 MiB: %v, want SERVER_ERROR object too large for cache", err)
		}
		// memcached unlinks the old item when a set fails for size, so
		// that a reader cannot see data older than the failed write.
		mustMiss(t, c, "big")
		err = c.Add(&memcache.Item{Key: "big-add", Value: huge})
		if err == nil || !strings.Contains(err.Error(), "SERVER_ERROR object too large for cache") {
			t.Fatalf("Add 2 MiB: %v, want SERVER_ERROR object too large for cache", err)
		}
		mustMiss(t, c, "big-add")
		// The connection swallowed the refused data block and still works.
		must(t, "Set after too large", c.Set(&memcache.Item{Key: "after-big", Value: []byte("ok")}))
		mustGet(t, c, "after-big", []byte("ok"), 0)
	})

	t.Run("Ping", func(t *testing.T) {
		must(t, "Ping", c.Ping())
	})

	t.Run("Concurrent", func(t *testing.T) {
		const workers, rounds = 20, 100
		must(t, "Set counter", c.Set(&memcache.Item{Key: "conc-counter", Value: []byte("0")}))
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				errs <- func() error {
					for r := 0; r < rounds; r++ {
						key := fmt.Sprintf("conc-%d-%d", w, r%10)
						val := []byte(strings.Repeat(fmt.Sprintf("w%d r%d;", w, r), 1+r%37))
						if err := c.Set(&memcache.Item{Key: key, Value: val, Flags: uint32(w<<16 | r)}); err != nil {
							return fmt.Errorf("Set %s: %v", key, err)
						}
						it, err := c.Get(key)
						if err != nil {
							return fmt.Errorf("Get %s: %v", key, err)
						}
						if !bytes.Equal(it.Value, val) || it.Flags != uint32(w<<16|r) {
							return fmt.Errorf("Get %s = %q flags %d, want %q flags %d", key, abbrev(it.Value), it.Flags, abbrev(val), w<<16|r)
						}
						if _, err := c.Increment("conc-counter", 1); err != nil {
							return fmt.Errorf("Increment: %v", err)
						}
					}
					return nil
				}()
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		it, err := c.Get("conc-counter")
		must(t, "Get counter", err)
		if n, _ := strconv.Atoi(string(it.Value)); n != workers*rounds {
			t.Fatalf("counter = %q, want %d: increments were lost", it.Value, workers*rounds)
		}
	})

	t.Run("Close", func(t *testing.T) {
		must(t, "Close", c.Close())
		// The client stays usable after Close: it dials again.
		must(t, "Set after Close", c.Set(&memcache.Item{Key: "after-close", Value: []byte("v")}))
		mustGet(t, c, "after-close", []byte("v"), 0)
	})

	t.Run("FlushAll", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "fa-1", Value: []byte("x")}))
		must(t, "Set", c.Set(&memcache.Item{Key: "fa-2", Value: []byte("y"), Expiration: 100}))
		must(t, "FlushAll", c.FlushAll())
		mustMiss(t, c, "fa-1")
		mustMiss(t, c, "fa-2")
		mustMiss(t, c, "sg")
		// Items written after the flush, even within the same second,
		// are kept.
		must(t, "Set after flush", c.Set(&memcache.Item{Key: "fa-1", Value: []byte("z")}))
		mustGet(t, c, "fa-1", []byte("z"), 0)
	})

	t.Run("DeleteAll", func(t *testing.T) {
		must(t, "Set", c.Set(&memcache.Item{Key: "da-1", Value: []byte("x")}))
		must(t, "DeleteAll", c.DeleteAll())
		mustMiss(t, c, "da-1")
		mustMiss(t, c, "fa-1")
		must(t, "Set after DeleteAll", c.Set(&memcache.Item{Key: "da-1", Value: []byte("z")}))
		mustGet(t, c, "da-1", []byte("z"), 0)
	})

	if s.Exited() {
		t.Fatalf("server exited; its output:\n%s", s.Output())
	}
}
