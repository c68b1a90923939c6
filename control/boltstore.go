package control

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketCaches    = []byte("caches")      // id -> Cache (JSON)
	bucketCreds     = []byte("credentials") // id -> Credential (JSON)
	bucketNames     = []byte("cache_names") // name -> cache id
	bucketUsernames = []byte("usernames")   // username -> credential id
	bucketHistory   = []byte("history")     // cache id, unix nanoseconds (big-endian) -> Sample (JSON)
)

var cacheName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Bolt is the embedded Store: one bbolt file, written by one process at a
// time (bbolt holds an exclusive file lock while it is open). Every change
// is one transaction, fsynced by bbolt before it commits.
type Bolt struct {
	db     *bolt.DB
	policy Policy

	// writeMu guards writing: one write transaction at a time, so that a
	// commit's checks (the memory bound, unique names) see every commit
	// before it. It is not held while watchers are called.
	writeMu sync.Mutex
	// deliverMu guards calling the watchers: a commit takes it before
	// releasing writeMu and holds it while it calls them, so that they see
	// changes in commit order, one at a time. Watchers must not change the
	// store (that would wait for deliverMu, which their caller holds).
	deliverMu sync.Mutex
	// watchMu guards watchers and nextW.
	watchMu  sync.Mutex
	watchers map[int]func(Change)
	nextW    int
}

// Open opens (creating if needed) the store at path. When another process
// holds the file for longer than timeout, it returns an error wrapping
// ErrLocked.
func Open(path string, policy Policy, timeout time.Duration) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCaches, bucketCreds, bucketNames, bucketUsernames, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Bolt{db: db, policy: policy, watchers: map[int]func(Change){}}, nil
}

// Close releases the file.
func (s *Bolt) Close() error { return s.db.Close() }

func itob(id uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	return b[:]
}

// update runs fn in one write transaction and, once it has committed,
// tells the watchers about the changes fn reported: after releasing the
// write lock, so that other writers need not wait for the watchers, and
// in commit order, since the delivery lock is taken before the write lock
// is released.
func (s *Bolt) update(fn func(tx *bolt.Tx, changes *[]Change) error) error {
	s.writeMu.Lock()
	var changes []Change
	if err := s.db.Update(func(tx *bolt.Tx) error {
		changes = changes[:0]
		return fn(tx, &changes)
	}); err != nil {
		s.writeMu.Unlock()
		return err
	}
	s.deliverMu.Lock()
	s.writeMu.Unlock()
	defer s.deliverMu.Unlock()
	s.watchMu.Lock()
	ws := make([]func(Change), 0, len(s.watchers))
	ids := make([]int, 0, len(s.watchers))
	for id := range s.watchers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		ws = append(ws, s.watchers[id])
	}
	s.watchMu.Unlock()
	for _, c := range changes {
		for _, w := range ws {
			w(c)
		}
	}
	return nil
}

// Watch implements Store.
func (s *Bolt) Watch(fn func(Change)) (cancel func()) {
	s.watchMu.Lock()
	id := s.nextW
	s.nextW++
	s.watchers[id] = fn
	s.watchMu.Unlock()
	return func() {
		s.watchMu.Lock()
		delete(s.watchers, id)
		s.watchMu.Unlock()
	}
}

func getJSON[T any](b *bolt.Bucket, id uint32, what string) (T, error) {
	var v T
	raw := b.Get(itob(id))
	if raw == nil {
		return v, fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%s %d: %w", what, id, err)
	}
	return v, nil
}

func putJSON(b *bolt.Bucket, id uint32, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(itob(id), raw)
}

// checkLimit applies the Policy to a cache limit, given the sum of the
// other caches' limits.
func (s *Bolt) checkLimit(limit, others int64) error { return s.policy.checkLimit(limit, others, 1) }

