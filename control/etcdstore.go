package control

import (
	"errors"
	"time"
)

// TEMPORARY: a stub of the etcd backend with the API the real store has,
// so that the wiring branch compiles. It is replaced by the real store at
// the merge; nothing here is meant to run.

// Etcd is the etcd-backed Store and Cluster (stub: never made).
type Etcd struct{}

// OpenEtcd connects to etcd and loads the state (stub: always fails).
func OpenEtcd(cfg EtcdConfig, p Policy) (*Etcd, error) {
	return nil, errors.New("etcd store not built yet")
}

// Join holds self's lease-backed member key until Leave or Close (stub).
func (e *Etcd) Join(self Member) error { return nil }

// Leave revokes the membership lease (stub).
func (e *Etcd) Leave() {}

// Online reports whether etcd is reachable now (stub).
func (e *Etcd) Online() bool { return false }

// Members lists the live nodes in name order (stub).
func (e *Etcd) Members() []Member { return nil }

// WatchMembers calls fn with the live nodes on every change (stub).
func (e *Etcd) WatchMembers(fn func([]Member)) (cancel func()) { return func() {} }

// Secret is the nodes' shared secret (stub).
func (e *Etcd) Secret() string { return "" }

// CreateCache implements Store (stub).
func (e *Etcd) CreateCache(c Cache) (Cache, error) { return Cache{}, ErrUnavailable }

// UpdateCache implements Store (stub).
func (e *Etcd) UpdateCache(id uint32, u CacheUpdate) (Cache, error) { return Cache{}, ErrUnavailable }

// DeleteCache implements Store (stub).
func (e *Etcd) DeleteCache(id uint32) error { return ErrUnavailable }

// Cache implements Store (stub).
func (e *Etcd) Cache(id uint32) (Cache, error) { return Cache{}, ErrNotFound }

// CacheByName implements Store (stub).
func (e *Etcd) CacheByName(name string) (Cache, error) { return Cache{}, ErrNotFound }

// Caches implements Store (stub).
func (e *Etcd) Caches() ([]Cache, error) { return nil, nil }

// MarkActive implements Store (stub).
func (e *Etcd) MarkActive(last map[uint32]time.Time) error { return nil }

// CreateCredential implements Store (stub).
func (e *Etcd) CreateCredential(cacheID uint32, n NewCredential) (Credential, string, error) {
	return Credential{}, "", ErrUnavailable
}

// UpdateCredential implements Store (stub).
func (e *Etcd) UpdateCredential(id uint32, u CredentialUpdate) (Credential, error) {
	return Credential{}, ErrUnavailable
}

// Promote implements Store (stub).
func (e *Etcd) Promote(id uint32) (Credential, error) { return Credential{}, ErrUnavailable }

// DeleteCredential implements Store (stub).
func (e *Etcd) DeleteCredential(id uint32) error { return ErrUnavailable }

// Credential implements Store (stub).
func (e *Etcd) Credential(id uint32) (Credential, error) { return Credential{}, ErrNotFound }

// CredentialByUsername implements Store (stub).
func (e *Etcd) CredentialByUsername(username string) (Credential, error) {
	return Credential{}, ErrNotFound
}

// Credentials implements Store (stub).
func (e *Etcd) Credentials(cacheID uint32) ([]Credential, error) { return nil, nil }

// AppendHistory implements Store (stub).
func (e *Etcd) AppendHistory(samples []Sample) error { return nil }

// History implements Store (stub).
func (e *Etcd) History(cacheID uint32, since time.Time) ([]Sample, error) { return nil, nil }

// PruneHistory implements Store (stub).
func (e *Etcd) PruneHistory(before time.Time) error { return nil }

// Watch implements Store (stub).
func (e *Etcd) Watch(fn func(Change)) (cancel func()) { return func() {} }

// Close implements Store (stub).
func (e *Etcd) Close() error { return nil }

var (
	_ Store   = (*Etcd)(nil)
	_ Cluster = (*Etcd)(nil)
)
