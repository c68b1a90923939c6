package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/memhive/memhive/internal/atomicfile"
	"github.com/memhive/memhive/slab"
)

// Warm restart, memcached's -e: with Config.MemoryFile the arena is a
// shared mapping of that file, and items refer to each other only by
// offsets, so the pages a process leaves in the file are valid for the
// next one as they are. What the pages do not hold (each cache's
// segments' bookkeeping, its CAS counters, its flush time, the clock's
// origin, the settings the layout depends on) Persist writes to the
// metadata file beside it at a graceful stop, after the pages are synced.
// NewMemory reads and deletes that file before anything is served, so a
// process that dies later leaves none behind, and the next start, finding
// none, wipes the memory file rather than trust pages written after the
// last graceful stop. The metadata is checked against this process's
// settings and against the pages themselves (CheckState) before any item
// is restored; any mismatch starts every cache empty.

// metaFormat is the metadata file's format; see also slab.SegLayout.
const metaFormat = 1

// maxStripes bounds a restored cache's stripes (stripesFor picks at most
// 16): a metadata file asking for more is not one this code wrote.
const maxStripes = 1024

// maxKeyLength bounds the keys of restored items (memcached's
// KEY_MAX_LENGTH).
const maxKeyLength = 250

// memoryMeta is the metadata file.
type memoryMeta struct {
	Format       int         `json:"format"`
	Layout       string      `json:"layout"`
	MemoryBytes  int64       `json:"memory_bytes"`
	MaxItemSize  int         `json:"max_item_size"`
	GrowthFactor float64     `json:"growth_factor"`
	PageSize     int         `json:"page_size"`
	Pages        int         `json:"pages"`
	Align        int         `json:"align"`
	ClockStarted int64       `json:"clock_started"` // unix time of server-relative 0
	StoppedAt    int64       `json:"stopped_at"`    // unix time
	Caches       []cacheMeta `json:"caches"`
}

// cacheMeta is one cache's engine.
type cacheMeta struct {
	ID           uint32       `json:"id"`
	OldestLive   uint32       `json:"oldest_live"`
	FlushCrawled uint32       `json:"flush_crawled"`
	Stripes      []stripeMeta `json:"stripes"`
	items        int          // linked, counted by CheckState
}

// stripeMeta is one lock stripe.
type stripeMeta struct {
	CAS       uint64        `json:"cas"`
	OldestCAS uint64        `json:"oldest_cas"`
	Items     int           `json:"items"`
	Alloc     slab.SegState `json:"alloc"`
}

// Restored is what NewMemory found in its memory file.
type Restored struct {
	// Reason says why the memory started empty; empty when caches were
	// restored.
	Reason string
	Caches int // caches with items to restore (less those dropped)
	Items  int // their linked items
	// Took is from reading the metadata to DropUnrestored, which the
	// caller runs once every cache has its engine: the whole restore.
	Took time.Duration
}

// Restored reports what NewMemory found in Config.MemoryFile.
func (m *Memory) Restored() Restored {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restoredNote
}

// metaPath is the metadata file of a memory file.
func metaPath(memoryFile string) string { return memoryFile + ".meta" }

// loadMeta reads the metadata file beside the memory file and deletes it,
// returning why nothing can be restored when that is so.
func loadMeta(memoryFile string, fileIsNew bool) (*memoryMeta, string) {
	path := metaPath(memoryFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if fileIsNew {
			return nil, "a new memory file"
		}
		return nil, fmt.Sprintf("no metadata file %s: the last run did not stop gracefully", path)
	}
	if err != nil {
		return nil, fmt.Sprintf("metadata file: %v", err)
	}
	// Gone before anything is served: a crash from here on leaves pages
	// that no metadata describes, and the next start wipes them.
	if err := os.Remove(path); err != nil {
		return nil, fmt.Sprintf("metadata file cannot be removed: %v", err)
	}
	var meta memoryMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Sprintf("metadata file %s is unreadable: %v", path, err)
	}
	return &meta, ""
}

