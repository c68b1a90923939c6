// Package control holds memhive's control plane: caches (tenants), their
// credentials and capabilities, behind a Store whose every acknowledged
// change is durable. The embedded backend (Bolt) keeps them in a bbolt
// file; the cluster backend (Etcd) keeps them in etcd, shared by every
// node, with the same contract (control/storetest checks both).
package control

import (
	"errors"
	"time"
)

// Capabilities are what a credential may do beyond reading its cache.
type Capabilities uint8

const (
	// CapWrite allows storage commands: set, add, replace, append,
	// prepend, cas, incr, decr, touch, gat, delete.
	CapWrite Capabilities = 1 << iota
	// CapFlush allows flush_all.
	CapFlush
	// CapAPI allows the analytics API and dashboard.
	CapAPI

	// CapAll is every capability: what a new credential gets by default.
	CapAll = CapWrite | CapFlush | CapAPI
)

// Cache is one tenant: an isolated key space with its own memory limit.
type Cache struct {
	ID         uint32    `json:"id"`
	Name       string    `json:"name"`
	Plan       string    `json:"plan"`
	LimitBytes int64     `json:"memory_limit"`
	Enabled    bool      `json:"enabled"`
	Dev        bool      `json:"dev"`
	Created    time.Time `json:"created"`
	LastActive time.Time `json:"last_active"`
}

// Credential lets a client use one cache. The password is kept only as a
// salted hash; the plaintext is known once, when it is generated.
type Credential struct {
	ID       uint32       `json:"id"`
	CacheID  uint32       `json:"cache_id"`
	Username string       `json:"username"`
	Salt     []byte       `json:"salt"`
	Hash     []byte       `json:"hash"`
	Primary  bool         `json:"primary"`
	Caps     Capabilities `json:"capabilities"`
	Created  time.Time    `json:"created"`
	// Cert is the TLS client certificate that logs in as this credential
	// without a password, if any.
	Cert CertBinding `json:"cert,omitzero"`
}

// ChangeKind says what a Change did.
type ChangeKind uint8

const (
	// CacheChanged: a cache was created or updated; Cache holds it.
	CacheChanged ChangeKind = iota + 1
	// CacheDeleted: a cache and all its credentials are gone; CacheID says which.
	CacheDeleted
	// CredentialChanged: a credential was created or updated; Credential holds it.
	CredentialChanged
	// CredentialDeleted: a credential is gone; CredentialID and CacheID say which.
	CredentialDeleted
)

// Change is one durable change, delivered to watchers in commit order.
// A promotion, or a new primary, is delivered as two Changes: the demoted
// credential's first, then the new primary's. A cache deletion is one
// CacheDeleted, which stands for its credentials too. A change refused,
// a promotion of the primary itself, MarkActive and history writes
// deliver nothing.
type Change struct {
	Kind         ChangeKind
	CacheID      uint32
	CredentialID uint32
	Cache        Cache      // set for CacheChanged
	Credential   Credential // set for CredentialChanged
}

// Errors a Store returns; wrap-checked with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrInvalid     = errors.New("invalid")
	ErrOverCommit  = errors.New("memory limits would exceed the server's memory")
	ErrLastPrimary = errors.New("a cache's primary credential cannot be deleted while it has others")
	ErrLocked      = errors.New("store is held by another process")
	// ErrUnavailable: a shared store (etcd) cannot be reached now, so the
	// change was not made; callers answer 503 and the client retries.
	ErrUnavailable = errors.New("control plane unavailable")
)

// Policy is what a Store enforces on every change.
type Policy struct {
	// MemoryBytes bounds the sum of all caches' limits; 0 means no bound
	// (memhive serve --overcommit).
	MemoryBytes int64
	// MinLimitBytes is the smallest cache limit accepted (one slab page).
	MinLimitBytes int64
}

// CacheUpdate changes some fields of a cache; nil fields stay as they are.
type CacheUpdate struct {
	LimitBytes *int64
	Enabled    *bool
	Plan       *string
	Name       *string
	Dev        *bool
}

