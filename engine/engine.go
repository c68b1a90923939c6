package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgryski/go-farm"
	"github.com/memhive/memhive/arena"
	"github.com/memhive/memhive/slab"
)

// DefaultMaxItemSize is the default bound on key plus value (memcached -I):
// key + value must be less than it.
const DefaultMaxItemSize = 1 << 20

// Config sizes an Engine made by New, which owns its Memory, or a Memory
// made by NewMemory, whose engines share it.
type Config struct {
	MemoryBytes  int64   // item memory for the whole process (memcached -m)
	MaxItemSize  int     // key+value must be less than this; 0 means DefaultMaxItemSize
	GrowthFactor float64 // slab chunk-size growth factor; 0 means 1.25
	Stripes      int     // lock stripes; 0 picks from the memory size
	// CrawlInterval is how often the background crawler looks for expired
	// items; 0 means 10 s, negative disables it.
	CrawlInterval time.Duration
	Clock         *Clock // nil: a new clock ticking every second
	// MemoryFile, if set, backs the item memory with this file (on
	// /dev/shm, say) for warm restarts: see persist.go. It needs the
	// memory's own clock (Clock nil).
	MemoryFile string
}

// CacheConfig sizes one cache's Engine inside a shared Memory.
type CacheConfig struct {
	// ID names the cache in a memory file's metadata: an engine made
	// with the ID of a cache the file holds takes its items back.
	ID         uint32
	LimitBytes int64 // the cache's memory limit; at least one page is granted
	Stripes    int   // lock stripes; 0 picks from the limit
	// CrawlInterval is how often the background crawler looks for expired
	// items; 0 means 10 s, negative disables it.
	CrawlInterval time.Duration
}

// Memory is the process's item memory: one arena of pages, the page pool
// and the size classes, shared by every cache's Engine. Each engine takes
// pages from the pool up to its own limit and gives them back when it
// shrinks or closes, so the arena bounds the whole process while each
// cache evicts only its own items.
type Memory struct {
	cfg      Config
	arena    *arena.Arena
	pool     *slab.Pool
	classes  slab.Classes
	items    slab.SegItems
	clock    *Clock
	ownClock bool

	mu sync.Mutex // guards the fields below
	// engines are the engines made from m and not closed, for Persist.
	engines map[*Engine]struct{}
	// restoring holds, by cache id, the restored caches no engine has
	// claimed yet (persist.go).
	restoring    map[uint32]*cacheMeta
	restoredNote Restored
	restoreStart time.Time
	// The goroutine giving written memory huge pages (collapseHuge).
	stopHuge  chan struct{}
	hugeDone  sync.WaitGroup
	closeOnce sync.Once
}

// hugeInterval is how often written item memory is looked over for spans
// to give transparent huge pages (arena.Arena.CollapseWritten). The newest
// items are the most read, and a busy cache fills a segment in a second or
// two: looking once a second left most of a segment's life on 4 KiB pages.
// A pass with nothing to collapse costs 0.13-0.33 ms per GiB of item
// memory.
const hugeInterval = 200 * time.Millisecond

// Engine is one cache: its own key space, segments, counters and limit,
// on pages of a Memory. Safe for concurrent use.
type Engine struct {
	id      uint32 // CacheConfig.ID
	cfg     Config
	mem     *Memory
	ownMem  bool
	quota   quota
	stripes []stripe
	mask    uint64
	clock   *Clock

	// Flush state, memcached's settings.oldest_live: items last stored at
	// or before oldestLive are invalid once the clock reaches it.
	oldestLive atomic.Uint32
	// flushCrawled is when the crawler last finished a pass after the
	// latest flush's time (see CrawlOnce).
	flushCrawled atomic.Uint32
	limitBytes   atomic.Int64

	resizeMu    sync.Mutex // serialises SetLimit and Close
	closed      bool       // guarded by resizeMu
	stopCrawler chan struct{}
	stopOnce    sync.Once
	crawlerDone sync.WaitGroup
	closeOnce   sync.Once
}

// ErrConfig is returned by New for settings it cannot honour.
var ErrConfig = errors.New("engine: invalid configuration")