// checkLimit applies p to a cache limit, given the sum of the other
// caches' limits and the number of nodes each limit is split over (the
// etcd backend's live members; 1 for the embedded one): each node holds
// 1/nodes of every cache, so the bound on the sum grows with the nodes.
func (p Policy) checkLimit(limit, others int64, nodes int) error {
	if limit <= 0 || limit < p.MinLimitBytes {
		return fmt.Errorf("memory limit %d bytes: %w (the smallest is %d bytes)", limit, ErrInvalid, max(p.MinLimitBytes, 1))
	}
	bound := p.MemoryBytes * int64(max(nodes, 1))
	if p.MemoryBytes > 0 && others+limit > bound {
		return fmt.Errorf("%w: other caches' limits add up to %d MiB, this one asks %d MiB, the servers have %d MiB (serve with --overcommit to allow it)",
			ErrOverCommit, others>>20, limit>>20, bound>>20)
	}
	return nil
}

// sumLimits adds up every cache's limit but except's.
func sumLimits(tx *bolt.Tx, except uint32) (int64, error) {
	var sum int64
	err := tx.Bucket(bucketCaches).ForEach(func(k, v []byte) error {
		if binary.BigEndian.Uint32(k) == except {
			return nil
		}
		var c Cache
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		sum += c.LimitBytes
		return nil
	})
	return sum, err
}

// CreateCache implements Store.
func (s *Bolt) CreateCache(c Cache) (Cache, error) {
	if !cacheName.MatchString(c.Name) {
		return Cache{}, fmt.Errorf("cache name %q: %w (1 to 64 of A-Z a-z 0-9 _ . -)", c.Name, ErrInvalid)
	}
	err := s.update(func(tx *bolt.Tx, changes *[]Change) error {
		names := tx.Bucket(bucketNames)
		if names.Get([]byte(c.Name)) != nil {
			return fmt.Errorf("cache %q: %w", c.Name, ErrExists)
		}
		others, err := sumLimits(tx, 0)
		if err != nil {
			return err
		}
		if err := s.checkLimit(c.LimitBytes, others); err != nil {
			return err
		}
		b := tx.Bucket(bucketCaches)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		c.ID = uint32(seq)
		c.Created = time.Now().UTC().Truncate(time.Second)
		if c.Plan == "" {
			c.Plan = fmt.Sprintf("%dMB", c.LimitBytes>>20)
		}
		if err := putJSON(b, c.ID, c); err != nil {
			return err
		}
		if err := names.Put([]byte(c.Name), itob(c.ID)); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CacheChanged, CacheID: c.ID, Cache: c})
		return nil
	})
	return c, err
}

// UpdateCache implements Store.
func (s *Bolt) UpdateCache(id uint32, u CacheUpdate) (Cache, error) {
	var c Cache
	err := s.update(func(tx *bolt.Tx, changes *[]Change) error {
		b := tx.Bucket(bucketCaches)
		var err error
		if c, err = getJSON[Cache](b, id, "cache"); err != nil {
			return err
		}
		if u.LimitBytes != nil && *u.LimitBytes != c.LimitBytes {
			others, err := sumLimits(tx, id)
			if err != nil {
				return err
			}
			if err := s.checkLimit(*u.LimitBytes, others); err != nil {
				return err
			}
			if c.Plan == fmt.Sprintf("%dMB", c.LimitBytes>>20) {
				c.Plan = fmt.Sprintf("%dMB", *u.LimitBytes>>20)
			}
			c.LimitBytes = *u.LimitBytes
		}
		if u.Name != nil && *u.Name != c.Name {
			if !cacheName.MatchString(*u.Name) {
				return fmt.Errorf("cache name %q: %w", *u.Name, ErrInvalid)
			}
			names := tx.Bucket(bucketNames)
			if names.Get([]byte(*u.Name)) != nil {
				return fmt.Errorf("cache %q: %w", *u.Name, ErrExists)
			}
			if err := names.Delete([]byte(c.Name)); err != nil {
				return err
			}
			if err := names.Put([]byte(*u.Name), itob(id)); err != nil {
				return err
			}
			c.Name = *u.Name
		}
		if u.Enabled != nil {
			c.Enabled = *u.Enabled
		}
		if u.Dev != nil {
			c.Dev = *u.Dev
		}
		if u.Plan != nil {
			c.Plan = *u.Plan
		}
		if err := putJSON(b, id, c); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CacheChanged, CacheID: id, Cache: c})
		return nil
	})
	return c, err
}

