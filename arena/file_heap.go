//go:build race

package arena

import (
	"fmt"
	"io"
	"os"
)

// NewFile is the race build's file-backed arena: the file's first
// pages*pageSize bytes are read into a heap slice, and Sync and Close
// write the slice back, so that the file holds the items after a stop as
// the shared mapping of the normal build does (though not after a
// crash).
func NewFile(path string, size, pageSize int) (*Arena, error) {
	a, err := New(size, pageSize)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("arena: %w", err)
	}
	if err := f.Truncate(int64(len(a.mem))); err != nil {
		f.Close()
		return nil, fmt.Errorf("arena: %s: %w", path, err)
	}
	if _, err := io.ReadFull(f, a.mem); err != nil {
		f.Close()
		return nil, fmt.Errorf("arena: %s: %w", path, err)
	}
	a.file = f
	return a, nil
}

// Wipe empties the whole arena and its file.
func (a *Arena) Wipe() error {
	clear(a.mem)
	return a.Sync()
}

// Sync writes the slice back to the file.
func (a *Arena) Sync() error {
	if a.file == nil || a.mem == nil {
		return nil
	}
	if _, err := a.file.WriteAt(a.mem, 0); err != nil {
		return fmt.Errorf("arena: sync: %w", err)
	}
	return nil
}
