package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Etcd is the shared Store of a cluster, and the node's view of the
// cluster (Cluster). Caches and credentials live in etcd; every node keeps
// a copy of them in memory, loaded with one Get at a revision and followed
// with a watch from the next (Kubernetes' informers), so that reads never
// wait for the network and keep answering while etcd is away. A change is
// an etcd transaction whose compares guard what the change checked, so
// that nodes changing at once never break an invariant; it returns once
// etcd has acknowledged it and this node's copy has applied it. Safe for
// concurrent use.
type Etcd struct {
	cfg    EtcdConfig
	policy Policy
	log    *slog.Logger
	cli    *clientv3.Client
	root   string // cfg.Prefix + "/"
	hist   *Bolt  // this node's stats history
	ctx    context.Context
	stop   context.CancelFunc
	done   chan struct{} // closed when follow returns

	// mu guards st and revCh. The following goroutine holds it to apply a
	// batch; readers hold it for reading.
	mu    sync.RWMutex
	st    *etcdState
	revCh chan struct{} // closed and replaced whenever st.rev moves
	// lastMembers is the member list last handed to the deliverer.
	lastMembers []Member

	online atomic.Bool

	// queue feeds the delivering goroutine, which calls watchers in
	// revision order, apart from the following goroutine so that a slow
	// watcher delays other watchers but never the copy (a change made
	// while a watcher is busy is readable at once).
	qmu       sync.Mutex
	queue     []delivery
	qSignal   chan struct{}
	delivered chan struct{} // closed when deliver returns

	// deliverMu is held while watchers are called, and by WatchMembers
	// while it registers and makes its first call, so that calls are one
	// at a time and in order.
	deliverMu sync.Mutex
	// watchMu guards watchers, memberWatchers and nextW.
	watchMu        sync.Mutex
	watchers       map[int]watcher[Change]
	memberWatchers map[int]watcher[[]Member]
	nextW          int

	mem membership

	// cutWatch, while following, cancels the current watch; the
	// follower then watches again from the revision after its copy's.
	cutMu    sync.Mutex
	cutWatch context.CancelFunc
	// beforeWatch, if set (by tests), is called before each watch starts.
	beforeWatch atomic.Pointer[func()]
	// stopAfterCacheDelete, if set (by tests), makes DeleteCache return
	// after its first transaction, as a process killed there would.
	stopAfterCacheDelete atomic.Bool

	// sweepSignal asks the sweeper to remove orphans; swept is closed
	// when it returns.
	sweepSignal chan struct{}
	swept       chan struct{}

	saveSignal chan struct{}
	saved      chan struct{} // closed when the saver returns
	closeOnce  sync.Once
}

// watcher is a registered callback and the revision it was registered
// at: it is given only what was applied after.
type watcher[T any] struct {
	fn   func(T)
	from int64
}

// delivery is what one applied batch tells the watchers.
type delivery struct {
	rev     int64
	changes []Change
	members []Member // nil unless the member list changed
}

const (
	defaultPrefix   = "/memhive"
	defaultDial     = 2 * time.Second
	defaultLeaseTTL = 5 * time.Second
	// probeEvery is how often a node asks etcd whether it is there: a
	// watch does not notice an etcd that went away, and a node must
	// refuse changes, and tell, once it is.
	probeEvery = 500 * time.Millisecond
	// retryEvery is how often a node that lost etcd tries it again.
	retryEvery = 300 * time.Millisecond
	// conflictTimeout bounds the retries of a change whose compares keep
	// failing because other nodes keep changing the same keys.
	conflictTimeout = 10 * time.Second
	// maxTxnOps stays under etcd's default --max-txn-ops (128).
	maxTxnOps = 120
)