// NewMemory maps the item memory shared by the engines made from it.
func NewMemory(cfg Config) (*Memory, error) {
	if cfg.MaxItemSize == 0 {
		cfg.MaxItemSize = DefaultMaxItemSize
	}
	if cfg.GrowthFactor == 0 {
		cfg.GrowthFactor = 1.25
	}
	if cfg.CrawlInterval == 0 {
		cfg.CrawlInterval = 10 * time.Second
	}
	line := arena.CacheLineSize()
	if line < slab.ChunkAlign {
		line = slab.ChunkAlign
	}
	pageSize := (slab.HeaderSize + cfg.MaxItemSize + line - 1) / line * line
	if cfg.MaxItemSize < 1024 || pageSize > 1<<30 {
		return nil, fmt.Errorf("%w: max item size %d out of range 1 KiB..1 GiB", ErrConfig, cfg.MaxItemSize)
	}
	// A page counts as MaxItemSize bytes against --memory and each
	// cache's limit: its 64 bytes or so beyond that are the room for the
	// largest item's header, much as memcached does not count its slab
	// metadata. A 64 MiB limit then buys 64 pages, not 63.
	pages := int(cfg.MemoryBytes / int64(cfg.MaxItemSize))
	if pages < 1 {
		return nil, fmt.Errorf("%w: memory %d bytes holds no page (each counts as %d bytes)", ErrConfig, cfg.MemoryBytes, cfg.MaxItemSize)
	}
	classes, err := slab.NewClasses(pageSize, slab.ChunkAlign, cfg.GrowthFactor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if cfg.MemoryFile != "" && cfg.Clock != nil {
		return nil, fmt.Errorf("%w: a memory file needs the memory's own clock", ErrConfig)
	}
	var ar *arena.Arena
	fileIsNew := false
	if cfg.MemoryFile != "" {
		_, err := os.Stat(cfg.MemoryFile)
		fileIsNew = errors.Is(err, os.ErrNotExist)
		ar, err = arena.NewFile(cfg.MemoryFile, pages*pageSize, pageSize)
		if err != nil {
			return nil, err
		}
	} else if ar, err = arena.New(pages*pageSize, pageSize); err != nil {
		return nil, err
	}
	mem := ar.Mem()
	shift := slab.SegShift(len(mem))
	if 1<<shift > line {
		// Items align within their page, and a page starts on a cache
		// line: a coarser alignment would put handles off their items.
		ar.Close()
		return nil, fmt.Errorf("%w: memory %d bytes is more than item handles address", ErrConfig, cfg.MemoryBytes)
	}
	m := &Memory{cfg: cfg, arena: ar, classes: classes, items: slab.NewSegItems(mem, shift), engines: make(map[*Engine]struct{})}
	m.pool = slab.NewPool(ar.Pages(), pageSize)
	var started int64
	if cfg.MemoryFile != "" {
		started = m.restore(fileIsNew)
	}
	m.clock = cfg.Clock
	if m.clock == nil {
		m.clock = newClockFrom(started, time.Second)
		m.ownClock = true
	}
	m.stopHuge = make(chan struct{})
	m.hugeDone.Add(1)
	go m.collapseHuge(hugeInterval)
	return m, nil
}

// collapseHuge gives transparent huge pages to the item memory as it is
// written, every interval, until Close or until the kernel cannot: items
// are read at random all over the arena, and huge pages cut the TLB misses
// of every hash-chain step (about 10% of a random get's time with 1M
// items in BENCHMARKS.md's measurement). Only 2 MiB spans at least three
// quarters written are collapsed, so they cost little RSS (see
// arena.Arena.CollapseWritten).
func (m *Memory) collapseHuge(interval time.Duration) {
	defer m.hugeDone.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stopHuge:
			return
		case <-t.C:
			if _, again := m.arena.CollapseWritten(); !again {
				return
			}
		}
	}
}

// Close unmaps the item memory. Every engine made from m must be closed
// first.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stopHuge)
		m.hugeDone.Wait()
		if m.ownClock {
			m.clock.Stop()
		}
	})
	return m.arena.Close()
}

// Clock is the server clock every engine of m uses.
func (m *Memory) Clock() *Clock { return m.clock }

// PageSize is the size of a slab page.
func (m *Memory) PageSize() int { return m.pool.PageSize() }

// PageCharge is what a page counts for against --memory and a cache's
// limit: MaxItemSize bytes, slightly less than PageSize.
func (m *Memory) PageCharge() int { return m.cfg.MaxItemSize }

// MaxItemSize is the bound on key plus value: the first size refused.
func (m *Memory) MaxItemSize() int { return m.cfg.MaxItemSize }

// Pages is the number of pages in the arena.
func (m *Memory) Pages() int { return m.pool.Total() }

// FreePages is the number of pages no engine holds.
func (m *Memory) FreePages() int { return m.pool.Free() }

