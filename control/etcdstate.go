package control

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keys under the prefix (cfg.Prefix + "/"). Records are JSON; index keys
// hold the decimal ID they point at. IDs are zero-padded so that etcd's
// key order is ID order.
const (
	keyCaches    = "caches/"       // caches/<id> -> Cache (LastActive from the argument only)
	keyCreds     = "creds/"        // creds/<id> -> Credential
	keyNames     = "names/"        // names/<name> -> cache id: one cache per name
	keyUsernames = "usernames/"    // usernames/<u> -> credential id: one credential per username
	keyPrimary   = "primary/"      // primary/<cache id> -> its primary's id; re-put by every change of the cache's credential set
	keyCertSHA   = "certs/sha256/" // certs/sha256/<fp> -> credential id
	keyCertCN    = "certs/cn/"     // certs/cn/<cn> -> credential id
	keyCacheSeq  = "seq/caches"    // the last cache ID given
	keyCredSeq   = "seq/creds"     // the last credential ID given
	keyLimits    = "limits"        // the sum of every cache's limit, so one compare guards the memory bound
	keyActive    = "active/"       // active/<cache id> -> RFC 3339 time: apart from the record, so it notifies nobody
	keyMembers   = "members/"      // members/<name> -> Member, under the node's lease
	keySecret    = "secret"        // the cluster secret, created once
)

func idKey(prefix string, id uint32) string { return fmt.Sprintf("%s%010d", prefix, id) }

// kvEntry is one key as etcd last reported it.
type kvEntry struct {
	Value  []byte `json:"v"`
	Mod    int64  `json:"mod"`
	Create int64  `json:"create"`
	Lease  int64  `json:"lease,omitempty"`
}

// etcdState is a node's copy of everything under the prefix at revision
// rev, with the records decoded. Only the goroutine following etcd
// changes it, under Etcd.mu; readers hold Etcd.mu for reading.
type etcdState struct {
	rev     int64
	kv      map[string]kvEntry // key relative to the prefix
	caches  map[uint32]Cache
	creds   map[uint32]Credential
	active  map[uint32]time.Time
	members map[string]Member
}

func newEtcdState() *etcdState {
	return &etcdState{
		kv:      map[string]kvEntry{},
		caches:  map[uint32]Cache{},
		creds:   map[uint32]Credential{},
		active:  map[uint32]time.Time{},
		members: map[string]Member{},
	}
}

// parseID reads the ID at the end of a record key.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// set stores key (relative) and decodes it; a value that does not decode
// is kept raw and otherwise ignored, so that a newer node's records do not
// stop an older one.
func (s *etcdState) set(key string, e kvEntry) {
	s.kv[key] = e
	s.decode(key, e.Value, true)
}

func (s *etcdState) del(key string) {
	old, ok := s.kv[key]
	if !ok {
		return
	}
	delete(s.kv, key)
	s.decode(key, old.Value, false)
}

func (s *etcdState) decode(key string, v []byte, present bool) {
	switch {
	case strings.HasPrefix(key, keyCaches):
		id, ok := parseID(key[len(keyCaches):])
		if !ok {
			return
		}
		var c Cache
		if !present || json.Unmarshal(v, &c) != nil {
			delete(s.caches, id)
			return
		}
		s.caches[id] = c
	case strings.HasPrefix(key, keyCreds):
		id, ok := parseID(key[len(keyCreds):])
		if !ok {
			return
		}
		var c Credential
		if !present || json.Unmarshal(v, &c) != nil {
			delete(s.creds, id)
			return
		}
		s.creds[id] = c
	case strings.HasPrefix(key, keyActive):
		id, ok := parseID(key[len(keyActive):])
		if !ok {
			return
		}
		t, err := time.Parse(time.RFC3339Nano, string(v))
		if !present || err != nil {
			delete(s.active, id)
			return
		}
		s.active[id] = t
	case strings.HasPrefix(key, keyMembers):
		name := key[len(keyMembers):]
		var m Member
		if !present || json.Unmarshal(v, &m) != nil {
			delete(s.members, name)
			return
		}
		s.members[name] = m
	}
}

// index returns the ID an index key points at, and its mod revision (0
// when absent, as etcd compares a missing key).
func (s *etcdState) index(key string) (id uint32, mod int64, ok bool) {
	e, ok := s.kv[key]
	if !ok {
		return 0, 0, false
	}
	id, _ = parseID(string(e.Value))
	return id, e.Mod, true
}

// mod is key's mod revision, 0 when absent.
func (s *etcdState) mod(key string) int64 { return s.kv[key].Mod }

// counter reads a decimal counter key (0 when absent).
func (s *etcdState) counter(key string) (int64, int64) {
	e := s.kv[key]
	n, _ := strconv.ParseInt(string(e.Value), 10, 64)
	return n, e.Mod
}

// cache returns cache id with its cluster-wide last activity.
func (s *etcdState) cache(id uint32) (Cache, bool) {
	c, ok := s.caches[id]
	if !ok {
		return Cache{}, false
	}
	if a := s.active[id]; a.After(c.LastActive) {
		c.LastActive = a
	}
	return c, true
}

