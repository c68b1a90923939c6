// Package tenancy keeps the caches a node serves in step with the control
// store: it makes an engine for each cache on the shared memory, resizes
// it, looks credentials up by password or client certificate, records
// activity, disables idle dev caches, and tells the server which
// connections a change has cut off. The server sees it through a narrow
// surface: Authenticate, AuthenticateCert, a Cache's engine and
// connection counters, Revoked and OnRevoke.
package tenancy

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
)

// DefaultCache is the cache every connection uses in local mode (--auth
// none), and the one `memhive serve` creates on an empty store.
const DefaultCache = "default"

// Cache is one cache as the server sees it: its engine, whether it may
// be used, and the counters that belong to it rather than to the process.
// Connections keep a pointer to it; it is safe for concurrent use.
type Cache struct {
	id         uint32
	eng        *engine.Engine
	name       atomic.Pointer[string]
	enabled    atomic.Bool
	dev        atomic.Bool
	gone       atomic.Bool  // deleted: its connections are being closed
	lastActive atomic.Int64 // unix seconds of its last command
	// full is the cache's limit in the store: in a cluster the sum of
	// every live node's share. limit is what the last resize recorded set
	// eng to (see resize): this node's share of full. resizes counts the
	// resizes of eng queued for the applier and not yet done.
	full    atomic.Int64
	limit   atomic.Int64
	resizes atomic.Int32
	// Conns counts the cache's connections and their traffic: the server
	// adds to it, CacheStats sums it. It lives as long as the Cache.
	Conns ConnCounters
	// routing is its Tenants' (SetRouting): whether its stats show the
	// routing counters. Nil for a cache made outside a Tenants' maps.
	routing *atomic.Bool
}

// ID is the cache's id in the control store.
func (t *Cache) ID() uint32 { return t.id }

// Name is the cache's name.
func (t *Cache) Name() string { return *t.name.Load() }

// Engine is the cache's engine. Once the cache is deleted (Revoked
// reports its connections), the engine is closed.
func (t *Cache) Engine() *engine.Engine { return t.eng }

// Touch records activity at unix time now; it writes only when the second
// changes, so busy connections on many cores do not share a dirty line.
func (t *Cache) Touch(now int64) {
	if t.lastActive.Load() != now {
		t.lastActive.Store(now)
	}
}

// Credential is one credential as the server sees it. Connections keep a
// pointer to it, so a change of capabilities applies to them at once. It
// is safe for concurrent use.
type Credential struct {
	id       uint32
	username string
	cache    *Cache
	salt     []byte
	hash     []byte
	caps     atomic.Uint32
	gone     atomic.Bool // deleted: its connections are being closed
	// cert is the client certificate that logs in as the credential;
	// connections logged in with one read it to see they still match.
	cert atomic.Pointer[control.CertBinding]
}

// Username is the credential's username.
func (u *Credential) Username() string { return u.username }

// Cache is the cache the credential uses.
func (u *Credential) Cache() *Cache { return u.cache }

// Capabilities is what the credential may do now. A nil credential, a
// connection's in local mode (--auth none), may do everything.
func (u *Credential) Capabilities() Capabilities {
	if u == nil {
		return Capabilities{control.CapAll}
	}
	return Capabilities{control.Capabilities(u.caps.Load())}
}

// matches reports whether the credential is still bound to client
// certificate pc.
func (u *Credential) matches(pc *ClientCert) bool {
	b := u.cert.Load()
	return b != nil && ((b.SHA256 != "" && b.SHA256 == pc.fingerprint) || (b.CN != "" && b.CN == pc.cn))
}

// Config configures Tenants.
type Config struct {
	// Local is --auth none: every connection uses the cache named
	// DefaultCache with every capability, and SASL accepts anyone.
	Local bool
	// LocalLimit, in local mode, is the default cache's limit whatever the
	// store says (memcached's -m: the whole memory).
	LocalLimit int64
	// DevIdle disables dev caches with no command for this long; 0 never.
	DevIdle time.Duration
	// SyncEvery is how often last-active times are written to the store
	// and idle dev caches looked for; 0 means a minute (or DevIdle/4 when
	// that is shorter).
	SyncEvery time.Duration
	Logger    *slog.Logger
}