// New makes an engine that owns a Memory of cfg.MemoryBytes and may use
// all of it: one cache, as memcached is.
func New(cfg Config) (*Engine, error) {
	m, err := NewMemory(cfg)
	if err != nil {
		return nil, err
	}
	e, err := m.NewEngine(CacheConfig{LimitBytes: cfg.MemoryBytes, Stripes: cfg.Stripes, CrawlInterval: cfg.CrawlInterval})
	if err != nil {
		m.Close()
		return nil, err
	}
	e.ownMem = true
	return e, nil
}

// NewEngine makes a cache on m's pages, limited to c.LimitBytes.
func (m *Memory) NewEngine(c CacheConfig) (*Engine, error) {
	if c.CrawlInterval == 0 {
		c.CrawlInterval = m.cfg.CrawlInterval
	}
	cfg := m.cfg
	cfg.MemoryBytes = c.LimitBytes
	cfg.Stripes = c.Stripes
	cfg.CrawlInterval = c.CrawlInterval
	e := &Engine{id: c.ID, cfg: cfg, mem: m, clock: m.clock, stopCrawler: make(chan struct{})}
	restored := m.claimRestored(c.ID)
	e.quota.mem = m
	limit := e.limitPages(c.LimitBytes)
	e.quota.limit.Store(limit)
	e.limitBytes.Store(c.LimitBytes)
	n := c.Stripes
	if n == 0 {
		n = stripesFor(int(limit))
	}
	if restored != nil {
		// Items are in the stripe of their key's hash: the stripes
		// stay as they were.
		n = len(restored.Stripes)
	}
	if n&(n-1) != 0 || n < 1 {
		return nil, fmt.Errorf("%w: stripes %d is not a power of two", ErrConfig, n)
	}
	e.stripes = make([]stripe, n)
	e.mask = uint64(n - 1)
	for i := range e.stripes {
		s := &e.stripes[i]
		s.e = e
		s.id = uint64(i)
		s.items = m.items
		s.alloc = slab.NewSegAllocator(m.items, &m.classes, m.PageSize(), &e.quota, s)
		// The crawler is memhive's background reclaim, as memcached's
		// LRU maintainer is its: with it, expired memory is reused
		// before more is taken.
		s.alloc.ExpiredFirst = c.CrawlInterval > 0
		s.buckets = newBuckets(initialBuckets)
		s.bmask = initialBuckets - 1
	}
	if restored != nil {
		e.restoreFrom(restored)
		if e.quota.taken.Load() > limit {
			e.SetLimit(c.LimitBytes)
		}
	}
	m.mu.Lock()
	m.engines[e] = struct{}{}
	m.mu.Unlock()
	if c.CrawlInterval > 0 {
		e.crawlerDone.Add(1)
		go e.crawl(c.CrawlInterval)
	}
	return e, nil
}

// Crawling reports whether the engine runs its background crawler
// (stats settings' lru_crawler). Without it, expired and flushed items
// are freed only when a command looks them up, or evicted.
func (e *Engine) Crawling() bool { return e.cfg.CrawlInterval > 0 }

// limitPages is how many pages a limit of n bytes grants: whole pages, and
// at least one so that the largest item fits.
func (e *Engine) limitPages(n int64) int64 {
	return max(1, n/int64(e.mem.PageCharge()))
}

// quota is an engine's share of its Memory's pages: the allocators of its
// stripes take pages through it, never more than limit in all.
type quota struct {
	mem   *Memory
	limit atomic.Int64 // pages the engine may hold
	taken atomic.Int64 // pages its allocators hold
}

// Get takes a page from the shared pool if the engine is under its limit.
func (q *quota) Get() (int, bool) {
	if q.taken.Add(1) > q.limit.Load() {
		q.taken.Add(-1)
		return 0, false
	}
	page, ok := q.mem.pool.Get()
	if !ok {
		q.taken.Add(-1)
	}
	return page, ok
}

// Put returns a page to the shared pool, releasing its memory to the
// operating system so that a shrunk or deleted cache lowers RSS.
func (q *quota) Put(page int) {
	q.mem.arena.Release(page)
	q.mem.pool.Put(page)
	q.taken.Add(-1)
}