// OpenEtcd connects to etcd, loads the state at a revision and watches from
// the next. It blocks for at most about cfg.DialTimeout when etcd is away:
// then, if cfg.Dir holds the copy of the last state seen, it serves that
// (reads only; changes are ErrUnavailable) and keeps trying etcd in the
// background; if not, it returns an error wrapping ErrUnavailable. The
// stats history is kept in cfg.Dir/history.db, which one process at a
// time may hold (ErrLocked).
func OpenEtcd(cfg EtcdConfig, p Policy) (*Etcd, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDial
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = defaultLeaseTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dir == "" {
		return nil, errors.New("etcd store: no local directory (EtcdConfig.Dir) for the last state seen and the history")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	hist, err := Open(filepath.Join(cfg.Dir, "history.db"), p, time.Second)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Pings find a connection whose peer vanished without closing
		// it, so that gRPC dials again; etcd refuses pings more often
		// than every 5 s (--grpc-keepalive-min-time).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: cfg.DialTimeout,
		TLS:                  cfg.TLS,
		// The client logs every retry while etcd is away; the store
		// logs the transitions once, through cfg.Logger, instead.
		Logger: zap.NewNop(),
		// gRPC backs off up to 2 minutes between attempts to reach a
		// server that went away; a node must see etcd come back within
		// about a second to take changes again.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: cfg.DialTimeout,
		})},
	})
	if err != nil {
		hist.Close()
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	e := &Etcd{
		cfg: cfg, policy: p, log: cfg.Logger, cli: cli, root: cfg.Prefix + "/", hist: hist,
		ctx: ctx, stop: stop, done: make(chan struct{}),
		st: newEtcdState(), revCh: make(chan struct{}),
		qSignal: make(chan struct{}, 1), delivered: make(chan struct{}),
		watchers: map[int]watcher[Change]{}, memberWatchers: map[int]watcher[[]Member]{},
		saveSignal: make(chan struct{}, 1), saved: make(chan struct{}),
		sweepSignal: make(chan struct{}, 1), swept: make(chan struct{}),
	}
	e.mem.rejoin = make(chan struct{}, 1)
	if err := e.reload(); err != nil {
		st, lerr := loadCopy(e.copyPath(), cfg.Prefix)
		if lerr != nil {
			cli.Close()
			hist.Close()
			stop()
			return nil, fmt.Errorf("etcd store: etcd cannot be reached at %s (%v) and there is no copy of the last state seen in %s (%v): %w",
				strings.Join(cfg.Endpoints, ","), err, cfg.Dir, lerr, ErrUnavailable)
		}
		e.st = st
		e.log.Warn("etcd unreachable; serving the last state seen", "revision", st.rev, "err", err)
	} else {
		e.online.Store(true)
		e.askSweep()
	}
	go e.follow()
	go e.deliver()
	go e.saver()
	go e.sweeper()
	if e.online.Load() {
		if err := e.ensureSecret(); err != nil {
			e.log.Warn("etcd store: creating the cluster secret", "err", err)
		}
	}
	return e, nil
}

// Online reports whether etcd could be reached at the last try (at most
// about half a second ago): while it cannot, changes are ErrUnavailable
// and reads answer from the last state seen.
func (e *Etcd) Online() bool { return e.online.Load() }

// Close leaves the member list if Join was called (Close is a graceful
// stop), then stops following etcd, the delivering of changes and the
// client, saves the last state seen and closes the history. It returns
// within about twice cfg.DialTimeout even when etcd is away.
func (e *Etcd) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.Leave()
		err = e.shutdown()
	})
	return err
}

// shutdown stops everything without revoking the membership lease: what
// Close does after Leave, and what a crash looks like to the others.
func (e *Etcd) shutdown() error {
	e.stop()
	<-e.done
	close(e.sweepSignal) // the follower, which asks for sweeps, is done
	<-e.swept
	e.stopKeepAlive()
	e.cli.Close()
	close(e.qSignal)
	<-e.delivered
	close(e.saveSignal)
	<-e.saved
	return e.hist.Close()
}

func (e *Etcd) copyPath() string { return filepath.Join(e.cfg.Dir, "etcd-state.json") }

// key is the full etcd key of a key relative to the prefix.
func (e *Etcd) key(rel string) string { return e.root + rel }

// reload reads everything under the prefix at one revision, replaces the
// copy with it and delivers the difference as Changes.
func (e *Etcd) reload() error {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.root, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	st := newEtcdState()
	st.rev = resp.Header.Revision
	for _, kv := range resp.Kvs {
		st.set(strings.TrimPrefix(string(kv.Key), e.root), kvEntry{Value: kv.Value, Mod: kv.ModRevision, Create: kv.CreateRevision, Lease: kv.Lease})
	}
	e.mu.Lock()
	old := e.st
	before := map[string]prior{}
	for k, v := range old.kv {
		if n, ok := st.kv[k]; !ok || n.Mod != v.Mod {
			before[k] = prior{e: v, present: true}
		}
	}
	for k := range st.kv {
		if _, ok := old.kv[k]; !ok {
			before[k] = prior{}
		}
	}
	e.st = st
	e.publishLocked(before)
	e.mu.Unlock()
	return nil
}