// checkMeta compares the metadata with m's settings and the pages; it
// returns why they do not match, and otherwise the restorable caches by
// id, with the pages they hold marked in used.
func (m *Memory) checkMeta(meta *memoryMeta, used []bool) (map[uint32]*cacheMeta, string) {
	want := []struct {
		what      string
		got, have any
	}{
		{"format", meta.Format, metaFormat},
		{"layout", meta.Layout, slab.SegLayout},
		{"--memory (bytes)", meta.MemoryBytes, m.cfg.MemoryBytes},
		{"--max-item-size", meta.MaxItemSize, m.cfg.MaxItemSize},
		{"--growth-factor", meta.GrowthFactor, m.cfg.GrowthFactor},
		{"page size", meta.PageSize, m.PageSize()},
		{"pages", meta.Pages, m.arena.Pages()},
		{"item alignment", meta.Align, m.items.Align()},
	}
	for _, w := range want {
		if w.got != w.have {
			return nil, fmt.Sprintf("the memory file was written with %s %v, this run has %v", w.what, w.got, w.have)
		}
	}
	if now := time.Now().Unix(); meta.ClockStarted <= 0 || meta.ClockStarted > now || meta.StoppedAt > now+60 {
		return nil, fmt.Sprintf("the clock's origin %d or stop time %d is in the future", meta.ClockStarted, meta.StoppedAt)
	}
	caches := make(map[uint32]*cacheMeta, len(meta.Caches))
	for i := range meta.Caches {
		c := &meta.Caches[i]
		if _, dup := caches[c.ID]; dup || len(c.Stripes) == 0 || len(c.Stripes) > maxStripes || len(c.Stripes)&(len(c.Stripes)-1) != 0 {
			return nil, fmt.Sprintf("cache %d: listed twice, or %d stripes", c.ID, len(c.Stripes))
		}
		for j := range c.Stripes {
			n, err := slab.CheckState(m.items, m.PageSize(), &c.Stripes[j].Alloc, used, maxKeyLength)
			if err != nil {
				return nil, fmt.Sprintf("cache %d stripe %d: %v", c.ID, j, err)
			}
			c.items += n
		}
		caches[c.ID] = c
	}
	return caches, ""
}

// restore reads the memory file's metadata and, if it describes the
// pages and this process's settings, keeps the caches it lists for their
// engines to claim (NewEngine with their ID), with their pages out of the
// pool; otherwise it wipes the file. It returns the clock's origin to
// resume, 0 for a new one.
func (m *Memory) restore(fileIsNew bool) (clockStarted int64) {
	start := time.Now()
	meta, reason := loadMeta(m.cfg.MemoryFile, fileIsNew)
	var caches map[uint32]*cacheMeta
	used := make([]bool, m.arena.Pages())
	if meta != nil {
		caches, reason = m.checkMeta(meta, used)
	}
	if reason != "" {
		if err := m.arena.Wipe(); err != nil {
			reason += "; " + err.Error()
		}
		m.restoredNote = Restored{Reason: reason}
		return 0
	}
	m.pool.Remove(used)
	m.restoring = caches
	for _, c := range caches {
		m.restoredNote.Caches++
		m.restoredNote.Items += c.items
	}
	m.restoreStart = start
	return meta.ClockStarted
}

// claimRestored hands the restored state of cache id to its engine, once.
func (m *Memory) claimRestored(id uint32) *cacheMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.restoring[id]
	delete(m.restoring, id)
	return c
}

// DropUnrestored frees the pages of the restored caches no engine has
// claimed (caches deleted while the server was down), takes them out of
// Restored's counts, and returns their ids. Call it once every cache that still exists has its engine.
func (m *Memory) DropUnrestored() []uint32 {
	m.mu.Lock()
	caches := m.restoring
	m.restoring = nil
	if m.restoredNote.Reason == "" {
		m.restoredNote.Took = time.Since(m.restoreStart)
	}
	m.mu.Unlock()
	var ids []uint32
	for id, c := range caches {
		ids = append(ids, id)
		m.mu.Lock()
		m.restoredNote.Caches--
		m.restoredNote.Items -= c.items
		m.mu.Unlock()
		for _, st := range c.Stripes {
			for _, s := range st.Alloc.Segments {
				m.releasePage(int(s.Page))
			}
			for _, p := range st.Alloc.Spare {
				m.releasePage(int(p))
			}
		}
	}
	return ids
}

