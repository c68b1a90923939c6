//go:build linux && !race

package arena

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bindSpans sets the memory policy of each span of region (a mapping made
// by mmap, so its start is OS-page aligned) to prefer the span's node. A
// span's length may run past len(region) to the end of its last OS page,
// which the kernel maps along with the region.
func bindSpans(region []byte, spans []span) error {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(region)))
	for _, s := range spans {
		if err := mbind(base+uintptr(s.off), s.len, unix.MPOL_PREFERRED, s.node); err != nil {
			return fmt.Errorf("arena: mbind node %d: %w", s.node, err)
		}
	}
	return nil
}

// unbind returns region to the default policy (allocate on the faulting
// CPU's node), undoing a bindSpans that failed half way.
func unbind(region []byte) error {
	return mbind(uintptr(unsafe.Pointer(unsafe.SliceData(region))), len(region), unix.MPOL_DEFAULT, -1)
}

// mbind is mbind(2) with a one-node mask (node < 0: empty mask). The
// address is off-heap, so holding it as a uintptr is safe.
func mbind(addr uintptr, length, mode, node int) error {
	var mask [maxNodeID/64 + 1]uint64
	var maskPtr, maxNode uintptr
	if node >= 0 {
		mask[node/64] = 1 << (node % 64)
		maskPtr = uintptr(unsafe.Pointer(&mask[0]))
		// The kernel reads maxnode-1 bits (a historical off-by-one that
		// every caller, numactl included, compensates for).
		maxNode = uintptr((node/64+1)*64 + 1)
	}
	_, _, errno := unix.Syscall6(unix.SYS_MBIND, addr, uintptr(length), uintptr(mode), maskPtr, maxNode, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
