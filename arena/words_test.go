package arena

import (
	"runtime"
	"testing"
)

// TestWords: arrays of every size read zero, hold what is written, and
// are freed without error; a large one lies outside the Go heap (except
// in the race build, whose arrays are on the heap by design).
func TestWords(t *testing.T) {
	for _, n := range []int{1, 1024, mapWordsMin - 1, mapWordsMin, 1 << 20} {
		w, err := MapWords(n)
		if err != nil {
			t.Fatalf("MapWords(%d): %v", n, err)
		}
		if len(w) != n || cap(w) != n {
			t.Fatalf("MapWords(%d): len %d cap %d", n, len(w), cap(w))
		}
		for i := 0; i < n; i += max(1, n/97) {
			if w[i] != 0 {
				t.Fatalf("MapWords(%d): word %d is %d, want 0", n, i, w[i])
			}
			w[i] = uint32(i) + 1
		}
		for i := 0; i < n; i += max(1, n/97) {
			if w[i] != uint32(i)+1 {
				t.Fatalf("MapWords(%d): word %d reads %d after writing %d", n, i, w[i], i+1)
			}
		}
		if err := FreeWords(w); err != nil {
			t.Fatalf("FreeWords(%d words): %v", n, err)
		}
	}
}

// TestWordsOffHeap: a large array does not count towards the Go heap (in
// the race build it does, by design).
func TestWordsOffHeap(t *testing.T) {
	if heapWords {
		t.Skip("the race build keeps arrays on the heap")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := MapWords(4 << 20) // 16 MiB
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		w[i] = 1
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("a 16 MiB array grew the heap by %d bytes", grew)
	}
	if err := FreeWords(w); err != nil {
		t.Fatal(err)
	}
}