// Tenants keeps the server's view of every cache and credential in step
// with the control store: it makes and resizes engines on the shared
// memory, authenticates clients, and has the connections of deleted
// credentials and disabled or deleted caches closed. Safe for concurrent
// use.
//
// A change reaches it in two steps (see record): at once, on the
// goroutine that made it, the lookups (who may log in, with what
// capabilities, which cache is enabled) and whatever takes no time; later,
// on its applier goroutine in commit order, what takes time: shrinking an
// engine, closing connections, closing a deleted cache's engine. Sync
// waits for the second step.
type Tenants struct {
	cfg   Config
	mem   *engine.Memory
	store control.Store
	log   *slog.Logger

	// mu guards byID, byUser, byCert and byCN (the maps, not the Caches
	// and Credentials they hold, whose fields are atomic).
	mu     sync.RWMutex
	byID   map[uint32]*Cache
	byUser map[string]*Credential
	// byCert and byCN find the credential a client certificate is bound
	// to, by fingerprint and by subject CN.
	byCert map[string]*Credential
	byCN   map[string]*Credential
	// local is the default cache in local mode: set by New under
	// pendingMu, before any change is recorded as it comes, then only read.
	local *Cache

	// nodes is the number of live nodes the caches' limits are split
	// over (SetNodes); 0 or 1 is a node of its own. resizeMu orders every
	// decision about an engine's limit (a change recorded, a cache added,
	// SetNodes) so that the last one made sees both the latest limit and
	// the latest node count: record and SetNodes run on different
	// goroutines (the store's watch and the cluster's). It comes before mu.
	nodes    atomic.Int32
	resizeMu sync.Mutex

	// revoke closes the connections cut off by a change; set by the
	// server that serves these tenants (OnRevoke), called by the applier.
	revoke atomic.Pointer[func()]
	// routing: the server forwards requests to their keys' owners
	// (SetRouting), so the caches' stats show its counters.
	routing atomic.Bool

	applier applier

	stopWatch func()
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

// New loads every cache and credential of store, makes an engine for each
// cache on mem, and follows the store's changes until Close. In local
// mode the cache named DefaultCache must exist.
func New(cfg Config, mem *engine.Memory, store control.Store) (*Tenants, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncEvery == 0 {
		cfg.SyncEvery = time.Minute
		if cfg.DevIdle > 0 && cfg.DevIdle/4 < cfg.SyncEvery {
			cfg.SyncEvery = max(cfg.DevIdle/4, 100*time.Millisecond)
		}
	}
	t := newTenants(cfg, mem)
	t.store = store
	// Watch before loading, so that no change falls between the two; a
	// change seen twice is applied twice, which is harmless.
	var pending []control.Change
	// pendingMu guards pending and loaded, and orders the changes that
	// arrive while loading after the ones recorded from pending.
	var pendingMu sync.Mutex
	loaded := false
	t.stopWatch = store.Watch(func(c control.Change) {
		pendingMu.Lock()
		if !loaded {
			pending = append(pending, c)
			pendingMu.Unlock()
			return
		}
		pendingMu.Unlock()
		t.record(c)
	})
	caches, err := store.Caches()
	if err == nil {
		for _, c := range caches {
			if err = t.addCache(c); err != nil {
				break
			}
		}
	}
	var creds []control.Credential
	if err == nil {
		creds, err = store.Credentials(0)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	for _, c := range creds {
		t.putUser(c)
	}
	pendingMu.Lock()
	for _, c := range pending {
		t.record(c)
	}
	var local *Cache
	if cfg.Local {
		local = t.byName(DefaultCache)
		t.local = local
	}
	loaded = true
	pendingMu.Unlock()
	if cfg.Local {
		if local == nil {
			t.Close()
			return nil, fmt.Errorf("local mode needs a cache named %q", DefaultCache)
		}
		t.Sync() // after any resize the pending changes queued
		local.eng.SetLimit(cfg.LocalLimit)
	}
	t.done.Add(1)
	go t.sync()
	return t, nil
}

// newTenants makes an empty Tenants.
func newTenants(cfg Config, mem *engine.Memory) *Tenants {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Tenants{
		cfg: cfg, mem: mem, log: cfg.Logger,
		byID: map[uint32]*Cache{}, byUser: map[string]*Credential{},
		byCert: map[string]*Credential{}, byCN: map[string]*Credential{},
		stop: make(chan struct{}),
	}
}

// ForEngine serves one engine as the default cache in local mode, without
// a store: for tests and benchmarks of the request path.
func ForEngine(eng *engine.Engine) *Tenants {
	t := newTenants(Config{Local: true}, eng.Memory())
	t.local = newCache(control.Cache{ID: 1, Name: DefaultCache, Enabled: true}, eng)
	t.byID[1] = t.local
	return t
}

// Fixed serves caches and credentials given in memory, without a store,
// each cache on an engine of its limit on mem: for tests of the request
// path in SASL mode. Close closes the engines.
func Fixed(mem *engine.Memory, caches []control.Cache, creds []control.Credential) (*Tenants, error) {
	t := newTenants(Config{}, mem)
	for _, c := range caches {
		if err := t.addCache(c); err != nil {
			t.Close()
			return nil, err
		}
	}
	for _, c := range creds {
		t.putUser(c)
	}
	return t, nil
}

func newCache(c control.Cache, eng *engine.Engine) *Cache {
	tn := &Cache{id: c.ID, eng: eng}
	tn.full.Store(c.LimitBytes)
	tn.limit.Store(eng.LimitBytes())
	name := c.Name
	tn.name.Store(&name)
	tn.enabled.Store(c.Enabled)
	tn.dev.Store(c.Dev)
	last := c.LastActive
	if last.IsZero() {
		last = c.Created
	}
	tn.lastActive.Store(max(last.Unix(), time.Now().Unix()))
	return tn
}

// Close stops following the store, finishes the work changes queued, and
// closes every engine.
func (t *Tenants) Close() {
	t.closeOnce.Do(func() {
		if t.stopWatch != nil {
			t.stopWatch()
		}
		close(t.stop)
		t.done.Wait()
		t.applier.close()
		t.mu.Lock()
		defer t.mu.Unlock()
		for _, tn := range t.byID {
			tn.eng.Close()
		}
	})
}

// SetRouting says whether the server forwards requests to the nodes that
// own their keys: the caches' stats then show the routing counters
// (forwarded_requests, forward_errors, handed_over_items), which a single
// node leaves out to answer as memcached does.
func (t *Tenants) SetRouting(on bool) { t.routing.Store(on) }

// Local reports whether every connection uses the default cache.
func (t *Tenants) Local() bool { return t.cfg.Local }

// Engine returns the engine of cache id, or nil.
func (t *Tenants) Engine(id uint32) *engine.Engine {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if tn := t.byID[id]; tn != nil {
		return tn.eng
	}
	return nil
}

// Memory is the item memory the caches' engines share.
func (t *Tenants) Memory() *engine.Memory { return t.mem }

// LocalCache is the default cache every connection uses in local mode,
// nil otherwise.
func (t *Tenants) LocalCache() *Cache { return t.local }

// Cache returns cache id, or nil if it is not served.
func (t *Tenants) Cache(id uint32) *Cache {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byID[id]
}

func (t *Tenants) byName(name string) *Cache {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, tn := range t.byID {
		if tn.Name() == name {
			return tn
		}
	}
	return nil
}

// Authenticate checks a username and password. It returns the credential
// on success; on failure it returns the cache the username belongs to, if
// any, so that the failure is counted there. It keeps neither slice.
func (t *Tenants) Authenticate(username, password []byte) (*Credential, *Cache) {
	t.mu.RLock()
	u := t.byUser[string(username)]
	t.mu.RUnlock()
	if u == nil {
		// Spend the time a real check takes, so that timing does not tell
		// which usernames exist.
		control.Verify(control.Credential{Salt: dummySalt[:], Hash: dummyHash[:]}, password)
		return nil, nil
	}
	ok := control.Verify(control.Credential{Salt: u.salt, Hash: u.hash}, password)
	if !ok || u.gone.Load() || !u.cache.enabled.Load() || u.cache.gone.Load() {
		return nil, u.cache
	}
	return u, u.cache
}

// AuthenticateCert returns the credential client certificate pc logs in
// as, or nil: the fingerprint's, else the CN's (pc has a CN only when the
// server verified it). A deleted credential or a disabled or deleted cache
// logs nobody in.
func (t *Tenants) AuthenticateCert(pc *ClientCert) *Credential {
	t.mu.RLock()
	u := t.byCert[pc.fingerprint]
	if u == nil && pc.cn != "" {
		u = t.byCN[pc.cn]
	}
	t.mu.RUnlock()
	if u == nil || u.gone.Load() || !u.cache.enabled.Load() || u.cache.gone.Load() {
		return nil
	}
	return u
}

var (
	dummySalt [16]byte
	dummyHash [32]byte
)

// record brings the server's view in step with one committed change. It
// runs on the goroutine that made the change, before the store answers
// it, so it does at once only what takes no time: the lookups the request
// path and logins read, and growing an engine. What takes time (shrinking
// an engine, which evicts; closing connections; closing a deleted cache's
// engine) it queues for the applier (see later), in commit order.
//
// Connections cut off by a change serve nothing more from the moment it
// is recorded (Revoked sees it), and are closed by the applier: one idle
// throughout a disabling that is undone before the applier gets to it
// stays open.
func (t *Tenants) record(c control.Change) {
	switch c.Kind {
	case control.CacheChanged:
		t.mu.RLock()
		tn := t.byID[c.Cache.ID]
		t.mu.RUnlock()
		if tn == nil {
			if err := t.addCache(c.Cache); err != nil {
				t.log.Error("making a cache's engine", "cache", c.Cache.ID, "err", err)
			}
			return
		}
		name := c.Cache.Name
		tn.name.Store(&name)
		tn.dev.Store(c.Cache.Dev)
		if t.local != tn {
			t.resizeMu.Lock()
			tn.full.Store(c.Cache.LimitBytes)
			if share := t.share(c.Cache.LimitBytes); tn.limit.Load() != share {
				t.resize(tn, share)
			}
			t.resizeMu.Unlock()
		}
		was := tn.enabled.Swap(c.Cache.Enabled)
		switch {
		case was && !c.Cache.Enabled && !t.cfg.Local:
			t.later(t.closeRevoked)
		case !was && c.Cache.Enabled:
			// Re-enabled: its idle time starts again, or a dev cache
			// would be disabled again at the next sync.
			tn.lastActive.Store(time.Now().Unix())
		}
	case control.CacheDeleted:
		t.mu.Lock()
		tn := t.byID[c.CacheID]
		delete(t.byID, c.CacheID)
		for name, u := range t.byUser {
			if u.cache == tn {
				u.gone.Store(true)
				delete(t.byUser, name)
				t.dropCert(u)
			}
		}
		t.mu.Unlock()
		if tn == nil {
			return
		}
		tn.gone.Store(true)
		t.later(func() {
			t.closeRevoked()
			tn.eng.Close()
		})
	case control.CredentialChanged:
		if t.putUser(c.Credential) && !t.cfg.Local {
			// Connections logged in with the certificate it had end.
			t.later(t.closeRevoked)
		}
	case control.CredentialDeleted:
		t.mu.Lock()
		var gone *Credential
		for name, u := range t.byUser {
			if u.id == c.CredentialID {
				gone = u
				delete(t.byUser, name)
				t.dropCert(u)
			}
		}
		t.mu.Unlock()
		if gone != nil {
			gone.gone.Store(true)
			if !t.cfg.Local {
				t.later(t.closeRevoked)
			}
		}
	}
}

// resize sets cache tn's limit to n: at once when it grows and no resize
// of tn waits before it (growing evicts nothing, so it takes no time, and
// room asked for is there when the store answers), else on the applier,
// after the resizes before it.
func (t *Tenants) resize(tn *Cache, n int64) {
	grows := n >= tn.limit.Load()
	tn.limit.Store(n)
	if grows && tn.resizes.Load() == 0 {
		tn.eng.SetLimit(n)
		return
	}
	tn.resizes.Add(1)
	t.later(func() {
		tn.eng.SetLimit(n)
		tn.resizes.Add(-1)
	})
}

// SetNodes splits every cache's limit over n live nodes (n < 1 counts as
// one): each engine is resized to its share, L/n (see share), through the
// path a plan change takes, growing at once and shrinking on the applier
// in order. The cluster calls it whenever its member list changes, so that
// the caches' limits keep adding up to L over the nodes that serve them.
// Local mode's default cache keeps the whole memory.
func (t *Tenants) SetNodes(n int) {
	n = max(n, 1)
	t.resizeMu.Lock()
	defer t.resizeMu.Unlock()
	if int(t.nodes.Swap(int32(n))) == n {
		return
	}
	t.mu.RLock()
	caches := make([]*Cache, 0, len(t.byID))
	for _, tn := range t.byID {
		if tn != t.local {
			caches = append(caches, tn)
		}
	}
	t.mu.RUnlock()
	for _, tn := range caches {
		if share := t.share(tn.full.Load()); tn.limit.Load() != share {
			t.resize(tn, share)
		}
	}
}

// Nodes is the number of live nodes the caches' limits are split over.
func (t *Tenants) Nodes() int { return max(int(t.nodes.Load()), 1) }

// share is this node's part of a cache limit: the limit split evenly over
// the live nodes, but at least one page, the engine's least, so that the
// largest item still fits however many nodes there are. A node on its own
// holds the limit as the store has it.
func (t *Tenants) share(limit int64) int64 {
	n := int64(t.nodes.Load())
	if n <= 1 {
		return limit
	}
	return max(limit/n, int64(t.mem.PageCharge()))
}

// addCache makes cache c's engine with this node's share of its limit.
func (t *Tenants) addCache(c control.Cache) error {
	// Held until the cache is in byID, so that a SetNodes after the share
	// is computed finds it and resizes it.
	t.resizeMu.Lock()
	defer t.resizeMu.Unlock()
	limit := t.share(c.LimitBytes)
	if t.cfg.Local && c.Name == DefaultCache {
		limit = t.cfg.LocalLimit
	}
	eng, err := t.mem.NewEngine(engine.CacheConfig{ID: c.ID, LimitBytes: limit})
	if err != nil {
		return fmt.Errorf("cache %d (%s): %w", c.ID, c.Name, err)
	}
	tn := newCache(c, eng)
	tn.routing = &t.routing
	t.mu.Lock()
	if old := t.byID[c.ID]; old != nil {
		t.mu.Unlock()
		eng.Close()
		return nil
	}
	t.byID[c.ID] = tn
	t.mu.Unlock()
	return nil
}

// putUser adds or updates a credential; it reports whether the client
// certificate bound to it changed from one it had before.
func (t *Tenants) putUser(c control.Credential) (certChanged bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tn := t.byID[c.CacheID]
	if tn == nil {
		return false
	}
	u := t.byUser[c.Username]
	if u == nil || u.id != c.ID {
		u = &Credential{id: c.ID, username: c.Username, cache: tn, salt: c.Salt, hash: c.Hash}
		t.byUser[c.Username] = u
	}
	u.caps.Store(uint32(c.Caps))
	if old := u.cert.Load(); old == nil || *old != c.Cert {
		certChanged = old != nil && old.Bound()
		t.dropCert(u)
		b := c.Cert
		u.cert.Store(&b)
		if b.SHA256 != "" {
			t.byCert[b.SHA256] = u
		}
		if b.CN != "" {
			t.byCN[b.CN] = u
		}
	}
	return certChanged
}

// dropCert forgets the client certificate bound to u; t.mu is held.
func (t *Tenants) dropCert(u *Credential) {
	b := u.cert.Load()
	if b == nil {
		return
	}
	if t.byCert[b.SHA256] == u {
		delete(t.byCert, b.SHA256)
	}
	if t.byCN[b.CN] == u {
		delete(t.byCN, b.CN)
	}
}

// sync writes last-active times to the store and disables dev caches that
// have been idle for DevIdle, on every node (see activeElsewhere).
func (t *Tenants) sync() {
	defer t.done.Done()
	tick := time.NewTicker(t.cfg.SyncEvery)
	defer tick.Stop()
	written := map[uint32]int64{}
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		if t.store == nil {
			continue
		}
		now := time.Now()
		active := map[uint32]time.Time{}
		var idle []uint32
		t.mu.RLock()
		for id, tn := range t.byID {
			last := tn.lastActive.Load()
			if written[id] != last {
				active[id] = time.Unix(last, 0)
				written[id] = last
			}
			if t.cfg.DevIdle > 0 && !t.cfg.Local && tn.dev.Load() && tn.enabled.Load() &&
				now.Sub(time.Unix(last, 0)) >= t.cfg.DevIdle {
				idle = append(idle, id)
			}
		}
		t.mu.RUnlock()
		if len(active) > 0 {
			if err := t.store.MarkActive(active); err != nil {
				t.log.Warn("recording caches' last activity", "err", err)
			}
		}
		off := false
		for _, id := range idle {
			if t.activeElsewhere(id, now) {
				continue
			}
			if _, err := t.store.UpdateCache(id, control.CacheUpdate{Enabled: &off}); err != nil {
				t.log.Warn("disabling an idle dev cache", "cache", id, "err", err)
				continue
			}
			t.log.Info("disabled an idle dev cache", "cache", id, "idle_for", t.cfg.DevIdle)
		}
	}
}

// activeElsewhere reports whether cache id, idle here, must stay enabled
// all the same: in a cluster, clients may use it through other nodes only,
// so idleness is judged by the store's last-active time, which the etcd
// store reports as the latest over all nodes (bbolt's is this node's own,
// just written by MarkActive). When the store cannot say (unreachable, or
// the cache just deleted), nothing is disabled: the next sync looks again.
func (t *Tenants) activeElsewhere(id uint32, now time.Time) bool {
	c, err := t.store.Cache(id)
	if err != nil {
		t.log.Debug("not disabling an idle dev cache: its cluster-wide activity is unknown", "cache", id, "err", err)
		return true
	}
	return now.Sub(c.LastActive) < t.cfg.DevIdle
}

// CacheIDs lists the caches served, in no particular order.
func (t *Tenants) CacheIDs() []uint32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ids := make([]uint32, 0, len(t.byID))
	for id := range t.byID {
		ids = append(ids, id)
	}
	return ids
}

// CacheStats is one cache's statistics under memcached's names: the
// fields of MemCachier's analytics API, all scoped to the cache.
func (t *Tenants) CacheStats(id uint32) (map[string]uint64, bool) {
	t.mu.RLock()
	tn := t.byID[id]
	t.mu.RUnlock()
	if tn == nil {
		return nil, false
	}
	snap := tn.Snapshot()
	return engine.APIStats(&snap), true
}

// Flush empties cache id as flush_all does, and reclaims the flushed
// items at once so that the dashboard's item count drops to zero rather
// than when the crawler next passes; false if the cache is not served.
func (t *Tenants) Flush(id uint32) bool {
	eng := t.Engine(id)
	if eng == nil {
		return false
	}
	eng.FlushAll(0)
	eng.CrawlOnce()
	return true
}
