//go:build !race

package arena

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// NewFile maps size bytes, rounded down to whole pages of pageSize, of
// the file at path as a shared mapping, creating the file or setting its
// length as needed: what the items' pages hold then lives in the file (on
// /dev/shm, in the kernel's shared memory) and outlives the process, so a
// restarted one can map it again and find its items where they were (the
// warm restart of engine.Memory). The contents are the file's: Wipe
// empties them. Release punches the page out of the file, so that its
// memory goes back to the kernel as an anonymous arena's does. No NUMA
// binding is done.
func NewFile(path string, size, pageSize int) (*Arena, error) {
	pages, err := pageCount(size, pageSize)
	if err != nil {
		return nil, err
	}
	n := pages * pageSize
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("arena: %w", err)
	}
	fail := func(err error) (*Arena, error) {
		f.Close()
		return nil, fmt.Errorf("arena: %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	// A write to a page of a shared file mapping that the file system
	// has no room for kills the process with SIGBUS: refuse a file that
	// could not grow to its whole length.
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil {
		var held int64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			held = sys.Blocks * 512
		}
		if free := int64(fs.Bavail) * fs.Bsize; free+held < int64(n) {
			return fail(fmt.Errorf("its file system has %d MiB free, the memory needs %d MiB", (free+held)>>20, n>>20))
		}
	}
	if st.Size() != int64(n) {
		if err := f.Truncate(int64(n)); err != nil {
			return fail(err)
		}
	}
	mapped, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap %d bytes: %w", n, err))
	}
	// No MADV_HUGEPAGE, as for an anonymous arena, and CollapseWritten
	// leaves a file's arena alone: its pages are the page cache's, and
	// whether they may be huge is the file system's choice (tmpfs's
	// huge= option), not the process's.
	a := &Arena{
		mem:      mapped[:n:n],
		pageSize: pageSize,
		pages:    pages,
		mapped:   mapped,
		osPage:   os.Getpagesize(),
		group:    1,
		file:     f,
	}
	return a, nil
}

// Wipe empties the whole arena, which then reads as zero: a file-backed
// one is cut to nothing and set to its length again, which frees its
// memory; an anonymous one releases every page.
func (a *Arena) Wipe() error {
	if a.file == nil {
		for p := range a.pages {
			a.Release(p)
		}
		return nil
	}
	if err := a.file.Truncate(0); err != nil {
		return fmt.Errorf("arena: wipe: %w", err)
	}
	if err := a.file.Truncate(int64(len(a.mem))); err != nil {
		return fmt.Errorf("arena: wipe: %w", err)
	}
	return nil
}

// Sync writes a file-backed arena's pages to its file (msync), so that
// what they hold is on disk for a file on a disk, and reports the
// error; an anonymous arena has nothing to sync.
func (a *Arena) Sync() error {
	if a.file == nil || a.mapped == nil {
		return nil
	}
	if err := unix.Msync(a.mapped, unix.MS_SYNC); err != nil {
		return fmt.Errorf("arena: msync: %w", err)
	}
	return nil
}

// punch frees the file's bytes in [lo, hi), which then read as zero;
// false when the file system cannot.
func (a *Arena) punch(lo, hi int) bool {
	err := unix.Fallocate(int(a.file.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(lo), int64(hi-lo))
	return err == nil
}
