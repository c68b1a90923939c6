package control

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The Store methods of Etcd. Each change plans a transaction from the
// copy: it checks what bolt checks, and compares every key the check
// relied on (the index keys names/, usernames/, certs/, primary/, the ID
// counters and the limits sum), so that the transaction commits only if
// no other node changed them since; then change retries with a fresher
// copy.

func jsonString(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // Cache and Credential always marshal
	}
	return string(raw)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// nodes is the number of nodes each cache's limit is split over.
func (s *etcdState) nodes() int { return max(len(s.members), 1) }

// CreateCache implements Store.
func (e *Etcd) CreateCache(c Cache) (Cache, error) {
	if !cacheName.MatchString(c.Name) {
		return Cache{}, fmt.Errorf("cache name %q: %w (1 to 64 of A-Z a-z 0-9 _ . -)", c.Name, ErrInvalid)
	}
	in := c
	in.Created = time.Now().UTC().Truncate(time.Second)
	if in.Plan == "" {
		in.Plan = fmt.Sprintf("%dMB", in.LimitBytes>>20)
	}
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		nameKey := keyNames + c.Name
		if _, _, ok := s.index(nameKey); ok {
			return fmt.Errorf("cache %q: %w", c.Name, ErrExists)
		}
		sum, sumMod := s.counter(keyLimits)
		if err := e.policy.checkLimit(c.LimitBytes, sum, s.nodes()); err != nil {
			return err
		}
		seq, seqMod := s.counter(keyCacheSeq)
		c = in
		c.ID = uint32(seq + 1)
		p.same(e.key(nameKey), 0)
		p.same(e.key(keyLimits), sumMod)
		p.same(e.key(keyCacheSeq), seqMod)
		p.put(e.key(idKey(keyCaches, c.ID)), jsonString(c))
		p.put(e.key(nameKey), itoa(int64(c.ID)))
		p.put(e.key(keyCacheSeq), itoa(int64(c.ID)))
		p.put(e.key(keyLimits), itoa(sum+c.LimitBytes))
		return nil
	})
	if err != nil {
		return Cache{}, err
	}
	return c, nil
}

// UpdateCache implements Store.
func (e *Etcd) UpdateCache(id uint32, u CacheUpdate) (Cache, error) {
	var c Cache
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		var ok bool
		if c, ok = s.caches[id]; !ok {
			return fmt.Errorf("cache %d: %w", id, ErrNotFound)
		}
		p.same(e.key(idKey(keyCaches, id)), s.mod(idKey(keyCaches, id)))
		if u.LimitBytes != nil && *u.LimitBytes != c.LimitBytes {
			sum, sumMod := s.counter(keyLimits)
			if err := e.policy.checkLimit(*u.LimitBytes, sum-c.LimitBytes, s.nodes()); err != nil {
				return err
			}
			p.same(e.key(keyLimits), sumMod)
			p.put(e.key(keyLimits), itoa(sum-c.LimitBytes+*u.LimitBytes))
			if c.Plan == fmt.Sprintf("%dMB", c.LimitBytes>>20) {
				c.Plan = fmt.Sprintf("%dMB", *u.LimitBytes>>20)
			}
			c.LimitBytes = *u.LimitBytes
		}
		if u.Name != nil && *u.Name != c.Name {
			if !cacheName.MatchString(*u.Name) {
				return fmt.Errorf("cache name %q: %w", *u.Name, ErrInvalid)
			}
			newKey := keyNames + *u.Name
			if _, _, ok := s.index(newKey); ok {
				return fmt.Errorf("cache %q: %w", *u.Name, ErrExists)
			}
			p.same(e.key(newKey), 0)
			p.del(e.key(keyNames + c.Name))
			p.put(e.key(newKey), itoa(int64(id)))
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
		p.put(e.key(idKey(keyCaches, id)), jsonString(c))
		if a := s.active[id]; a.After(c.LastActive) {
			defer func() { c.LastActive = a }() // reported, not stored in the record
		}
		return nil
	})
	if err != nil {
		return Cache{}, err
	}
	return c, nil
}

