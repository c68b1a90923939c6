package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgryski/go-farm"
	"github.com/memhive/memhive/arena"
	"github.com/memhive/memhive/slab"
)

// DefaultMaxItemSize is the default bound on key plus value (memcached -I).
const DefaultMaxItemSize = 1 << 20

// Config sizes an Engine.
type Config struct {
	MemoryBytes  int64   // item memory for the whole process (memcached -m)
	MaxItemSize  int     // key+value bound; 0 means DefaultMaxItemSize
	GrowthFactor float64 // slab chunk-size growth factor; 0 means 1.25
	Stripes      int     // lock stripes; 0 picks from the memory size
	// CrawlInterval is how often the background crawler looks for expired
	// items; 0 means 10 s, negative disables it.
	CrawlInterval time.Duration
	Clock         *Clock // nil: a new clock ticking every second
}

// Engine is the cache. Safe for concurrent use.
type Engine struct {
	cfg      Config
	arena    *arena.Arena
	pool     *slab.Pool
	classes  slab.Classes
	stripes  []stripe
	mask     uint64
	clock    *Clock
	ownClock bool

	// Flush state, memcached's settings.oldest_live: items last stored at
	// or before oldestLive are invalid once the clock reaches it.
	oldestLive atomic.Uint32

	stopCrawler chan struct{}
	crawlerDone sync.WaitGroup
	closeOnce   sync.Once
}

// ErrConfig is returned by New for settings it cannot honour.
var ErrConfig = errors.New("engine: invalid configuration")

// New maps the item memory and builds the stripes.
func New(cfg Config) (*Engine, error) {
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
	pages := int(cfg.MemoryBytes / int64(pageSize))
	if pages < 1 {
		return nil, fmt.Errorf("%w: memory %d bytes holds no page of %d bytes", ErrConfig, cfg.MemoryBytes, pageSize)
	}
	if int64(pages)*int64(pageSize)/slab.ChunkAlign >= 1<<32-1 {
		return nil, fmt.Errorf("%w: memory %d bytes is more than item handles address", ErrConfig, cfg.MemoryBytes)
	}
	classes, err := slab.NewClasses(pageSize, line, cfg.GrowthFactor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	ar, err := arena.New(pages*pageSize, pageSize)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, arena: ar, classes: classes, stopCrawler: make(chan struct{})}
	e.pool = slab.NewPool(ar.Pages(), pageSize)
	e.clock = cfg.Clock
	if e.clock == nil {
		e.clock = NewClock(time.Second)
		e.ownClock = true
	}
	n := cfg.Stripes
	if n == 0 {
		n = stripesFor(ar.Pages())
	}
	if n&(n-1) != 0 || n < 1 {
		return nil, fmt.Errorf("%w: stripes %d is not a power of two", ErrConfig, n)
	}
	items := slab.NewItems(ar.Mem())
	e.stripes = make([]stripe, n)
	e.mask = uint64(n - 1)
	for i := range e.stripes {
		s := &e.stripes[i]
		s.e = e
		s.id = uint64(i)
		s.items = items
		s.alloc = slab.NewAllocator(items, &e.classes, e.pool, s)
		s.buckets = make([]slab.Handle, initialBuckets)
		s.bmask = initialBuckets - 1
	}
	if cfg.CrawlInterval > 0 {
		e.crawlerDone.Add(1)
		go e.crawl(cfg.CrawlInterval)
	}
	return e, nil
}

// stripesFor picks a stripe count: enough to keep lock contention low on a
// few cores, few enough that each stripe holds a good number of pages (a
// stripe's pages are shared among its size classes).
func stripesFor(pages int) int {
	n := 16
	for n > 1 && pages/n < 16 {
		n /= 2
	}
	return n
}

// Close stops the crawler and unmaps item memory. The engine must not be
// used afterwards.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		close(e.stopCrawler)
		e.crawlerDone.Wait()
		if e.ownClock {
			e.clock.Stop()
		}
		err = e.arena.Close()
	})
	return err
}

// Clock is the engine's server clock.
func (e *Engine) Clock() *Clock { return e.clock }

// MaxItemSize is the bound on key plus value.
func (e *Engine) MaxItemSize() int { return e.cfg.MaxItemSize }

// LimitBytes is the item memory size (memcached's limit_maxbytes).
func (e *Engine) LimitBytes() int64 { return e.cfg.MemoryBytes }

// GrowthFactor is the slab growth factor in use.
func (e *Engine) GrowthFactor() float64 { return e.cfg.GrowthFactor }

// PageSize is the size of a slab page.
func (e *Engine) PageSize() int { return e.pool.PageSize() }

// hash is the index hash of a key in the default cache.
func hash(key []byte) uint64 { return farm.Hash64WithSeed(key, 0) }

func (e *Engine) stripeFor(h uint64) *stripe {
	// The high bits pick the stripe; the low bits pick the bucket inside it.
	return &e.stripes[(h>>40)&e.mask]
}