// apply applies one revision's events to the copy.
func (e *Etcd) apply(rev int64, evs []*clientv3.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rev <= e.st.rev {
		return
	}
	before := map[string]prior{}
	for _, ev := range evs {
		k := strings.TrimPrefix(string(ev.Kv.Key), e.root)
		if _, seen := before[k]; !seen {
			old, ok := e.st.kv[k]
			before[k] = prior{e: old, present: ok}
		}
		if ev.Type == clientv3.EventTypeDelete {
			e.st.del(k)
		} else {
			e.st.set(k, kvEntry{Value: ev.Kv.Value, Mod: ev.Kv.ModRevision, Create: ev.Kv.CreateRevision, Lease: ev.Kv.Lease})
		}
	}
	e.st.rev = rev
	e.publishLocked(before)
}

// publishLocked turns what a batch touched into a delivery, drops the
// history of caches it deleted (history stays on each node), wakes those
// waiting for the revision and asks for the copy to be saved. e.mu is held.
func (e *Etcd) publishLocked(before map[string]prior) {
	changes, membersChanged := e.st.changesSince(before)
	for _, c := range changes {
		if c.Kind == CacheDeleted {
			if err := e.hist.dropHistory(c.CacheID); err != nil {
				e.log.Warn("etcd store: dropping a deleted cache's history", "cache", c.CacheID, "err", err)
			}
		}
	}
	var members []Member
	if membersChanged {
		// A node re-put under a new lease is no change of the list.
		if list := e.st.memberList(); !slices.Equal(list, e.lastMembers) {
			members, e.lastMembers = list, list
		}
	}
	if len(changes) > 0 || members != nil {
		d := delivery{rev: e.st.rev, changes: changes, members: members}
		e.qmu.Lock()
		e.queue = append(e.queue, d)
		e.qmu.Unlock()
		select {
		case e.qSignal <- struct{}{}:
		default:
		}
	}
	close(e.revCh)
	e.revCh = make(chan struct{})
	select {
	case e.saveSignal <- struct{}{}:
	default:
	}
}

// waitRev waits until the copy has applied rev, or timeout.
func (e *Etcd) waitRev(rev int64, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		e.mu.RLock()
		cur, ch := e.st.rev, e.revCh
		e.mu.RUnlock()
		if cur >= rev {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-e.ctx.Done():
			return false
		}
	}
}

// setOnline records whether etcd answers, logging each transition once.
func (e *Etcd) setOnline(on bool, err error) {
	if e.online.Swap(on) == on {
		return
	}
	e.mu.RLock()
	rev := e.st.rev
	e.mu.RUnlock()
	if on {
		e.log.Info("etcd reachable again", "revision", rev)
	} else {
		e.log.Warn("etcd unreachable; serving the last state seen", "revision", rev, "err", err)
	}
}

