package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// membership is this node's place in the member list: its key lives
// under a lease the client keeps alive, so that a node that dies leaves
// the list when the lease expires, with no heartbeats of our own.
type membership struct {
	mu      sync.Mutex
	self    Member
	joined  bool // Join called and neither Leave nor Close since
	lease   clientv3.LeaseID
	stopKA  context.CancelFunc
	rejoin  chan struct{} // the keepalive ended while still joined
	stopped bool
}

// Join puts self in the member list under a lease of cfg.LeaseTTL, kept
// alive until Leave or Close; after an outage that outlived the lease, the
// node joins again by itself once etcd answers. A name held by another
// live node is ErrExists; the same name with the same addresses is taken
// to be this node before a restart, and taken over. When etcd cannot be
// reached, Join returns an error wrapping ErrUnavailable and the node
// joins once etcd answers.
func (e *Etcd) Join(self Member) error {
	if self.Name == "" {
		return fmt.Errorf("member: no name: %w", ErrInvalid)
	}
	m := &e.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("etcd store: closed")
	}
	if m.joined && m.self.Name != self.Name {
		return fmt.Errorf("member: already joined as %q: %w", m.self.Name, ErrExists)
	}
	m.self = self
	m.joined = true
	if !e.online.Load() {
		return fmt.Errorf("member %q joins once etcd answers: %w", self.Name, unavailable(nil))
	}
	err := e.joinLocked()
	if errors.Is(err, ErrExists) {
		m.joined = false
	}
	return err
}

// joinLocked grants a lease and puts the member key under it; m.mu is held.
func (e *Etcd) joinLocked() error {
	m := &e.mem
	val, err := json.Marshal(m.self)
	if err != nil {
		return err
	}
	key := e.key(keyMembers + m.self.Name)
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	ttl := max(int64(e.cfg.LeaseTTL.Round(time.Second)/time.Second), 1)
	g, err := e.cli.Grant(ctx, ttl)
	if err != nil {
		return unavailable(err)
	}
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID))).Else(clientv3.OpGet(key)).Commit()
	if err == nil && !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && (clientv3.LeaseID(kvs[0].Lease) == m.lease && m.lease != 0 || string(kvs[0].Value) == string(val)) {
			// Our key of before an outage or a restart: take it over.
			resp, err = e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
				Then(clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID))).Commit()
		}
	}
	if err != nil || !resp.Succeeded {
		rctx, rcancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
		e.cli.Revoke(rctx, g.ID)
		rcancel()
		if err != nil {
			return unavailable(err)
		}
		return fmt.Errorf("member %q: held by another live node: %w", m.self.Name, ErrExists)
	}
	old := m.lease
	e.stopKeepAliveLocked()
	m.lease = g.ID
	kctx, kcancel := context.WithCancel(e.ctx)
	ka, err := e.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		kcancel()
		return unavailable(err)
	}
	m.stopKA = kcancel
	go func() {
		for range ka {
		}
		// The keepalive ends when we stop it or when the lease is gone
		// (etcd away for longer than its TTL): then join again.
		if kctx.Err() == nil {
			select {
			case m.rejoin <- struct{}{}:
			default:
			}
		}
	}()
	if old != 0 && old != g.ID {
		e.cli.Revoke(ctx, old) // the key moved to the new lease; the old one holds nothing
	}
	e.waitRev(resp.Header.Revision, e.cfg.DialTimeout)
	return nil
}

// rejoin puts the member key again under a new lease, if the node is
// joined: after an outage, or when the keepalive ended.
func (e *Etcd) rejoin() {
	m := &e.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.rejoin: // this is the rejoin that asked for
	default:
	}
	if !m.joined || m.stopped || !e.online.Load() {
		return
	}
	if err := e.joinLocked(); err != nil {
		e.log.Warn("etcd store: joining the member list again", "name", m.self.Name, "err", err)
		if errors.Is(err, ErrExists) {
			m.joined = false
		}
		return
	}
	e.log.Info("etcd store: joined the member list again", "name", m.self.Name)
}

func (e *Etcd) stopKeepAliveLocked() {
	if e.mem.stopKA != nil {
		e.mem.stopKA()
		e.mem.stopKA = nil
	}
}

// stopKeepAlive stops keeping the lease alive without revoking it.
func (e *Etcd) stopKeepAlive() {
	e.mem.mu.Lock()
	e.mem.stopped = true
	e.stopKeepAliveLocked()
	e.mem.mu.Unlock()
}

// Leave revokes the membership lease, so that the node leaves the member
// list at once (a graceful shutdown: before the node stops serving). When
// etcd cannot be reached it gives up after about cfg.DialTimeout and the
// lease expires by itself.
func (e *Etcd) Leave() {
	m := &e.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joined = false
	e.stopKeepAliveLocked()
	if m.lease == 0 {
		return
	}
	lease := m.lease
	m.lease = 0
	if !e.online.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	resp, err := e.cli.Revoke(ctx, lease)
	if err != nil {
		e.log.Warn("etcd store: leaving the member list; it expires with the lease", "err", err)
		return
	}
	e.waitRev(resp.Header.Revision, e.cfg.DialTimeout)
}

// Members implements Cluster.
func (e *Etcd) Members() []Member {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.st.memberList()
}

// WatchMembers implements Cluster. fn is called with the list now, on
// the caller's goroutine, then on the store's delivering goroutine; it
// must not call WatchMembers itself.
func (e *Etcd) WatchMembers(fn func([]Member)) (cancel func()) {
	e.deliverMu.Lock()
	defer e.deliverMu.Unlock()
	e.mu.RLock()
	from, list := e.st.rev, e.st.memberList()
	e.watchMu.Lock()
	id := e.nextW
	e.nextW++
	e.memberWatchers[id] = watcher[[]Member]{fn: fn, from: from}
	e.watchMu.Unlock()
	e.mu.RUnlock()
	fn(slices.Clone(list))
	return func() {
		e.watchMu.Lock()
		delete(e.memberWatchers, id)
		e.watchMu.Unlock()
	}
}

// Secret implements Cluster: 32 random bytes in hex, created by the first
// node that finds none and read by every other; "" only if this node has
// never seen etcd nor a copy that held it.
func (e *Etcd) Secret() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return string(e.st.kv[keySecret].Value)
}

// ensureSecret creates the cluster secret if there is none: create if
// absent, so that nodes starting together agree on the first one.
func (e *Etcd) ensureSecret() error {
	e.mu.RLock()
	_, ok := e.st.kv[keySecret]
	e.mu.RUnlock()
	if ok {
		return nil
	}
	var b [32]byte
	rand.Read(b[:])
	key := e.key(keySecret)
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.DialTimeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, hex.EncodeToString(b[:]))).Commit()
	if err != nil {
		return err
	}
	if !e.waitRev(resp.Header.Revision, e.cfg.DialTimeout) {
		return errors.New("the secret was not seen in time")
	}
	return nil
}