// releasePage empties page and returns it to the pool.
func (m *Memory) releasePage(page int) {
	m.arena.Release(page)
	m.pool.Put(page)
}

// restoreFrom makes the new engine e (its stripes made, nothing served)
// the cache c describes: its flush state, each stripe's CAS counters,
// segments and index. A cache whose limit is now lower gives back its
// oldest pages.
func (e *Engine) restoreFrom(c *cacheMeta) {
	e.oldestLive.Store(c.OldestLive)
	e.flushCrawled.Store(c.FlushCrawled)
	pages := 0
	for i := range e.stripes {
		s, st := &e.stripes[i], &c.Stripes[i]
		s.mu.Lock()
		s.cas, s.oldestCAS = st.CAS, st.OldestCAS
		n := initialBuckets
		for n+n/2 < st.Items {
			n *= 2
		}
		freeBuckets(s.buckets)
		s.buckets, s.bmask = newBuckets(n), uint64(n-1)
		s.alloc.Restore(&st.Alloc, func(it slab.Handle) {
			h := hash(s.items.Key(it))
			if e.stripeFor(h) != s {
				return // not this stripe's key: left as dead bytes
			}
			s.indexLocked(h, it)
		})
		pages += len(st.Alloc.Segments) + len(st.Alloc.Spare)
		s.mu.Unlock()
	}
	e.quota.taken.Add(int64(pages))
}

// Persist detaches every engine of m from its pages and writes the
// metadata that lets the next process restore them (see restore): the
// engines find and store nothing afterwards, and closing them leaves the
// pages as they are. Call it at a graceful stop, once nothing is served;
// it fails without Config.MemoryFile.
func (m *Memory) Persist() error {
	if m.cfg.MemoryFile == "" {
		return errors.New("engine: no memory file to persist to")
	}
	m.mu.Lock()
	engines := make([]*Engine, 0, len(m.engines))
	for e := range m.engines {
		engines = append(engines, e)
	}
	m.mu.Unlock()
	meta := memoryMeta{
		Format: metaFormat, Layout: slab.SegLayout,
		MemoryBytes: m.cfg.MemoryBytes, MaxItemSize: m.cfg.MaxItemSize, GrowthFactor: m.cfg.GrowthFactor,
		PageSize: m.PageSize(), Pages: m.arena.Pages(), Align: m.items.Align(),
		ClockStarted: m.clock.started,
	}
	for _, e := range engines {
		if c, ok := e.detach(); ok {
			meta.Caches = append(meta.Caches, c)
		}
	}
	meta.StoppedAt = time.Now().Unix()
	if err := m.arena.Sync(); err != nil {
		return err
	}
	return atomicfile.WriteJSON(metaPath(m.cfg.MemoryFile), &meta)
}

// detach stops e's crawler and hands its pages over to the metadata: it
// returns its state and leaves it empty and closed to new items, its
// pages untouched (Persist). false when e was closed already.
func (e *Engine) detach() (cacheMeta, bool) {
	e.stopCrawling()
	e.resizeMu.Lock()
	defer e.resizeMu.Unlock()
	if e.closed {
		return cacheMeta{}, false
	}
	e.closed = true
	e.quota.limit.Store(0)
	c := cacheMeta{ID: e.id, OldestLive: e.oldestLive.Load(), FlushCrawled: e.flushCrawled.Load()}
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		c.Stripes = append(c.Stripes, stripeMeta{CAS: s.cas, OldestCAS: s.oldestCAS, Items: s.count, Alloc: s.alloc.State()})
		s.alloc.Detach()
		freeBuckets(s.buckets)
		s.buckets, s.bmask = make([]slab.Handle, 1), 0
		s.count, s.bytes, s.expiring = 0, 0, 0
		s.mu.Unlock()
	}
	e.quota.taken.Store(0)
	return c, true
}