// follow is the goroutine that keeps the copy: it watches from the
// revision after the copy's; on a compaction it reloads; when etcd stops
// answering it marks the node offline and retries until it answers, then
// reloads, delivers the difference, re-joins the member list and watches
// again.
func (e *Etcd) follow() {
	defer close(e.done)
	for e.ctx.Err() == nil {
		if !e.online.Load() {
			if err := e.reload(); err != nil {
				select {
				case <-e.ctx.Done():
				case <-time.After(retryEvery):
				}
				continue
			}
			e.setOnline(true, nil)
			e.askSweep()
			go e.reconnected()
		}
		switch e.watch() {
		case watchCompacted:
			if err := e.reload(); err != nil {
				e.setOnline(false, err)
			} else {
				e.askSweep()
			}
		case watchOffline:
			// Reloaded once reachable.
		case watchCut:
			// Watch again from the copy's revision; not in a hot loop
			// if etcd keeps ending watches (no leader).
			select {
			case <-e.ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

type watchEnd int

const (
	watchCut watchEnd = iota
	watchCompacted
	watchOffline
)

// watch follows etcd from the revision after the copy's until the watch
// ends, etcd compacted that revision, or etcd stops answering.
func (e *Etcd) watch() watchEnd {
	if f := e.beforeWatch.Load(); f != nil {
		(*f)()
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(e.ctx))
	defer cancel()
	e.cutMu.Lock()
	e.cutWatch = cancel
	e.cutMu.Unlock()
	e.mu.RLock()
	from := e.st.rev + 1
	e.mu.RUnlock()
	wch := e.cli.Watch(ctx, e.root, clientv3.WithPrefix(), clientv3.WithRev(from))
	probe := time.NewTicker(probeEvery)
	defer probe.Stop()
	probed := make(chan error, 1)
	probing := false
	for {
		select {
		case <-e.ctx.Done():
			return watchCut
		case wr, ok := <-wch:
			if !ok {
				return watchCut
			}
			if wr.CompactRevision != 0 {
				e.log.Info("etcd store: the watch's revision was compacted; reloading", "compacted", wr.CompactRevision)
				return watchCompacted
			}
			if wr.Err() != nil {
				return watchCut
			}
			for i := 0; i < len(wr.Events); {
				j, rev := i, wr.Events[i].Kv.ModRevision
				for j < len(wr.Events) && wr.Events[j].Kv.ModRevision == rev {
					j++
				}
				e.apply(rev, wr.Events[i:j])
				i = j
			}
		case <-probe.C:
			if !probing {
				probing = true
				go func() { probed <- e.probe() }()
			}
		case err := <-probed:
			probing = false
			if err != nil {
				e.setOnline(false, err)
				return watchOffline
			}
		case <-e.mem.rejoin:
			go e.rejoin()
		}
	}
}

// probe asks etcd for a key with a linearizable read, which needs a
// quorum: what a change needs too.
func (e *Etcd) probe() error {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	_, err := e.cli.Get(ctx, e.key(keySecret), clientv3.WithCountOnly())
	return err
}

// askSweep asks the sweeper to remove orphans: after each load of the
// state, which may hold those of a node that crashed in DeleteCache.
// Only the follower (and OpenEtcd before it starts) asks, so that the
// signal is never sent once shutdown has closed it.
func (e *Etcd) askSweep() {
	select {
	case e.sweepSignal <- struct{}{}:
	default:
	}
}

// sweeper is the goroutine that removes orphans when asked, apart from
// the follower: a change waits for the follower to apply it.
func (e *Etcd) sweeper() {
	defer close(e.swept)
	for range e.sweepSignal {
		if err := e.removeOrphans(); err != nil && e.ctx.Err() == nil {
			e.log.Warn("etcd store: removing the credentials of deleted caches", "err", err)
		}
	}
}

// reconnected runs once etcd answers again after an outage.
func (e *Etcd) reconnected() {
	if err := e.ensureSecret(); err != nil {
		e.log.Warn("etcd store: creating the cluster secret", "err", err)
	}
	e.rejoin()
}

// cut ends the current watch; the follower watches again from the
// revision after its copy's (a test plays a cut watch with it).
func (e *Etcd) cut() {
	e.cutMu.Lock()
	if e.cutWatch != nil {
		e.cutWatch()
	}
	e.cutMu.Unlock()
}

// deliver is the goroutine that calls watchers, batch after batch.
func (e *Etcd) deliver() {
	defer close(e.delivered)
	for range e.qSignal {
		for {
			e.qmu.Lock()
			if len(e.queue) == 0 {
				e.qmu.Unlock()
				break
			}
			d := e.queue[0]
			e.queue = e.queue[1:]
			e.qmu.Unlock()
			e.deliverMu.Lock()
			ws, ms := e.watchersAt(d.rev)
			for _, c := range d.changes {
				for _, w := range ws {
					w(c)
				}
			}
			if d.members != nil {
				for _, m := range ms {
					m(slices.Clone(d.members))
				}
			}
			e.deliverMu.Unlock()
		}
	}
}

// watchersAt lists, in registration order, the watchers registered before
// revision rev was applied.
func (e *Etcd) watchersAt(rev int64) (ws []func(Change), ms []func([]Member)) {
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	for _, id := range sortedKeys(e.watchers) {
		if w := e.watchers[id]; w.from < rev {
			ws = append(ws, w.fn)
		}
	}
	for _, id := range sortedKeys(e.memberWatchers) {
		if w := e.memberWatchers[id]; w.from < rev {
			ms = append(ms, w.fn)
		}
	}
	return ws, ms
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Watch implements Store. Watchers are called on a goroutine of the
// store's, in revision order, one change at a time, for changes made by
// any node; a change's method may return before its watchers are called.
func (e *Etcd) Watch(fn func(Change)) (cancel func()) {
	e.mu.RLock()
	from := e.st.rev
	e.watchMu.Lock()
	id := e.nextW
	e.nextW++
	e.watchers[id] = watcher[Change]{fn: fn, from: from}
	e.watchMu.Unlock()
	e.mu.RUnlock()
	return func() {
		e.watchMu.Lock()
		delete(e.watchers, id)
		e.watchMu.Unlock()
	}
}

// unavailable is the error of a change that could not be made because
// etcd cannot be reached.
func unavailable(err error) error {
	if err == nil {
		return fmt.Errorf("%w: etcd cannot be reached", ErrUnavailable)
	}
	return fmt.Errorf("%w: etcd: %v", ErrUnavailable, err)
}

// txnPlan is what one change asks of etcd: compares that hold if nothing
// the change checked has changed since the copy's revision, and the
// writes to make then.
type txnPlan struct {
	cmps  []clientv3.Cmp
	ops   []clientv3.Op
	gets  []clientv3.Op // read back on a failed compare, to know what to wait for
	noted map[string]bool
}

// same requires key to be as the copy has it (mod revision; 0: absent).
func (p *txnPlan) same(key string, mod int64) {
	if p.noted == nil {
		p.noted = map[string]bool{}
	}
	if p.noted[key] {
		return
	}
	p.noted[key] = true
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", mod))
	p.gets = append(p.gets, clientv3.OpGet(key))
}

func (p *txnPlan) put(key, val string) { p.ops = append(p.ops, clientv3.OpPut(key, val)) }
func (p *txnPlan) del(key string)      { p.ops = append(p.ops, clientv3.OpDelete(key)) }

// change runs one change: plan reads the copy (under its read lock) and
// fills a txnPlan, or refuses with an error. The transaction commits only
// if every compare holds; if one fails, another node got there first, so
// change waits for the copy to catch up and plans again. It returns once
// etcd acknowledged the change and the copy has applied it.
func (e *Etcd) change(plan func(s *etcdState, p *txnPlan) error) (int64, error) {
	deadline := time.Now().Add(conflictTimeout)
	for attempt := 0; ; attempt++ {
		if !e.online.Load() {
			return 0, unavailable(nil)
		}
		var p txnPlan
		e.mu.RLock()
		err := plan(e.st, &p)
		e.mu.RUnlock()
		if err != nil || len(p.ops) == 0 {
			return 0, err
		}
		if len(p.ops) > maxTxnOps || len(p.cmps) > maxTxnOps {
			return 0, fmt.Errorf("etcd store: one change of %d writes: more than etcd takes in a transaction (%d)", len(p.ops), maxTxnOps)
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
		resp, err := e.cli.Txn(ctx).If(p.cmps...).Then(p.ops...).Else(p.gets...).Commit()
		cancel()
		if err != nil {
			return 0, unavailable(err)
		}
		if resp.Succeeded {
			// Acknowledged by a quorum; now read-your-writes: wait for
			// the copy. It comes at once unless etcd went away just now,
			// and then the change is made all the same.
			e.waitRev(resp.Header.Revision, 2*e.cfg.DialTimeout)
			return resp.Header.Revision, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("etcd store: a change kept conflicting with other nodes' for %v: %w", conflictTimeout, ErrUnavailable)
		}
		var want int64
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				want = max(want, kv.ModRevision)
			}
		}
		e.mu.RLock()
		behind := want > e.st.rev
		e.mu.RUnlock()
		if behind {
			e.waitRev(want, e.cfg.DialTimeout)
		} else {
			// A key the change relied on was deleted: its revision is
			// not known, so give the watch a moment.
			time.Sleep(time.Duration(1+rand.IntN(5*(min(attempt, 10)+1))) * time.Millisecond)
		}
	}
}

var _ Store = (*Etcd)(nil)
var _ Cluster = (*Etcd)(nil)
