//go:build !race

package arena

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MapWords returns n zeroed words: mapped outside the Go heap (anonymous,
// private, MAP_NORESERVE: RSS grows as words are first written) when n is
// at least mapWordsMin, on the heap otherwise. Free it with FreeWords.
func MapWords(n int) ([]uint32, error) {
	if n < mapWordsMin {
		return make([]uint32, n), nil
	}
	b, err := unix.Mmap(-1, 0, n*4, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("arena: mmap %d words: %w", n, err)
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), n), nil
}

func freeMappedWords(w []uint32) error {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), cap(w)*4)
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("arena: munmap %d words: %w", cap(w), err)
	}
	return nil
}

// heapWords reports whether MapWords keeps every array on the heap.
const heapWords = false
