package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openFileMemory makes a Memory of memMiB on the memory file path, with
// no crawler, closed at the test's end unless the test closes it.
func openFileMemory(t *testing.T, path string, memMiB int64, maxItem int) *Memory {
	t.Helper()
	m, err := NewMemory(Config{MemoryBytes: memMiB << 20, MaxItemSize: maxItem, CrawlInterval: -1, MemoryFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stopWithItems fills cache 1 of a new Memory of memMiB on the memory
// file path with n items, stops it (gracefully, with Persist, or as a
// crash without) and returns the pages the cache held.
func stopWithItems(t *testing.T, path string, memMiB int64, n int, graceful bool) int {
	t.Helper()
	m := openFileMemory(t, path, memMiB, 0)
	e := newFileEngine(t, m, memMiB<<20)
	fillCache(t, e, "k", n)
	pages := e.Pages()
	if graceful {
		if err := m.Persist(); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	m.Close()
	return pages
}

// newFileEngine makes cache 1's engine on m, closed at the test's end.
func newFileEngine(t *testing.T, m *Memory, limit int64) *Engine {
	t.Helper()
	e, err := m.NewEngine(CacheConfig{ID: 1, LimitBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// savedItem is what a warm restart must give back of an item.
type savedItem struct {
	value string
	flags uint32
	cas   uint64
	exp   uint32
}

// fillCache stores n items in e, every third with flags, every fifth
// with an expiry an hour away, and returns them by key.
func fillCache(t *testing.T, e *Engine, prefix string, n int) map[string]savedItem {
	t.Helper()
	items := make(map[string]savedItem, n)
	for i := range n {
		k := fmt.Sprintf("%s-%d", prefix, i)
		v := strings.Repeat(string(rune('a'+i%26)), 10+i%300)
		var flags uint32
		if i%3 == 0 {
			flags = uint32(i)
		}
		var exptime int64
		if i%5 == 0 {
			exptime = 3600
		}
		if st, _ := e.Store(ModeSet, []byte(k), flags, exptime, []byte(v), 0); st != Stored {
			t.Fatalf("store %s: %v", k, st)
		}
		r, ok := e.Get([]byte(k))
		if !ok {
			t.Fatalf("%s missing after its store", k)
		}
		exp, _ := r.Expiry()
		items[k] = savedItem{value: v, flags: flags, cas: r.CAS(), exp: exp}
		r.Release()
	}
	return items
}

// checkCache fails unless e holds exactly items.
func checkCache(t *testing.T, e *Engine, items map[string]savedItem) {
	t.Helper()
	for k, want := range items {
		r, ok := e.Get([]byte(k))
		if !ok {
			t.Fatalf("%s lost", k)
		}
		exp, _ := r.Expiry()
		got := savedItem{value: string(r.Value()), flags: r.Flags(), cas: r.CAS(), exp: exp}
		r.Release()
		if got != want {
			t.Fatalf("%s: got %+v, want %+v", k, got, want)
		}
	}
	if st := e.Stats(); st.CurrItems != uint64(len(items)) {
		t.Fatalf("curr_items %d, want %d", st.CurrItems, len(items))
	}
}

func TestWarmRestartKeepsEveryCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory")
	m := openFileMemory(t, path, 64, 0)
	if r := m.Restored(); r.Reason != "a new memory file" {
		t.Fatalf("first start: %+v", r)
	}
	caches := map[uint32]map[string]savedItem{}
	engines := map[uint32]*Engine{}
	for _, id := range []uint32{7, 9, 11} {
		e, err := m.NewEngine(CacheConfig{ID: id, LimitBytes: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
		engines[id] = e
		caches[id] = fillCache(t, e, fmt.Sprint("c", id), 20000)
	}
	engines[9].FlushAll(7200) // a delayed flush survives too
	deleted := fmt.Sprint("c7-", 4)
	engines[7].Delete([]byte(deleted), 0)
	delete(caches[7], deleted)
	if err := m.Persist(); err != nil {
		t.Fatal(err)
	}
	if _, ok := engines[7].Get([]byte("c7-1")); ok {
		t.Fatal("a persisted engine still serves")
	}
	for _, e := range engines {
		e.Close()
	}
	started := m.Clock().started
	m.Close()

	m = openFileMemory(t, path, 64, 0)
	t.Cleanup(func() { m.Close() }) // after the engines' Cleanups, which run first
	r := m.Restored()
	if r.Reason != "" || r.Caches != 3 || r.Items != 3*20000-1 {
		t.Fatalf("restore: %+v", r)
	}
	if m.Clock().started != started {
		t.Fatalf("clock origin %d, was %d", m.Clock().started, started)
	}
	if _, err := os.Stat(path + ".meta"); !os.IsNotExist(err) {
		t.Fatalf("the metadata file is still there after the start: %v", err)
	}
	for _, id := range []uint32{7, 9} {
		e, err := m.NewEngine(CacheConfig{ID: id, LimitBytes: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		checkCache(t, e, caches[id])
		engines[id] = e
	}
	if dropped := m.DropUnrestored(); !slices.Equal(dropped, []uint32{11}) || m.Restored().Items != 2*20000-1 {
		t.Fatalf("dropped %v, want cache 11's items", dropped)
	}
	if got := engines[9].oldestLive.Load(); got == 0 {
		t.Fatal("cache 9's delayed flush was lost")
	}
	// New CAS values stay unique: above every restored one.
	var maxCAS uint64
	for _, it := range caches[7] {
		maxCAS = max(maxCAS, it.cas)
	}
	_, cas := engines[7].Store(ModeSet, []byte("new"), 0, 0, []byte("v"), 0)
	if cas <= maxCAS {
		t.Fatalf("new CAS %d not above the restored %d", cas, maxCAS)
	}
	// Cache 11's pages went back to the pool: a new cache can take all
	// the memory the others leave.
	if free := m.FreePages(); free != m.Pages()-engines[7].Pages()-engines[9].Pages() {
		t.Fatalf("%d pages free of %d, caches hold %d and %d", free, m.Pages(), engines[7].Pages(), engines[9].Pages())
	}
}

func TestWarmRestartStartsEmptyWithoutMetadata(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory")
	stopWithItems(t, path, 16, 1000, false) // a crash: no Persist
	m := openFileMemory(t, path, 16, 0)
	t.Cleanup(func() { m.Close() }) // after the engines' Cleanups, which run first
	if r := m.Restored(); !strings.Contains(r.Reason, "did not stop gracefully") {
		t.Fatalf("restart after a crash: %+v", r)
	}
	e := newFileEngine(t, m, 16<<20)
	if _, ok := e.Get([]byte("k-1")); ok || e.Stats().CurrItems != 0 {
		t.Fatal("an item came back without metadata")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "k-1") {
		t.Fatal("the old items' bytes are still in the memory file")
	}
}

func TestWarmRestartRefusesOtherSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		memMiB  int64
		maxItem int
		want    string
	}{
		{"memory", 32, 0, "--memory"},
		{"max item size", 16, 2 << 20, "--max-item-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory")
			stopWithItems(t, path, 16, 1000, true)
			m := openFileMemory(t, path, tc.memMiB, tc.maxItem)
			t.Cleanup(func() { m.Close() }) // after the engines' Cleanups, which run first
			if r := m.Restored(); !strings.Contains(r.Reason, tc.want) {
				t.Fatalf("restart with another %s: %+v", tc.name, r)
			}
			if e := newFileEngine(t, m, 16<<20); e.Stats().CurrItems != 0 {
				t.Fatal("items came back under other settings")
			}
		})
	}
}

func TestWarmRestartRefusesCorruptSegments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory")
	stopWithItems(t, path, 16, 1000, true)
	// A key length of zero in the first item of the first page written:
	// page 0 (the pool hands pages out from the start), after its
	// segment header.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0}, 8+20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m := openFileMemory(t, path, 16, 0)
	t.Cleanup(func() { m.Close() }) // after the engines' Cleanups, which run first
	if r := m.Restored(); !strings.Contains(r.Reason, "inconsistent") {
		t.Fatalf("restart on a corrupt page: %+v", r)
	}
}

func TestWarmRestartShrinksToALowerLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory")
	before := stopWithItems(t, path, 32, 100000, true)
	m := openFileMemory(t, path, 32, 0)
	t.Cleanup(func() { m.Close() }) // after the engines' Cleanups, which run first
	e := newFileEngine(t, m, 8<<20)
	if e.Pages() > 8 || before <= 8 {
		t.Fatalf("pages %d after a restore under an 8-page limit (had %d)", e.Pages(), before)
	}
	if m.FreePages() != m.Pages()-e.Pages() {
		t.Fatalf("%d pages free of %d, the cache holds %d", m.FreePages(), m.Pages(), e.Pages())
	}
}