// DeleteCache implements Store, for a cache of any size. etcd takes at
// most --max-txn-ops writes in a transaction (128 by default), too few
// for a cache's every credential and index key, so the deletion is two
// steps. The first is one transaction of a fixed size that removes the
// cache record, its name, primary and activity keys and its share of the
// limits sum: from its revision on, the cache and all its credentials
// are gone for every node (reads hide the credentials of a missing cache,
// and watchers get the one CacheDeleted). The second removes those
// orphaned credentials in batches that fit a transaction
// (removeOrphans); a crash in between leaves orphans that no one sees,
// removed when a node next loads the state. An error of the second step
// is only logged: the cache is deleted all the same.
func (e *Etcd) DeleteCache(id uint32) error {
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		c, ok := s.caches[id]
		if !ok {
			return fmt.Errorf("cache %d: %w", id, ErrNotFound)
		}
		cacheKey := idKey(keyCaches, id)
		sum, sumMod := s.counter(keyLimits)
		// The credentials need no compare: a change to one compares
		// the cache's record (creation, update) or its primary key
		// (promotion, deletion), both of which this deletes, so none
		// commits after it; those committed before are in the copy the
		// second step plans from.
		p.same(e.key(cacheKey), s.mod(cacheKey))
		p.same(e.key(keyLimits), sumMod)
		p.del(e.key(keyNames + c.Name))
		p.del(e.key(idKey(keyPrimary, id)))
		p.del(e.key(idKey(keyActive, id)))
		p.del(e.key(cacheKey))
		p.put(e.key(keyLimits), itoa(sum-c.LimitBytes))
		return nil
	})
	if err != nil {
		return err
	}
	if e.stopAfterCacheDelete.Load() {
		return nil // a test plays a crash between the two steps
	}
	if err := e.removeOrphans(); err != nil {
		e.log.Warn("etcd store: removing a deleted cache's credentials; the next load of the state will", "cache", id, "err", err)
	}
	return nil
}

// removeOrphans removes the credentials whose cache is gone, with their
// username and certificate index keys, in transactions that fit etcd's
// limit, until the copy holds none. Each transaction compares every key
// it deletes with the copy's revision of it and the cache record's
// absence, so that it deletes only what is still orphaned: an index key
// another credential claimed meanwhile is left alone. It delivers no
// Change (changesSince). Nodes may run it at once: the loser of a
// conflict plans again from a fresher copy.
func (e *Etcd) removeOrphans() error {
	for {
		n := 0
		_, err := e.change(func(s *etcdState, p *txnPlan) error {
			n = 0
			for _, cr := range s.orphans() {
				// At most four deletes and five compares a credential.
				if len(p.ops)+4 > maxTxnOps || len(p.cmps)+5 > maxTxnOps {
					break
				}
				e.planOrphan(s, p, cr)
				n++
			}
			return nil
		})
		if err != nil || n == 0 {
			return err
		}
	}
}

// planOrphan plans deleting orphan cr's record and the index keys that
// still point at it.
func (e *Etcd) planOrphan(s *etcdState, p *txnPlan, cr Credential) {
	p.same(e.key(idKey(keyCaches, cr.CacheID)), 0)
	k := idKey(keyCreds, cr.ID)
	p.same(e.key(k), s.mod(k))
	p.del(e.key(k))
	idx := []string{keyUsernames + cr.Username}
	if cr.Cert.SHA256 != "" {
		idx = append(idx, keyCertSHA+cr.Cert.SHA256)
	}
	if cr.Cert.CN != "" {
		idx = append(idx, keyCertCN+cr.Cert.CN)
	}
	for _, rel := range idx {
		if id, mod, ok := s.index(rel); ok && id == cr.ID {
			p.same(e.key(rel), mod)
			p.del(e.key(rel))
		}
	}
}

// Cache implements Store. LastActive is the latest of every node's.
func (e *Etcd) Cache(id uint32) (Cache, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	c, ok := e.st.cache(id)
	if !ok {
		return Cache{}, fmt.Errorf("cache %d: %w", id, ErrNotFound)
	}
	return c, nil
}

// CacheByName implements Store.
func (e *Etcd) CacheByName(name string) (Cache, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if id, _, ok := e.st.index(keyNames + name); ok {
		if c, ok := e.st.cache(id); ok {
			return c, nil
		}
	}
	return Cache{}, fmt.Errorf("cache %q: %w", name, ErrNotFound)
}

// Caches implements Store.
func (e *Etcd) Caches() ([]Cache, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]Cache, 0, len(e.st.caches))
	for id := range e.st.caches {
		c, _ := e.st.cache(id)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Cache) int { return int(int64(a.ID) - int64(b.ID)) })
	return out, nil
}