// DeleteCache implements Store.
func (s *Bolt) DeleteCache(id uint32) error {
	return s.update(func(tx *bolt.Tx, changes *[]Change) error {
		b := tx.Bucket(bucketCaches)
		c, err := getJSON[Cache](b, id, "cache")
		if err != nil {
			return err
		}
		creds, err := credentialsOf(tx, id)
		if err != nil {
			return err
		}
		for _, cr := range creds {
			if err := tx.Bucket(bucketCreds).Delete(itob(cr.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketUsernames).Delete([]byte(cr.Username)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketNames).Delete([]byte(c.Name)); err != nil {
			return err
		}
		if err := deleteHistory(tx, id, time.Unix(1<<40, 0)); err != nil {
			return err
		}
		if err := b.Delete(itob(id)); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CacheDeleted, CacheID: id})
		return nil
	})
}

// Cache implements Store.
func (s *Bolt) Cache(id uint32) (c Cache, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c, err = getJSON[Cache](tx.Bucket(bucketCaches), id, "cache")
		return err
	})
	return c, err
}

// CacheByName implements Store.
func (s *Bolt) CacheByName(name string) (c Cache, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketNames).Get([]byte(name))
		if raw == nil {
			return fmt.Errorf("cache %q: %w", name, ErrNotFound)
		}
		c, err = getJSON[Cache](tx.Bucket(bucketCaches), binary.BigEndian.Uint32(raw), "cache")
		return err
	})
	return c, err
}

// Caches implements Store.
func (s *Bolt) Caches() ([]Cache, error) {
	var out []Cache
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCaches).ForEach(func(_, v []byte) error {
			var c Cache
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// MarkActive implements Store.
func (s *Bolt) MarkActive(last map[uint32]time.Time) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCaches)
		for id, t := range last {
			c, err := getJSON[Cache](b, id, "cache")
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if !t.After(c.LastActive) {
				continue
			}
			c.LastActive = t.UTC()
			if err := putJSON(b, id, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreateCredential implements Store.
func (s *Bolt) CreateCredential(cacheID uint32, n NewCredential) (Credential, string, error) {
	cert, err := n.Cert.normalize()
	if err != nil {
		return Credential{}, "", err
	}
	password := NewPassword()
	var cr Credential
	err = s.update(func(tx *bolt.Tx, changes *[]Change) error {
		if _, err := getJSON[Cache](tx.Bucket(bucketCaches), cacheID, "cache"); err != nil {
			return err
		}
		others, err := credentialsOf(tx, cacheID)
		if err != nil {
			return err
		}
		if err := certFree(tx, 0, cert); err != nil {
			return err
		}
		users := tx.Bucket(bucketUsernames)
		username := NewUsername()
		for users.Get([]byte(username)) != nil {
			username = NewUsername()
		}
		b := tx.Bucket(bucketCreds)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		salt := newSalt()
		cr = Credential{
			ID: uint32(seq), CacheID: cacheID, Username: username,
			Salt: salt, Hash: HashPassword(salt, []byte(password)),
			Primary: n.Primary || len(others) == 0, Caps: n.Caps & CapAll,
			Created: time.Now().UTC().Truncate(time.Second), Cert: cert,
		}
		if cr.Primary {
			if err := demote(tx, others, changes); err != nil {
				return err
			}
		}
		if err := putJSON(b, cr.ID, cr); err != nil {
			return err
		}
		if err := users.Put([]byte(username), itob(cr.ID)); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CredentialChanged, CacheID: cacheID, CredentialID: cr.ID, Credential: cr})
		return nil
	})
	if err != nil {
		return Credential{}, "", err
	}
	return cr, password, nil
}

// demote clears the primary flag of every credential in creds that has it.
func demote(tx *bolt.Tx, creds []Credential, changes *[]Change) error {
	for _, o := range creds {
		if !o.Primary {
			continue
		}
		o.Primary = false
		if err := putJSON(tx.Bucket(bucketCreds), o.ID, o); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CredentialChanged, CacheID: o.CacheID, CredentialID: o.ID, Credential: o})
	}
	return nil
}

