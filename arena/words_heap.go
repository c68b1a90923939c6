//go:build race

package arena

// MapWords returns n zeroed words on the heap: the race build's arrays
// (see the package doc's Race builds), instrumented like the arena.
func MapWords(n int) ([]uint32, error) { return make([]uint32, n), nil }

func freeMappedWords([]uint32) error { return nil }

// heapWords reports whether MapWords keeps every array on the heap.
const heapWords = true