// SetLimit changes the cache's memory limit while it serves. Growing keeps
// every item; shrinking gives pages back to the shared pool, evicting the
// items of the oldest segments of the stripes holding most pages, until
// the cache holds no more than the new limit.
func (e *Engine) SetLimit(n int64) {
	e.resizeMu.Lock()
	defer e.resizeMu.Unlock()
	if e.closed {
		return
	}
	limit := e.limitPages(n)
	e.quota.limit.Store(limit)
	e.limitBytes.Store(n)
	for e.quota.taken.Load() > limit {
		// Take from the stripe holding the most pages, so that stripes
		// keep an even share of the smaller limit.
		var most *stripe
		mostPages := 0
		for i := range e.stripes {
			s := &e.stripes[i]
			s.mu.Lock()
			p := s.alloc.Pages()
			s.mu.Unlock()
			if p > mostPages {
				most, mostPages = s, p
			}
		}
		if most == nil {
			return
		}
		most.mu.Lock()
		most.alloc.ReleasePage(e.clock.Now())
		most.mu.Unlock()
	}
}

// stripesFor picks a stripe count: enough to keep lock contention low on a
// few cores, few enough that each stripe holds a good number of pages:
// each stripe has segments of its own, one open per expiry class in use
// and partly written, and evicts by merging its oldest, so a stripe of
// few pages wastes a larger share and evicts in coarser steps. (The slab
// store before it needed 64 pages a stripe for its ~40 size classes.)
func stripesFor(pages int) int {
	n := 16
	for n > 1 && pages/n < 64 {
		n /= 2
	}
	return n
}

// Close stops the crawler and gives every page back to the shared pool,
// dropping every item; with New's engine it also unmaps the memory. A
// request still running on a closed engine finds nothing and stores
// nothing (its limit is zero pages), so connections of a deleted cache
// cannot touch pages another cache now holds.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.stopCrawling()
		e.mem.mu.Lock()
		delete(e.mem.engines, e)
		e.mem.mu.Unlock()
		e.resizeMu.Lock()
		e.closed = true
		e.quota.limit.Store(0)
		for i := range e.stripes {
			s := &e.stripes[i]
			s.mu.Lock()
			s.alloc.ReleaseAll()
			// A request may still reach a closed engine (it finds
			// nothing): the stripe keeps an empty table of its own.
			freeBuckets(s.buckets)
			s.buckets, s.bmask = make([]slab.Handle, 1), 0
			s.count, s.bytes, s.expiring = 0, 0, 0
			s.mu.Unlock()
		}
		e.resizeMu.Unlock()
		if e.ownMem {
			err = e.mem.Close()
		}
	})
	return err
}

// stopCrawling stops the background crawler and waits for it, once.
func (e *Engine) stopCrawling() {
	e.stopOnce.Do(func() {
		close(e.stopCrawler)
		e.crawlerDone.Wait()
	})
}

// Clock is the engine's server clock.
func (e *Engine) Clock() *Clock { return e.clock }

// Memory is the item memory the engine's pages come from.
func (e *Engine) Memory() *Memory { return e.mem }

// MaxItemSize is the bound on key plus value: the first size refused.
func (e *Engine) MaxItemSize() int { return e.cfg.MaxItemSize }

// tooLarge reports whether an item of n key+value bytes reaches the limit.
func (e *Engine) tooLarge(n int) bool { return n >= e.cfg.MaxItemSize }

// LimitBytes is the cache's memory limit (memcached's limit_maxbytes).
func (e *Engine) LimitBytes() int64 { return e.limitBytes.Load() }

// GrowthFactor is the slab growth factor in use.
func (e *Engine) GrowthFactor() float64 { return e.cfg.GrowthFactor }

// PageSize is the size of a slab page.
func (e *Engine) PageSize() int { return e.mem.PageSize() }

// Pages is the number of pages the cache holds now.
func (e *Engine) Pages() int { return int(e.quota.taken.Load()) }

// hash is the index hash of a key in the default cache.
func hash(key []byte) uint64 { return farm.Hash64WithSeed(key, 0) }

func (e *Engine) stripeFor(h uint64) *stripe {
	// The high bits pick the stripe; the low bits pick the bucket inside it.
	return &e.stripes[(h>>40)&e.mask]
}

// lockKey is the opening of every command on one key, as memcached's
// item_lock(hv) in thread.c: it hashes key, reads the clock and locks the
// stripe that owns the key. The caller runs the command's ...Locked steps
// with h and now, then unlocks s.mu (or hands it to a Ref, whose Release
// unlocks it).
func (e *Engine) lockKey(key []byte) (s *stripe, h uint64, now uint32) {
	h = hash(key)
	s = e.stripeFor(h)
	now = e.clock.Now()
	s.mu.Lock()
	return s, h, now
}