// UpdateCredential implements Store.
func (s *Bolt) UpdateCredential(id uint32, u CredentialUpdate) (Credential, error) {
	var cr Credential
	err := s.update(func(tx *bolt.Tx, changes *[]Change) error {
		var err error
		if cr, err = getJSON[Credential](tx.Bucket(bucketCreds), id, "credential"); err != nil {
			return err
		}
		if u.Caps != nil {
			cr.Caps = *u.Caps & CapAll
		}
		if u.CertSHA256 != nil {
			cr.Cert.SHA256 = *u.CertSHA256
		}
		if u.CertCN != nil {
			cr.Cert.CN = *u.CertCN
		}
		if cr.Cert, err = cr.Cert.normalize(); err != nil {
			return err
		}
		if err := certFree(tx, id, cr.Cert); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bucketCreds), id, cr); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CredentialChanged, CacheID: cr.CacheID, CredentialID: id, Credential: cr})
		return nil
	})
	return cr, err
}

// certFree checks that no credential but self holds b's fingerprint or CN.
func certFree(tx *bolt.Tx, self uint32, b CertBinding) error {
	if !b.Bound() {
		return nil
	}
	all, err := credentialsOf(tx, 0)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.ID == self {
			continue
		}
		if b.SHA256 != "" && o.Cert.SHA256 == b.SHA256 {
			return fmt.Errorf("certificate %s is bound to credential %s: %w", b.SHA256, o.Username, ErrExists)
		}
		if b.CN != "" && o.Cert.CN == b.CN {
			return fmt.Errorf("certificate CN %q is bound to credential %s: %w", b.CN, o.Username, ErrExists)
		}
	}
	return nil
}

// Promote implements Store.
func (s *Bolt) Promote(id uint32) (Credential, error) {
	var cr Credential
	err := s.update(func(tx *bolt.Tx, changes *[]Change) error {
		var err error
		if cr, err = getJSON[Credential](tx.Bucket(bucketCreds), id, "credential"); err != nil {
			return err
		}
		if cr.Primary {
			return nil
		}
		others, err := credentialsOf(tx, cr.CacheID)
		if err != nil {
			return err
		}
		if err := demote(tx, others, changes); err != nil {
			return err
		}
		cr.Primary = true
		if err := putJSON(tx.Bucket(bucketCreds), id, cr); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CredentialChanged, CacheID: cr.CacheID, CredentialID: id, Credential: cr})
		return nil
	})
	return cr, err
}

// DeleteCredential implements Store.
func (s *Bolt) DeleteCredential(id uint32) error {
	return s.update(func(tx *bolt.Tx, changes *[]Change) error {
		cr, err := getJSON[Credential](tx.Bucket(bucketCreds), id, "credential")
		if err != nil {
			return err
		}
		if cr.Primary {
			others, err := credentialsOf(tx, cr.CacheID)
			if err != nil {
				return err
			}
			if len(others) > 1 {
				return fmt.Errorf("credential %d: %w", id, ErrLastPrimary)
			}
		}
		if err := tx.Bucket(bucketCreds).Delete(itob(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsernames).Delete([]byte(cr.Username)); err != nil {
			return err
		}
		*changes = append(*changes, Change{Kind: CredentialDeleted, CacheID: cr.CacheID, CredentialID: id})
		return nil
	})
}

// Credential implements Store.
func (s *Bolt) Credential(id uint32) (cr Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		cr, err = getJSON[Credential](tx.Bucket(bucketCreds), id, "credential")
		return err
	})
	return cr, err
}