// MarkActive implements Store. Times are kept apart from the cache
// records (active/<id>), so that they notify nobody, and merged as the
// latest: each node reports its own, and a dev cache is idle only if it
// is idle on every node.
func (e *Etcd) MarkActive(last map[uint32]time.Time) error {
	ids := make([]uint32, 0, len(last))
	for id := range last {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Each cache takes two compares: a batch is cut to fit a transaction.
	for chunk := range slices.Chunk(ids, maxTxnOps/2) {
		_, err := e.change(func(s *etcdState, p *txnPlan) error {
			for _, id := range chunk {
				t := last[id].UTC()
				if _, ok := s.caches[id]; !ok || !t.After(s.active[id]) {
					continue // deleted meanwhile, or not later
				}
				ak, ck := idKey(keyActive, id), idKey(keyCaches, id)
				p.same(e.key(ak), s.mod(ak))
				// The cache must still exist; its updates do not matter.
				p.cmps = append(p.cmps, clientv3.Compare(clientv3.CreateRevision(e.key(ck)), "=", s.kv[ck].Create))
				p.put(e.key(ak), t.Format(time.RFC3339Nano))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// CreateCredential implements Store.
func (e *Etcd) CreateCredential(cacheID uint32, n NewCredential) (Credential, string, error) {
	cert, err := n.Cert.normalize()
	if err != nil {
		return Credential{}, "", err
	}
	password := NewPassword()
	salt := newSalt()
	hash := HashPassword(salt, []byte(password))
	created := time.Now().UTC().Truncate(time.Second)
	var cr Credential
	_, err = e.change(func(s *etcdState, p *txnPlan) error {
		cacheKey, primaryKey := idKey(keyCaches, cacheID), idKey(keyPrimary, cacheID)
		if _, ok := s.caches[cacheID]; !ok {
			return fmt.Errorf("cache %d: %w", cacheID, ErrNotFound)
		}
		if err := e.certFree(s, p, 0, cert); err != nil {
			return err
		}
		username := NewUsername()
		for {
			if _, _, taken := s.index(keyUsernames + username); !taken {
				break
			}
			username = NewUsername()
		}
		seq, seqMod := s.counter(keyCredSeq)
		oldPrimary, primaryMod, hasPrimary := s.index(primaryKey)
		cr = Credential{
			ID: uint32(seq + 1), CacheID: cacheID, Username: username,
			Salt: salt, Hash: hash,
			Primary: n.Primary || !hasPrimary, Caps: n.Caps & CapAll,
			Created: created, Cert: cert,
		}
		p.same(e.key(cacheKey), s.mod(cacheKey))
		p.same(e.key(primaryKey), primaryMod)
		p.same(e.key(keyUsernames+username), 0)
		p.same(e.key(keyCredSeq), seqMod)
		primary := oldPrimary
		if cr.Primary {
			primary = cr.ID
			if old, ok := s.creds[oldPrimary]; ok && hasPrimary {
				e.demote(s, p, old)
			}
		}
		p.put(e.key(idKey(keyCreds, cr.ID)), jsonString(cr))
		p.put(e.key(keyUsernames+username), itoa(int64(cr.ID)))
		e.bindCert(p, cr.ID, Credential{}.Cert, cert)
		p.put(e.key(keyCredSeq), itoa(int64(cr.ID)))
		// Re-put even when unchanged: every change of the cache's set of
		// credentials moves this key, so that the compares of a deletion
		// (ErrLastPrimary counts them) see it.
		p.put(e.key(primaryKey), itoa(int64(primary)))
		return nil
	})
	if err != nil {
		return Credential{}, "", err
	}
	return cr, password, nil
}

// demote plans clearing old's primary flag.
func (e *Etcd) demote(s *etcdState, p *txnPlan, old Credential) {
	k := idKey(keyCreds, old.ID)
	p.same(e.key(k), s.mod(k))
	old.Primary = false
	p.put(e.key(k), jsonString(old))
}

// certFree checks that no credential but self holds b's fingerprint or
// CN, and plans compares on the index keys that say so. An index key
// that points at an orphan (or at no credential) is free: the binding
// that claims it overwrites it in the same transaction (bindCert), and
// removeOrphans leaves a key that no longer points at its orphan.
func (e *Etcd) certFree(s *etcdState, p *txnPlan, self uint32, b CertBinding) error {
	check := func(rel, what string) error {
		id, mod, ok := s.index(rel)
		if ok && id != self && !s.released(id) {
			return fmt.Errorf("certificate %s is bound to credential %s: %w", what, s.creds[id].Username, ErrExists)
		}
		p.same(e.key(rel), mod)
		return nil
	}
	if b.SHA256 != "" {
		if err := check(keyCertSHA+b.SHA256, b.SHA256); err != nil {
			return err
		}
	}
	if b.CN != "" {
		if err := check(keyCertCN+b.CN, fmt.Sprintf("CN %q", b.CN)); err != nil {
			return err
		}
	}
	return nil
}

// bindCert plans moving credential id's index keys from binding old to new.
func (e *Etcd) bindCert(p *txnPlan, id uint32, old, new CertBinding) {
	for _, h := range []struct{ prefix, old, new string }{
		{keyCertSHA, old.SHA256, new.SHA256},
		{keyCertCN, old.CN, new.CN},
	} {
		if h.old == h.new {
			continue
		}
		if h.old != "" {
			p.del(e.key(h.prefix + h.old))
		}
		if h.new != "" {
			p.put(e.key(h.prefix+h.new), itoa(int64(id)))
		}
	}
}

// UpdateCredential implements Store.
func (e *Etcd) UpdateCredential(id uint32, u CredentialUpdate) (Credential, error) {
	var cr Credential
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		old, ok := s.cred(id)
		if !ok {
			return fmt.Errorf("credential %d: %w", id, ErrNotFound)
		}
		// The cache must still exist, or the update would write to an
		// orphan; its updates do not matter.
		ck := idKey(keyCaches, old.CacheID)
		p.cmps = append(p.cmps, clientv3.Compare(clientv3.CreateRevision(e.key(ck)), "=", s.kv[ck].Create))
		cr = old
		if u.Caps != nil {
			cr.Caps = *u.Caps & CapAll
		}
		if u.CertSHA256 != nil {
			cr.Cert.SHA256 = *u.CertSHA256
		}
		if u.CertCN != nil {
			cr.Cert.CN = *u.CertCN
		}
		var err error
		if cr.Cert, err = cr.Cert.normalize(); err != nil {
			return err
		}
		if err := e.certFree(s, p, id, cr.Cert); err != nil {
			return err
		}
		k := idKey(keyCreds, id)
		p.same(e.key(k), s.mod(k))
		p.put(e.key(k), jsonString(cr))
		e.bindCert(p, id, old.Cert, cr.Cert)
		return nil
	})
	if err != nil {
		return Credential{}, err
	}
	return cr, nil
}

// Promote implements Store.
func (e *Etcd) Promote(id uint32) (Credential, error) {
	var cr Credential
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		var ok bool
		if cr, ok = s.cred(id); !ok {
			return fmt.Errorf("credential %d: %w", id, ErrNotFound)
		}
		if cr.Primary {
			return nil // nothing to write
		}
		k, primaryKey := idKey(keyCreds, id), idKey(keyPrimary, cr.CacheID)
		oldPrimary, primaryMod, hasPrimary := s.index(primaryKey)
		p.same(e.key(k), s.mod(k))
		p.same(e.key(primaryKey), primaryMod)
		if old, ok := s.creds[oldPrimary]; ok && hasPrimary {
			e.demote(s, p, old)
		}
		cr.Primary = true
		p.put(e.key(k), jsonString(cr))
		p.put(e.key(primaryKey), itoa(int64(id)))
		return nil
	})
	if err != nil {
		return Credential{}, err
	}
	return cr, nil
}

// DeleteCredential implements Store.
func (e *Etcd) DeleteCredential(id uint32) error {
	_, err := e.change(func(s *etcdState, p *txnPlan) error {
		cr, ok := s.cred(id)
		if !ok {
			return fmt.Errorf("credential %d: %w", id, ErrNotFound)
		}
		k, primaryKey := idKey(keyCreds, id), idKey(keyPrimary, cr.CacheID)
		primary, primaryMod, _ := s.index(primaryKey)
		p.same(e.key(k), s.mod(k))
		p.same(e.key(primaryKey), primaryMod)
		if cr.Primary {
			if len(s.credsOf(cr.CacheID)) > 1 {
				return fmt.Errorf("credential %d: %w", id, ErrLastPrimary)
			}
			p.del(e.key(primaryKey))
		} else {
			p.put(e.key(primaryKey), itoa(int64(primary))) // moves, as for a creation
		}
		p.del(e.key(k))
		p.del(e.key(keyUsernames + cr.Username))
		e.bindCert(p, id, cr.Cert, CertBinding{})
		return nil
	})
	return err
}

// Credential implements Store.
func (e *Etcd) Credential(id uint32) (Credential, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	cr, ok := e.st.cred(id)
	if !ok {
		return Credential{}, fmt.Errorf("credential %d: %w", id, ErrNotFound)
	}
	return cr, nil
}

// CredentialByUsername implements Store.
func (e *Etcd) CredentialByUsername(username string) (Credential, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if id, _, ok := e.st.index(keyUsernames + username); ok {
		if cr, ok := e.st.cred(id); ok {
			return cr, nil
		}
	}
	return Credential{}, fmt.Errorf("username %q: %w", username, ErrNotFound)
}

// Credentials implements Store.
func (e *Etcd) Credentials(cacheID uint32) ([]Credential, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.st.credsOf(cacheID), nil
}

// AppendHistory implements Store: history stays on this node (cfg.Dir);
// the analytics layer gathers every node's.
func (e *Etcd) AppendHistory(samples []Sample) error { return e.hist.AppendHistory(samples) }

// History implements Store: this node's samples only.
func (e *Etcd) History(cacheID uint32, since time.Time) ([]Sample, error) {
	return e.hist.History(cacheID, since)
}

// PruneHistory implements Store.
func (e *Etcd) PruneHistory(before time.Time) error { return e.hist.PruneHistory(before) }
