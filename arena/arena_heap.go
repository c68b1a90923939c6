//go:build race

package arena

// New allocates size bytes, rounded down to whole pages of pageSize, as an
// ordinary heap slice. This is the race build's arena (see the package doc):
// same API and semantics as the mmap'd one, except that the memory counts
// towards the Go heap, is fully charged to RSS as soon as it is touched, and
// no NUMA binding is done, so Node is always 0.
func New(size, pageSize int) (*Arena, error) {
	pages, err := pageCount(size, pageSize)
	if err != nil {
		return nil, err
	}
	return &Arena{
		mem:      make([]byte, pages*pageSize),
		pageSize: pageSize,
		pages:    pages,
		group:    1,
	}, nil
}

// Release empties page: its contents read as zero afterwards. The heap build
// cannot return the memory to the kernel. page must be in [0, Pages()).
func (a *Arena) Release(page int) {
	lo, hi := a.pageRange(page)
	clear(a.mem[lo:hi])
}

// Close drops the region; every slice of Mem must be dropped too. Calling
// Close again does nothing.
func (a *Arena) Close() error {
	var err error
	if a.file != nil {
		err = a.Sync()
		a.file.Close()
		a.file = nil
	}
	a.mem = nil
	return err
}

// huge is empty in the heap build.
type huge struct{}

// CollapseWritten does nothing in the heap build: its memory is the Go
// heap's, whose pages the runtime manages.
func (a *Arena) CollapseWritten() (collapsed int, again bool) { return 0, false }