// NewCredential is what CreateCredential makes.
type NewCredential struct {
	Caps    Capabilities
	Primary bool
	Cert    CertBinding
}

// CredentialUpdate changes some fields of a credential; nil fields stay as
// they are, and an empty certificate half unbinds that half. The halves
// are separate so that a tenant binding a fingerprint and the operator
// binding a CN at the same moment do not undo each other.
type CredentialUpdate struct {
	Caps       *Capabilities
	CertSHA256 *string
	CertCN     *string
}

// Sample is one cache's stats at one moment, kept for the history graphs.
type Sample struct {
	CacheID uint32            `json:"cache_id"`
	Server  string            `json:"server"`
	Time    time.Time         `json:"time"`
	Stats   map[string]uint64 `json:"stats"`
}

// Store is the control plane's storage. Every method that changes
// something returns only after the change is durable and, for the
// embedded backend, after every watcher has been called with it (see
// Watch). Safe for concurrent use.
type Store interface {
	// CreateCache adds a cache: it assigns the ID (increasing, never
	// reused) and Created time, checks the name is unique and non-empty
	// and the limit against the Policy. Enabled is taken from c; an empty
	// Plan becomes "<N>MB" and follows the limit until set otherwise.
	CreateCache(c Cache) (Cache, error)
	// UpdateCache applies u to cache id, checking the Policy.
	UpdateCache(id uint32, u CacheUpdate) (Cache, error)
	// DeleteCache removes a cache and every credential of it.
	DeleteCache(id uint32) error
	// Cache returns cache id.
	Cache(id uint32) (Cache, error)
	// CacheByName returns the cache with this name.
	CacheByName(name string) (Cache, error)
	// Caches lists every cache by ascending ID.
	Caches() ([]Cache, error)
	// MarkActive records when caches last served a command; it is batched
	// (the server calls it about once a minute) and notifies nobody. It
	// skips caches it does not know and never moves a time backwards.
	MarkActive(last map[uint32]time.Time) error

	// CreateCredential adds a credential to a cache with a generated
	// username (NewUsername) and password (NewPassword) and returns the
	// plaintext password; capability bits beyond CapAll are dropped, a
	// fingerprint is stored as ParseFingerprint writes it. The
	// cache's first credential is its primary whatever n says. A
	// certificate bound to another credential is ErrExists (see
	// UpdateCredential), and then nothing is created.
	CreateCredential(cacheID uint32, n NewCredential) (Credential, string, error)
	// UpdateCredential applies u to credential id, all of it or, on
	// error, none. A fingerprint or CN bound to another credential is
	// ErrExists: a certificate logs in as one credential only.
	UpdateCredential(id uint32, u CredentialUpdate) (Credential, error)
	// Promote makes a credential its cache's primary, demoting the old one.
	Promote(id uint32) (Credential, error)
	// DeleteCredential removes a credential. The primary can be deleted
	// only when it is the cache's last credential (ErrLastPrimary).
	DeleteCredential(id uint32) error
	// Credential returns credential id.
	Credential(id uint32) (Credential, error)
	// CredentialByUsername returns the credential with this username.
	CredentialByUsername(username string) (Credential, error)
	// Credentials lists a cache's credentials by ascending ID (0: all caches').
	Credentials(cacheID uint32) ([]Credential, error)

	// AppendHistory stores stats samples.
	AppendHistory(samples []Sample) error
	// History returns a cache's samples taken at or after since, oldest first.
	History(cacheID uint32, since time.Time) ([]Sample, error)
	// PruneHistory drops every sample taken before before.
	PruneHistory(before time.Time) error

	// Watch calls fn with every change committed after Watch returns,
	// until the returned cancel is called. The embedded backend calls
	// watchers in commit order, one change at a time, on the goroutine of
	// the method that made the change, before that method returns, and
	// without holding its write lock: other changes may commit meanwhile,
	// but are delivered only after. fn must return quickly (it delays its
	// change's caller and the delivery of every later change) and must not
	// change the store; work that takes time belongs on a goroutine of
	// the watcher's own, fed in the order fn sees.
	Watch(fn func(Change)) (cancel func())
	// Close releases the store.
	Close() error
}