// CredentialByUsername implements Store.
func (s *Bolt) CredentialByUsername(username string) (cr Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketUsernames).Get([]byte(username))
		if raw == nil {
			return fmt.Errorf("username %q: %w", username, ErrNotFound)
		}
		cr, err = getJSON[Credential](tx.Bucket(bucketCreds), binary.BigEndian.Uint32(raw), "credential")
		return err
	})
	return cr, err
}

// Credentials implements Store.
func (s *Bolt) Credentials(cacheID uint32) (out []Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		out, err = credentialsOf(tx, cacheID)
		return err
	})
	return out, err
}

// credentialsOf lists a cache's credentials (0: every cache's) by ID.
func credentialsOf(tx *bolt.Tx, cacheID uint32) ([]Credential, error) {
	var out []Credential
	err := tx.Bucket(bucketCreds).ForEach(func(_, v []byte) error {
		var c Credential
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		if cacheID == 0 || c.CacheID == cacheID {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

func historyKey(cacheID uint32, t time.Time) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint32(k, cacheID)
	ns := int64(0)
	if t.After(time.Unix(0, 0)) {
		ns = t.UnixNano() // times before 1970 (the zero Time) sort first
	}
	binary.BigEndian.PutUint64(k[4:], uint64(ns))
	return k
}

// AppendHistory implements Store.
func (s *Bolt) AppendHistory(samples []Sample) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		for _, sm := range samples {
			raw, err := json.Marshal(sm)
			if err != nil {
				return err
			}
			if err := b.Put(historyKey(sm.CacheID, sm.Time), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// History implements Store.
func (s *Bolt) History(cacheID uint32, since time.Time) ([]Sample, error) {
	var out []Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		prefix := itob(cacheID)
		for k, v := c.Seek(historyKey(cacheID, since)); k != nil && string(k[:4]) == string(prefix); k, v = c.Next() {
			var sm Sample
			if err := json.Unmarshal(v, &sm); err != nil {
				return err
			}
			out = append(out, sm)
		}
		return nil
	})
	return out, err
}

// PruneHistory implements Store.
func (s *Bolt) PruneHistory(before time.Time) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error { return pruneHistory(tx, before) })
}

// pruneHistory drops every cache's samples taken before before. It walks
// the history bucket itself rather than the caches bucket, so that a
// store holding history only (the etcd backend's) prunes too: one seek
// per cache that has samples, not a scan of them.
func pruneHistory(tx *bolt.Tx, before time.Time) error {
	c := tx.Bucket(bucketHistory).Cursor()
	var ids []uint32
	for k, _ := c.First(); k != nil; {
		id := binary.BigEndian.Uint32(k)
		ids = append(ids, id)
		if id == ^uint32(0) {
			break
		}
		k, _ = c.Seek(itob(id + 1))
	}
	for _, id := range ids {
		if err := deleteHistory(tx, id, before); err != nil {
			return err
		}
	}
	return nil
}

// dropHistory removes every sample of a cache: the etcd backend calls it
// when it sees the cache deleted, since its history stays on the node.
func (s *Bolt) dropHistory(cacheID uint32) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Update(func(tx *bolt.Tx) error { return deleteHistory(tx, cacheID, time.Unix(1<<40, 0)) })
}

// deleteHistory drops a cache's samples taken before before.
func deleteHistory(tx *bolt.Tx, cacheID uint32, before time.Time) error {
	b := tx.Bucket(bucketHistory)
	c := b.Cursor()
	end := historyKey(cacheID, before)
	// Collect first: deleting under a cursor makes its Next skip keys.
	var keys [][]byte
	for k, _ := c.Seek(historyKey(cacheID, time.Unix(0, 0))); k != nil && string(k) < string(end); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

var _ Store = (*Bolt)(nil)