// cacheGone reports whether cache id's record is absent. A credential of
// such a cache is an orphan: DeleteCache removes the cache record first,
// in one bounded transaction (the moment the cache and all its
// credentials are gone for every reader), and the credentials' keys in
// batches after; a crash in between leaves orphans until a node cleans
// them (removeOrphans). Absence of the key, not of the decoded record,
// is what counts, so that a cache record written by a newer node that
// this one cannot decode never makes live credentials look orphaned.
// Cache IDs are never reused, so an orphan stays one.
func (s *etcdState) cacheGone(id uint32) bool {
	_, ok := s.kv[idKey(keyCaches, id)]
	return !ok
}

// cred returns credential id unless it is missing or an orphan: every
// read and every change sees only credentials whose cache exists.
func (s *etcdState) cred(id uint32) (Credential, bool) {
	c, ok := s.creds[id]
	if !ok || s.cacheGone(c.CacheID) {
		return Credential{}, false
	}
	return c, true
}

// credsOf lists a cache's credentials (0: every cache's) by ID, orphans
// left out.
func (s *etcdState) credsOf(cacheID uint32) []Credential {
	var out []Credential
	for _, c := range s.creds {
		if (cacheID == 0 || c.CacheID == cacheID) && !s.cacheGone(c.CacheID) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Credential) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// released reports whether credential id no longer holds the index keys
// that point at it: its record is gone, or it is an orphan. A record
// this node cannot decode (a newer node's) still holds them.
func (s *etcdState) released(id uint32) bool {
	if _, ok := s.kv[idKey(keyCreds, id)]; !ok {
		return true
	}
	c, ok := s.creds[id]
	return ok && s.cacheGone(c.CacheID)
}

// orphans lists the credentials whose cache is gone, by ID.
func (s *etcdState) orphans() []Credential {
	var out []Credential
	for _, c := range s.creds {
		if s.cacheGone(c.CacheID) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Credential) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// memberList is the live members in name order.
func (s *etcdState) memberList() []Member {
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// prior is a key's entry before a batch of events changed it.
type prior struct {
	e       kvEntry
	present bool
}

// changesSince turns the keys a batch touched (with what they held before
// it) into Changes, in the order the Store documents: caches created or
// updated, then demoted credentials, then other credentials changed,
// credentials deleted, and caches deleted (one CacheDeleted standing for
// its credentials). Orphans (credentials of a cache already gone) were
// stood for by their cache's CacheDeleted, so neither writes to them nor
// their removal deliver anything. It also says whether the member list
// changed. A key counts as touched when etcd wrote it, even with the
// same value: an update that changes nothing is still delivered, as
// bolt does.
func (s *etcdState) changesSince(before map[string]prior) (out []Change, members bool) {
	var cachesChanged, cachesDeleted []uint32
	var demoted, credsChanged []Credential
	var credsDeleted []Credential
	for key, p := range before {
		now, present := s.kv[key]
		if present && p.present && now.Mod == p.e.Mod {
			continue // not written since
		}
		switch {
		case strings.HasPrefix(key, keyCaches):
			id, ok := parseID(key[len(keyCaches):])
			if !ok {
				continue
			}
			if _, ok := s.caches[id]; ok {
				cachesChanged = append(cachesChanged, id)
			} else if p.present {
				cachesDeleted = append(cachesDeleted, id)
			}
		case strings.HasPrefix(key, keyCreds):
			id, ok := parseID(key[len(keyCreds):])
			if !ok {
				continue
			}
			var old Credential
			hadOld := p.present && json.Unmarshal(p.e.Value, &old) == nil
			if hadOld && s.cacheGone(old.CacheID) {
				continue // an orphan removed, or its cache deleted in this batch
			}
			if c, ok := s.creds[id]; ok {
				if s.cacheGone(c.CacheID) {
					continue // an orphan: invisible (a reload found it)
				}
				if hadOld && old.Primary && !c.Primary {
					demoted = append(demoted, c)
				} else {
					credsChanged = append(credsChanged, c)
				}
			} else if hadOld {
				credsDeleted = append(credsDeleted, old)
			}
		case strings.HasPrefix(key, keyMembers):
			members = true
		}
	}
	slices.Sort(cachesChanged)
	slices.Sort(cachesDeleted)
	byID := func(a, b Credential) int { return int(int64(a.ID) - int64(b.ID)) }
	slices.SortFunc(demoted, byID)
	slices.SortFunc(credsChanged, byID)
	slices.SortFunc(credsDeleted, byID)
	for _, id := range cachesChanged {
		c, _ := s.cache(id)
		out = append(out, Change{Kind: CacheChanged, CacheID: id, Cache: c})
	}
	for _, c := range append(demoted, credsChanged...) {
		out = append(out, Change{Kind: CredentialChanged, CacheID: c.CacheID, CredentialID: c.ID, Credential: c})
	}
	for _, c := range credsDeleted {
		out = append(out, Change{Kind: CredentialDeleted, CacheID: c.CacheID, CredentialID: c.ID})
	}
	for _, id := range cachesDeleted {
		out = append(out, Change{Kind: CacheDeleted, CacheID: id})
	}
	return out, members
}
