// Package storetest is the contract test suite of control.Store: every
// backend runs the same tests, so that callers cannot tell the backends
// apart. It lives in a non-test file so that each backend's tests can
// import it; backend-specific behaviour (file locks, durability across a
// reopen or a crash, when watchers run relative to the writer) is tested
// by the backend itself.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
)

const mib = 1 << 20

// waitTimeout bounds every wait for a watcher: a backend may deliver
// changes after the changing method returns (the contract promises only
// commit order), so the suite waits for them instead of expecting them.
const waitTimeout = 5 * time.Second

// Run runs the contract suite. open returns a new, empty store enforcing
// p; it is called once per subtest and should close the store in a
// t.Cleanup of its own.
func Run(t *testing.T, open func(t *testing.T, p control.Policy) control.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T, control.Policy) control.Store)
	}{
		{"CreateCache", testCreateCache},
		{"CreateCacheRefused", testCreateCacheRefused},
		{"UpdateCache", testUpdateCache},
		{"DeleteCache", testDeleteCache},
		{"DeleteLargeCache", testDeleteLargeCache},
		{"NoMemoryBound", testNoMemoryBound},
		{"ConcurrentCreationsKeepTheBound", testConcurrentCreations},
		{"MarkActive", testMarkActive},
		{"Credentials", testCredentials},
		{"CredentialsOfEveryCache", testCredentialsOfEveryCache},
		{"CredentialNotFound", testCredentialNotFound},
		{"UpdateCredential", testUpdateCredential},
		{"CertificateBinding", testCertificateBinding},
		{"History", testHistory},
		{"WatchOrder", testWatchOrder},
		{"WatchCancel", testWatchCancel},
		{"WatchSlowWatcher", testWatchSlowWatcher},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// result holds a call's value and error until get checks the error: Go
// passes a multi-value call only as a function's sole arguments, so the
// *testing.T comes after.
type result[T any] struct {
	v   T
	err error
}

// must keeps set-up steps, which other subtests check, to one line:
// must(s.Cache(id)).get(t).
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) get(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

// noErr fails the test on err.
func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newCache(t *testing.T, s control.Store, name string, limit int64) control.Cache {
	t.Helper()
	return must(s.CreateCache(control.Cache{Name: name, LimitBytes: limit, Enabled: true})).get(t)
}

func newCred(t *testing.T, s control.Store, cacheID uint32, n control.NewCredential) control.Credential {
	t.Helper()
	cr, _, err := s.CreateCredential(cacheID, n)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

func testCreateCache(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	before := time.Now().Add(-time.Second)
	a := must(s.CreateCache(control.Cache{Name: "a", LimitBytes: 40 * mib, Enabled: true})).get(t)
	b := must(s.CreateCache(control.Cache{Name: "b.dev_1-x", LimitBytes: 60 * mib, Dev: true, Plan: "custom"})).get(t)
	after := time.Now().Add(time.Second)
	if a.ID == 0 || b.ID <= a.ID {
		t.Fatalf("IDs %d, %d: want nonzero and ascending", a.ID, b.ID)
	}
	if a.Created.Before(before) || a.Created.After(after) {
		t.Errorf("Created %v, want about now", a.Created)
	}
	// An empty plan is named after the limit: the API and CLI show it.
	if a.Name != "a" || a.LimitBytes != 40*mib || !a.Enabled || a.Dev || a.Plan != "40MB" {
		t.Errorf("created %+v", a)
	}
	if b.Enabled || !b.Dev || b.Plan != "custom" {
		t.Errorf("created %+v: Enabled, Dev and Plan are taken from the argument", b)
	}
	for _, want := range []control.Cache{a, b} {
		if got, err := s.Cache(want.ID); err != nil || !sameCache(got, want) {
			t.Errorf("Cache(%d) = %+v, %v; want %+v", want.ID, got, err, want)
		}
		if got, err := s.CacheByName(want.Name); err != nil || !sameCache(got, want) {
			t.Errorf("CacheByName(%q) = %+v, %v; want %+v", want.Name, got, err, want)
		}
	}
	if all, err := s.Caches(); err != nil || len(all) != 2 || !sameCache(all[0], a) || !sameCache(all[1], b) {
		t.Errorf("Caches = %+v, %v; want a then b", all, err)
	}
	if _, err := s.Cache(b.ID + 1); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("Cache of no cache: %v", err)
	}
	if _, err := s.CacheByName("nope"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("CacheByName of no cache: %v", err)
	}
}

// sameCache compares caches, their times by instant: a backend may
// return them in another location than it was given.
func sameCache(a, b control.Cache) bool {
	return a.Created.Equal(b.Created) && a.LastActive.Equal(b.LastActive) &&
		a.ID == b.ID && a.Name == b.Name && a.Plan == b.Plan && a.LimitBytes == b.LimitBytes &&
		a.Enabled == b.Enabled && a.Dev == b.Dev
}

func testCreateCacheRefused(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	newCache(t, s, "a", 40*mib)
	for _, e := range []struct {
		c    control.Cache
		want error
	}{
		{control.Cache{Name: "a", LimitBytes: mib}, control.ErrExists},
		{control.Cache{Name: "", LimitBytes: mib}, control.ErrInvalid},
		{control.Cache{Name: "bad name", LimitBytes: mib}, control.ErrInvalid},
		{control.Cache{Name: "a/b", LimitBytes: mib}, control.ErrInvalid},
		{control.Cache{Name: strings.Repeat("x", 65), LimitBytes: mib}, control.ErrInvalid},
		{control.Cache{Name: "small", LimitBytes: mib - 1}, control.ErrInvalid},
		{control.Cache{Name: "zero"}, control.ErrInvalid},
		{control.Cache{Name: "negative", LimitBytes: -mib}, control.ErrInvalid},
		{control.Cache{Name: "big", LimitBytes: 60*mib + 1}, control.ErrOverCommit},
	} {
		if _, err := s.CreateCache(e.c); !errors.Is(err, e.want) {
			t.Errorf("create %q (%d bytes): %v, want %v", e.c.Name, e.c.LimitBytes, err, e.want)
		}
	}
	// The longest name and exactly the remaining memory are accepted.
	newCache(t, s, strings.Repeat("x", 64), 60*mib)
	if all := must(s.Caches()).get(t); len(all) != 2 {
		t.Errorf("%d caches, want 2: refused creations created something", len(all))
	}
}

func testUpdateCache(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	a := newCache(t, s, "a", 40*mib)
	b := newCache(t, s, "b", 60*mib)

	grow, tiny, taken, bad := int64(40*mib+1), int64(mib-1), "b", "bad name"
	off := false
	for _, r := range []struct {
		u    control.CacheUpdate
		want error
	}{
		// Each with another field changed too: all or nothing.
		{control.CacheUpdate{LimitBytes: &grow, Enabled: &off}, control.ErrOverCommit},
		{control.CacheUpdate{LimitBytes: &tiny, Enabled: &off}, control.ErrInvalid},
		{control.CacheUpdate{Name: &taken, Enabled: &off}, control.ErrExists},
		{control.CacheUpdate{Name: &bad, Enabled: &off}, control.ErrInvalid},
	} {
		if _, err := s.UpdateCache(a.ID, r.u); !errors.Is(err, r.want) {
			t.Errorf("update %+v: %v, want %v", r.u, err, r.want)
		}
	}
	if got := must(s.Cache(a.ID)).get(t); !sameCache(got, a) {
		t.Fatalf("refused updates changed %+v to %+v", a, got)
	}
	if _, err := s.UpdateCache(b.ID+1, control.CacheUpdate{Enabled: &off}); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("update of no cache: %v", err)
	}

	// A cache's own limit is not counted against its new one.
	same := int64(40 * mib)
	if got, err := s.UpdateCache(a.ID, control.CacheUpdate{LimitBytes: &same}); err != nil || !sameCache(got, a) {
		t.Errorf("keeping the limit at the bound: %+v, %v", got, err)
	}
	shrink, name, dev := int64(20*mib), "a2", true
	got, err := s.UpdateCache(a.ID, control.CacheUpdate{LimitBytes: &shrink, Enabled: &off, Name: &name, Dev: &dev})
	want := a
	// A plan named after the limit follows it.
	want.LimitBytes, want.Enabled, want.Name, want.Dev, want.Plan = shrink, false, "a2", true, "20MB"
	if err != nil || !sameCache(got, want) {
		t.Fatalf("update = %+v, %v; want %+v", got, err, want)
	}
	if stored := must(s.Cache(a.ID)).get(t); !sameCache(stored, want) {
		t.Errorf("stored %+v, want %+v", stored, want)
	}
	if _, err := s.CacheByName("a"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("old name still found: %v", err)
	}
	if got, err := s.CacheByName("a2"); err != nil || got.ID != a.ID {
		t.Errorf("by new name: %+v, %v", got, err)
	}
	// The old name is free for another cache.
	newCache(t, s, "a", 20*mib)

	// A plan set by hand stays when the limit changes.
	plan, smaller := "gold", int64(10*mib)
	must(s.UpdateCache(b.ID, control.CacheUpdate{Plan: &plan})).get(t)
	if got := must(s.UpdateCache(b.ID, control.CacheUpdate{LimitBytes: &smaller})).get(t); got.Plan != "gold" || got.LimitBytes != smaller {
		t.Errorf("after resizing a cache with a custom plan: %+v", got)
	}
}

func testDeleteCache(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	keep := newCache(t, s, "keep", 20*mib)
	gone := newCache(t, s, "gone", 80*mib)
	kept := newCred(t, s, keep.ID, control.NewCredential{Caps: control.CapAll})
	fp := strings.Repeat("ab", 32)
	var creds []control.Credential
	creds = append(creds, newCred(t, s, gone.ID, control.NewCredential{Caps: control.CapAll, Cert: control.CertBinding{SHA256: fp, CN: "gone-app"}}))
	creds = append(creds, newCred(t, s, gone.ID, control.NewCredential{Caps: control.CapWrite}))
	noErr(t, s.AppendHistory([]control.Sample{{CacheID: gone.ID, Server: "h:1", Time: time.Now()}}))

	noErr(t, s.DeleteCache(gone.ID))
	if _, err := s.Cache(gone.ID); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("deleted cache found: %v", err)
	}
	if _, err := s.CacheByName("gone"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("deleted cache found by name: %v", err)
	}
	for _, cr := range creds {
		if _, err := s.Credential(cr.ID); !errors.Is(err, control.ErrNotFound) {
			t.Errorf("credential %d of a deleted cache: %v", cr.ID, err)
		}
		if _, err := s.CredentialByUsername(cr.Username); !errors.Is(err, control.ErrNotFound) {
			t.Errorf("username %s of a deleted cache: %v", cr.Username, err)
		}
	}
	if got := must(s.Credentials(gone.ID)).get(t); len(got) != 0 {
		t.Errorf("a deleted cache's credentials remain: %+v", got)
	}
	if got := must(s.Credentials(0)).get(t); len(got) != 1 || got[0].ID != kept.ID {
		t.Errorf("every credential after the deletion: %+v; want only %d", got, kept.ID)
	}
	if got := must(s.History(gone.ID, time.Time{})).get(t); len(got) != 0 {
		t.Errorf("a deleted cache's history remains: %+v", got)
	}
	if all := must(s.Caches()).get(t); len(all) != 1 || all[0].ID != keep.ID {
		t.Errorf("caches after the deletion: %+v", all)
	}
	if err := s.DeleteCache(gone.ID); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	// Its name, its memory and its credentials' certificate are free again.
	again := newCache(t, s, "gone", 80*mib)
	if again.ID == gone.ID {
		t.Errorf("a deleted cache's ID %d was reused", gone.ID)
	}
	if _, _, err := s.CreateCredential(again.ID, control.NewCredential{Cert: control.CertBinding{SHA256: fp, CN: "gone-app"}}); err != nil {
		t.Errorf("binding a deleted credential's certificate: %v", err)
	}
}

// testDeleteLargeCache deletes a cache of more credentials, some bound
// to certificates, than etcd takes writes in one transaction (128 by
// default): a deletion works whatever the cache's size, and is one
// CacheDeleted to watchers.
func testDeleteLargeCache(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	const n = 150
	s := open(t, control.Policy{})
	keep := newCache(t, s, "keep", mib)
	big := newCache(t, s, "big", mib)
	var creds []control.Credential
	for i := range n {
		var b control.CertBinding
		if i%4 == 0 {
			b = control.CertBinding{SHA256: fmt.Sprintf("%064x", i+1), CN: fmt.Sprintf("app-%d", i)}
		}
		creds = append(creds, newCred(t, s, big.ID, control.NewCredential{Caps: control.CapAll, Cert: b}))
	}
	rec := record(s)
	defer rec.cancel()
	noErr(t, s.DeleteCache(big.ID))
	if got := must(s.Credentials(0)).get(t); len(got) != 0 {
		t.Errorf("%d credentials remain", len(got))
	}
	for _, cr := range creds {
		if _, err := s.CredentialByUsername(cr.Username); !errors.Is(err, control.ErrNotFound) {
			t.Fatalf("username %s of the deleted cache: %v", cr.Username, err)
		}
	}
	must(s.UpdateCache(keep.ID, control.CacheUpdate{Plan: new("sentinel")})).get(t)
	seen := rec.waitFor(t, func(ch control.Change) bool { return ch.Cache.Plan == "sentinel" })
	if len(seen) != 2 || seen[0].Kind != control.CacheDeleted || seen[0].CacheID != big.ID {
		t.Errorf("watchers saw %s; want the deletion of cache %d then the sentinel", describe(seen), big.ID)
	}
	newCred(t, s, keep.ID, control.NewCredential{Cert: creds[0].Cert})
}

func testNoMemoryBound(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	newCache(t, s, "a", 1<<40)
	newCache(t, s, "b", 1<<40)
	// Without a minimum, a limit must still be positive.
	if _, err := s.CreateCache(control.Cache{Name: "zero"}); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("zero limit: %v", err)
	}
	newCache(t, s, "one", 1)
}

func testConcurrentCreations(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib})
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				_, err := s.CreateCache(control.Cache{Name: fmt.Sprintf("c%d-%d", i, j), LimitBytes: 7 * mib})
				mu.Lock()
				switch {
				case err == nil:
					created++
				case errors.Is(err, control.ErrOverCommit):
					refused++
				default:
					t.Errorf("create: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all := must(s.Caches()).get(t)
	var sum int64
	for _, c := range all {
		sum += c.LimitBytes
	}
	// 14 × 7 MiB = 98 MiB fit, a 15th does not.
	if created != 14 || refused != 26 || len(all) != 14 || sum != 98*mib {
		t.Fatalf("%d created, %d refused, %d caches whose limits add up to %d MiB; want 14, 26, 14, 98", created, refused, len(all), sum>>20)
	}
}

func testMarkActive(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	a := newCache(t, s, "a", mib)
	b := newCache(t, s, "b", mib)
	when := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	// An unknown cache (deleted meanwhile) is skipped, not an error.
	if err := s.MarkActive(map[uint32]time.Time{a.ID: when, b.ID + 100: when}); err != nil {
		t.Fatal(err)
	}
	// Activity never goes backwards: servers report in any order.
	noErr(t, s.MarkActive(map[uint32]time.Time{a.ID: when.Add(-time.Minute)}))
	if got := must(s.Cache(a.ID)).get(t); !got.LastActive.Equal(when) {
		t.Errorf("last active %v, want %v", got.LastActive, when)
	}
	if got := must(s.Cache(b.ID)).get(t); !got.LastActive.IsZero() {
		t.Errorf("an unmarked cache is last active at %v", got.LastActive)
	}
	later := when.Add(time.Minute)
	noErr(t, s.MarkActive(map[uint32]time.Time{a.ID: later, b.ID: when}))
	if got := must(s.Cache(a.ID)).get(t); !got.LastActive.Equal(later) {
		t.Errorf("last active %v, want %v", got.LastActive, later)
	}
	if got := must(s.Cache(b.ID)).get(t); !got.LastActive.Equal(when) {
		t.Errorf("last active %v, want %v", got.LastActive, when)
	}
}

func testCredentials(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	c := newCache(t, s, "c", mib)
	first, pw, err := s.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite})
	if err != nil {
		t.Fatal(err)
	}
	// The first credential is the primary whatever it asked.
	if !first.Primary || first.ID == 0 || first.CacheID != c.ID || first.Caps != control.CapWrite || first.Created.IsZero() || first.Cert.Bound() {
		t.Errorf("first credential %+v", first)
	}
	if len(pw) != 32 || len(first.Username) != 8 || strings.Trim(first.Username, "0123456789ABCDEF") != "" {
		t.Errorf("username %q, password %q: want 8 upper-case hex digits and 32 characters", first.Username, pw)
	}
	if !control.Verify(first, []byte(pw)) || control.Verify(first, []byte(pw+"x")) || control.Verify(first, nil) {
		t.Error("Verify accepts a wrong password or refuses the right one")
	}
	if strings.Contains(string(first.Hash), pw) || strings.Contains(string(first.Salt), pw) {
		t.Error("password stored in the clear")
	}
	stored := must(s.Credential(first.ID)).get(t)
	if !control.Verify(stored, []byte(pw)) || stored.Username != first.Username || !stored.Primary {
		t.Errorf("stored credential %+v does not verify its password", stored)
	}

	second, pw2, err := s.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll | 0x80, Primary: true})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Primary || second.ID <= first.ID || second.Caps != control.CapAll || pw2 == pw || second.Username == first.Username {
		t.Errorf("second credential %+v", second)
	}
	if control.Verify(second, []byte(pw)) {
		t.Error("one credential's password verifies another's")
	}
	if got := must(s.Credential(first.ID)).get(t); got.Primary {
		t.Error("a new primary did not demote the old one")
	}
	third := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapAPI})
	if third.Primary {
		t.Error("a third credential that did not ask is the primary")
	}
	if got, err := s.CredentialByUsername(second.Username); err != nil || got.ID != second.ID {
		t.Errorf("by username: %+v, %v", got, err)
	}
	if _, err := s.CredentialByUsername("NOSUCHUS"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("by unknown username: %v", err)
	}
	if all := must(s.Credentials(c.ID)).get(t); !sameIDs(all, first.ID, second.ID, third.ID) || !primaries(all, second.ID) {
		t.Errorf("Credentials = %+v; want %d, %d (primary), %d", all, first.ID, second.ID, third.ID)
	}

	if err := s.DeleteCredential(second.ID); !errors.Is(err, control.ErrLastPrimary) {
		t.Errorf("deleting the primary while others exist: %v", err)
	}
	if p, err := s.Promote(first.ID); err != nil || !p.Primary || p.ID != first.ID {
		t.Errorf("promote: %+v, %v", p, err)
	}
	if all := must(s.Credentials(c.ID)).get(t); !primaries(all, first.ID) {
		t.Errorf("after promotion: %+v; want %d the only primary", all, first.ID)
	}
	if p, err := s.Promote(first.ID); err != nil || !p.Primary {
		t.Errorf("promote the primary: %+v, %v", p, err)
	}
	// Non-primaries go in any order; then the primary, once it is the last.
	noErr(t, s.DeleteCredential(second.ID))
	if _, err := s.CredentialByUsername(second.Username); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("deleted username still found: %v", err)
	}
	if err := s.DeleteCredential(first.ID); !errors.Is(err, control.ErrLastPrimary) {
		t.Errorf("deleting the primary while one other exists: %v", err)
	}
	noErr(t, s.DeleteCredential(third.ID))
	if err := s.DeleteCredential(first.ID); err != nil {
		t.Errorf("deleting the last credential, a primary: %v", err)
	}
	if all := must(s.Credentials(c.ID)).get(t); len(all) != 0 {
		t.Errorf("credentials left: %+v", all)
	}
	// With none left, the next is the primary again.
	if again := newCred(t, s, c.ID, control.NewCredential{}); !again.Primary {
		t.Errorf("a cache's only credential is not its primary: %+v", again)
	}
}

func sameIDs(creds []control.Credential, ids ...uint32) bool {
	got := make([]uint32, len(creds))
	for i, c := range creds {
		got[i] = c.ID
	}
	return slices.Equal(got, ids)
}

// primaries reports whether exactly the credential id is primary.
func primaries(creds []control.Credential, id uint32) bool {
	for _, c := range creds {
		if c.Primary != (c.ID == id) {
			return false
		}
	}
	return true
}

func testCredentialsOfEveryCache(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	a := newCache(t, s, "a", mib)
	b := newCache(t, s, "b", mib)
	a1 := newCred(t, s, a.ID, control.NewCredential{})
	b1 := newCred(t, s, b.ID, control.NewCredential{})
	a2 := newCred(t, s, a.ID, control.NewCredential{})
	if all := must(s.Credentials(0)).get(t); !sameIDs(all, a1.ID, b1.ID, a2.ID) {
		t.Errorf("Credentials(0) = %+v; want %d, %d, %d", all, a1.ID, b1.ID, a2.ID)
	}
	if got := must(s.Credentials(b.ID)).get(t); !sameIDs(got, b1.ID) {
		t.Errorf("Credentials(b) = %+v", got)
	}
	// Each cache has its own primary.
	if !a1.Primary || !b1.Primary || a2.Primary {
		t.Errorf("primaries: %v %v %v; want true true false", a1.Primary, b1.Primary, a2.Primary)
	}
	if got := must(s.Credentials(b.ID + 1)).get(t); len(got) != 0 {
		t.Errorf("credentials of no cache: %+v", got)
	}
}

func testCredentialNotFound(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	for name, f := range map[string]func() error{
		"CreateCredential": func() error {
			_, _, err := s.CreateCredential(99, control.NewCredential{Caps: control.CapAll})
			return err
		},
		"UpdateCredential": func() error {
			_, err := s.UpdateCredential(99, control.CredentialUpdate{Caps: new(control.CapAll)})
			return err
		},
		"Promote":          func() error { _, err := s.Promote(99); return err },
		"DeleteCredential": func() error { return s.DeleteCredential(99) },
		"Credential":       func() error { _, err := s.Credential(99); return err },
	} {
		if err := f(); !errors.Is(err, control.ErrNotFound) {
			t.Errorf("%s of no record: %v", name, err)
		}
	}
}

func testUpdateCredential(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	c := newCache(t, s, "c", mib)
	cr := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapAll})
	// Unknown capability bits are dropped, not stored.
	got, err := s.UpdateCredential(cr.ID, control.CredentialUpdate{Caps: new(control.CapFlush | 0x80)})
	if err != nil || got.Caps != control.CapFlush || got.Username != cr.Username || !got.Primary || !bytesEqual(got.Hash, cr.Hash) {
		t.Fatalf("set capabilities: %+v, %v", got, err)
	}
	if stored := must(s.Credential(cr.ID)).get(t); stored.Caps != control.CapFlush {
		t.Errorf("stored capabilities %v", stored.Caps)
	}
	// An empty update changes nothing.
	if got, err := s.UpdateCredential(cr.ID, control.CredentialUpdate{}); err != nil || got.Caps != control.CapFlush || got.Cert.Bound() {
		t.Errorf("empty update: %+v, %v", got, err)
	}
	if got, err := s.UpdateCredential(cr.ID, control.CredentialUpdate{Caps: new(control.Capabilities(0))}); err != nil || got.Caps != 0 {
		t.Errorf("no capabilities (read only): %+v, %v", got, err)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// bind sets both halves of a credential's binding.
func bind(s control.Store, id uint32, b control.CertBinding) (control.Credential, error) {
	return s.UpdateCredential(id, control.CredentialUpdate{CertSHA256: &b.SHA256, CertCN: &b.CN})
}

func testCertificateBinding(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	c := newCache(t, s, "a", mib)
	one := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	two := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapWrite})
	rec := record(s)
	defer rec.cancel()

	fp := strings.Repeat("AB", 32)
	got, err := bind(s, one.ID, control.CertBinding{SHA256: fp, CN: "app-1"})
	// Fingerprints are stored as lower-case hex, as Fingerprint makes them.
	want := control.CertBinding{SHA256: strings.Repeat("ab", 32), CN: "app-1"}
	if err != nil || got.Cert != want || got.Caps != control.CapAll || !got.Primary {
		t.Fatalf("bind: %+v, %v; want %+v", got, err, want)
	}
	if stored := must(s.Credential(one.ID)).get(t); stored.Cert != want {
		t.Errorf("stored binding %+v, want %+v", stored.Cert, want)
	}
	refused := []struct {
		b    control.CertBinding
		want error
	}{
		{control.CertBinding{SHA256: fp}, control.ErrExists},
		{control.CertBinding{SHA256: strings.Repeat("ab", 32)}, control.ErrExists},
		{control.CertBinding{CN: "app-1"}, control.ErrExists},
		{control.CertBinding{SHA256: strings.Repeat("cd", 32), CN: "app-1"}, control.ErrExists},
		{control.CertBinding{SHA256: "abc"}, control.ErrInvalid},
		{control.CertBinding{CN: strings.Repeat("x", 65)}, control.ErrInvalid},
		{control.CertBinding{CN: "a\nb"}, control.ErrInvalid},
	}
	for _, r := range refused {
		// With a capability change in the same update: all or nothing.
		u := control.CredentialUpdate{Caps: new(control.CapAll), CertSHA256: &r.b.SHA256, CertCN: &r.b.CN}
		if _, err := s.UpdateCredential(two.ID, u); !errors.Is(err, r.want) {
			t.Errorf("bind %+v to another credential: %v, want %v", r.b, err, r.want)
		}
		if _, _, err := s.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Cert: r.b}); !errors.Is(err, r.want) {
			t.Errorf("create bound to %+v: %v, want %v", r.b, err, r.want)
		}
	}
	if _, err := bind(s, two.ID+100, control.CertBinding{CN: "x"}); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("bind to no credential: %v", err)
	}
	if cr := must(s.Credential(two.ID)).get(t); cr.Cert.Bound() || cr.Caps != control.CapWrite {
		t.Errorf("refused updates changed %+v", cr)
	}
	if all := must(s.Credentials(c.ID)).get(t); !sameIDs(all, one.ID, two.ID) {
		t.Errorf("refused creations created: %+v", all)
	}
	// Nothing refused reached the watchers: a later change comes right
	// after the binding.
	must(s.UpdateCache(c.ID, control.CacheUpdate{Plan: new("sentinel")})).get(t)
	seen := rec.waitFor(t, func(ch control.Change) bool { return ch.Cache.Plan == "sentinel" })
	if len(seen) != 2 || seen[0].Kind != control.CredentialChanged || seen[0].CredentialID != one.ID || seen[0].Credential.Cert != want {
		t.Errorf("watchers saw %s; want the binding of %d then the sentinel", describe(seen), one.ID)
	}

	// Rebinding a credential to its own certificate is no clash.
	if got, err := bind(s, one.ID, control.CertBinding{SHA256: fp}); err != nil || got.Cert != (control.CertBinding{SHA256: want.SHA256}) {
		t.Errorf("rebind: %+v, %v", got, err)
	}
	// The halves are set apart: one left nil stays as it is.
	cn := "worker"
	if cr, err := s.UpdateCredential(two.ID, control.CredentialUpdate{CertCN: &cn}); err != nil || cr.Cert != (control.CertBinding{CN: cn}) {
		t.Fatalf("bind a CN alone: %+v, %v", cr.Cert, err)
	}
	other := strings.Repeat("cd", 32)
	if cr, err := s.UpdateCredential(two.ID, control.CredentialUpdate{CertSHA256: &other}); err != nil || cr.Cert != (control.CertBinding{SHA256: other, CN: cn}) {
		t.Fatalf("then a fingerprint alone: %+v, %v", cr.Cert, err)
	}
	empty := ""
	if cr, err := s.UpdateCredential(two.ID, control.CredentialUpdate{CertCN: &empty}); err != nil || cr.Cert != (control.CertBinding{SHA256: other}) {
		t.Fatalf("unbind the CN alone: %+v, %v", cr.Cert, err)
	}

	// A credential is created bound, its fingerprint normalised.
	third := strings.Repeat("ef", 32)
	cr, _, err := s.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite, Cert: control.CertBinding{SHA256: strings.ToUpper(third), CN: "third"}})
	if err != nil || cr.Cert != (control.CertBinding{SHA256: third, CN: "third"}) || cr.Caps != control.CapWrite {
		t.Fatalf("create bound: %+v, %v", cr, err)
	}
	if stored := must(s.Credential(cr.ID)).get(t); stored.Cert != cr.Cert {
		t.Errorf("stored binding %+v, want %+v", stored.Cert, cr.Cert)
	}

	// The zero binding unbinds, and frees the certificate for another.
	if cr, err := bind(s, one.ID, control.CertBinding{}); err != nil || cr.Cert.Bound() {
		t.Errorf("unbind: %+v, %v", cr.Cert, err)
	}
	if _, err := bind(s, two.ID, control.CertBinding{SHA256: fp, CN: "app-1"}); err != nil {
		t.Errorf("bind a freed certificate: %v", err)
	}
	// Deleting a credential frees its certificate too.
	noErr(t, s.DeleteCredential(cr.ID))
	if _, err := bind(s, one.ID, control.CertBinding{SHA256: third, CN: "third"}); err != nil {
		t.Errorf("bind a deleted credential's certificate: %v", err)
	}
}

func testHistory(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	a := newCache(t, s, "a", mib)
	b := newCache(t, s, "b", mib)
	base := time.Unix(1_800_000_000, 0)
	var samples []control.Sample
	// Appended newest first: History still returns them oldest first.
	for i := 4; i >= 0; i-- {
		for _, id := range []uint32{a.ID, b.ID} {
			samples = append(samples, control.Sample{CacheID: id, Server: "h:1", Time: base.Add(time.Duration(i) * time.Minute),
				Stats: map[string]uint64{"get_hits": uint64(i) + uint64(id)*100}})
		}
	}
	noErr(t, s.AppendHistory(samples))
	got, err := s.History(a.ID, base.Add(2*time.Minute))
	if err != nil || len(got) != 3 {
		t.Fatalf("history of a since minute 2: %+v, %v", got, err)
	}
	for i, sm := range got {
		m := i + 2
		if sm.CacheID != a.ID || sm.Server != "h:1" || !sm.Time.Equal(base.Add(time.Duration(m)*time.Minute)) ||
			len(sm.Stats) != 1 || sm.Stats["get_hits"] != uint64(m)+uint64(a.ID)*100 {
			t.Errorf("sample %d: %+v; want minute %d", i, sm, m)
		}
	}
	if got := must(s.History(b.ID, time.Time{})).get(t); len(got) != 5 {
		t.Errorf("all of b's history: %d samples, want 5", len(got))
	}
	if got := must(s.History(b.ID+1, time.Time{})).get(t); len(got) != 0 {
		t.Errorf("history of no cache: %+v", got)
	}
	noErr(t, s.PruneHistory(base.Add(3*time.Minute)))
	for _, id := range []uint32{a.ID, b.ID} {
		got := must(s.History(id, time.Time{})).get(t)
		if len(got) != 2 || !got[0].Time.Equal(base.Add(3*time.Minute)) || got[1].Stats["get_hits"] != 4+uint64(id)*100 {
			t.Errorf("cache %d after pruning before minute 3: %+v; want minutes 3 and 4", id, got)
		}
	}
}

// recorder collects what a watcher is given.
type recorder struct {
	mu     sync.Mutex
	got    []control.Change
	cancel func()
}

func record(s control.Store) *recorder {
	r := &recorder{}
	r.cancel = s.Watch(func(c control.Change) {
		r.mu.Lock()
		r.got = append(r.got, c)
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) changes() []control.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until the watcher has seen a change matching last and
// returns every change seen up to it. Waiting for a change made last is
// how the suite knows that no other change is still on its way.
func (r *recorder) waitFor(t *testing.T, last func(control.Change) bool) []control.Change {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := r.changes()
		if i := slices.IndexFunc(got, last); i >= 0 {
			return got[:i+1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expected change never came; saw %s", describe(got))
		}
		time.Sleep(time.Millisecond)
	}
}

func isCache(name string) func(control.Change) bool {
	return func(c control.Change) bool { return c.Kind == control.CacheChanged && c.Cache.Name == name }
}

// describe prints changes with the fields each kind sets, so that a
// mismatch shows what the watcher saw.
func describe(cs []control.Change) string {
	var out []string
	for _, c := range cs {
		switch c.Kind {
		case control.CacheChanged:
			out = append(out, fmt.Sprintf("cache %d %s %dMiB enabled=%v", c.CacheID, c.Cache.Name, c.Cache.LimitBytes>>20, c.Cache.Enabled))
		case control.CacheDeleted:
			out = append(out, fmt.Sprintf("cache %d deleted", c.CacheID))
		case control.CredentialChanged:
			out = append(out, fmt.Sprintf("credential %d/%d primary=%v caps=%d", c.CacheID, c.CredentialID, c.Credential.Primary, c.Credential.Caps))
		case control.CredentialDeleted:
			out = append(out, fmt.Sprintf("credential %d/%d deleted", c.CacheID, c.CredentialID))
		default:
			out = append(out, fmt.Sprintf("%+v", c))
		}
	}
	return "[" + strings.Join(out, "; ") + "]"
}

func testWatchOrder(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 10 * mib})
	rec := record(s)
	defer rec.cancel()
	c := newCache(t, s, "c", mib)
	if _, err := s.CreateCache(control.Cache{Name: "refused", LimitBytes: 20 * mib}); !errors.Is(err, control.ErrOverCommit) {
		t.Fatalf("create past the bound: %v", err)
	}
	a := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapAll})
	b := newCred(t, s, c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	must(s.Promote(a.ID)).get(t)
	must(s.Promote(a.ID)).get(t) // already the primary: touches nothing
	must(s.UpdateCredential(b.ID, control.CredentialUpdate{Caps: new(control.CapWrite)})).get(t)
	if _, err := s.UpdateCredential(b.ID, control.CredentialUpdate{CertSHA256: new("bad")}); !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("refused update: %v", err)
	}
	noErr(t, s.DeleteCredential(b.ID))
	off := false
	must(s.UpdateCache(c.ID, control.CacheUpdate{Enabled: &off})).get(t)
	// Activity and history are no change of a cache or credential.
	noErr(t, s.MarkActive(map[uint32]time.Time{c.ID: time.Now()}))
	noErr(t, s.AppendHistory([]control.Sample{{CacheID: c.ID, Time: time.Now()}}))
	noErr(t, s.PruneHistory(time.Now().Add(time.Hour)))
	third := newCred(t, s, c.ID, control.NewCredential{}).ID
	noErr(t, s.DeleteCache(c.ID))
	newCache(t, s, "sentinel", mib)

	got := rec.waitFor(t, isCache("sentinel"))
	want := []control.Change{
		{Kind: control.CacheChanged, CacheID: c.ID, Cache: control.Cache{ID: c.ID, Name: "c", LimitBytes: mib, Enabled: true}},
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: a.ID, Credential: control.Credential{ID: a.ID, Primary: true, Caps: control.CapAll}},
		// A new primary: the old one demoted, then the new one.
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: a.ID, Credential: control.Credential{ID: a.ID, Caps: control.CapAll}},
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: b.ID, Credential: control.Credential{ID: b.ID, Primary: true, Caps: control.CapAll}},
		// A promotion: likewise.
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: b.ID, Credential: control.Credential{ID: b.ID, Caps: control.CapAll}},
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: a.ID, Credential: control.Credential{ID: a.ID, Primary: true, Caps: control.CapAll}},
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: b.ID, Credential: control.Credential{ID: b.ID, Caps: control.CapWrite}},
		{Kind: control.CredentialDeleted, CacheID: c.ID, CredentialID: b.ID},
		{Kind: control.CacheChanged, CacheID: c.ID, Cache: control.Cache{ID: c.ID, Name: "c", LimitBytes: mib}},
		{Kind: control.CredentialChanged, CacheID: c.ID, CredentialID: third, Credential: control.Credential{ID: third}},
		// A cache's deletion is one change: CacheDeleted says its
		// credentials are gone with it.
		{Kind: control.CacheDeleted, CacheID: c.ID},
		{Kind: control.CacheChanged, CacheID: c.ID + 1, Cache: control.Cache{ID: c.ID + 1, Name: "sentinel", LimitBytes: mib, Enabled: true}},
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Kind == w.Kind && g.CacheID == w.CacheID && g.CredentialID == w.CredentialID &&
			g.Cache.ID == w.Cache.ID && g.Cache.Name == w.Cache.Name && g.Cache.LimitBytes == w.Cache.LimitBytes && g.Cache.Enabled == w.Cache.Enabled &&
			g.Credential.ID == w.Credential.ID && g.Credential.Primary == w.Credential.Primary && g.Credential.Caps == w.Credential.Caps &&
			(g.Kind != control.CredentialChanged || g.Credential.CacheID == c.ID)
	}
	if !ok {
		t.Fatalf("changes\n got %s\nwant %s", describe(got), describe(want))
	}
}

func testWatchCancel(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{})
	newCache(t, s, "before", mib)
	first := record(s)
	second := record(s)
	defer second.cancel()
	newCache(t, s, "x", mib)
	// Only changes committed after Watch returned are delivered.
	for _, r := range []*recorder{first, second} {
		if got := r.waitFor(t, isCache("x")); len(got) != 1 {
			t.Fatalf("a watcher saw %s; want only x", describe(got))
		}
	}
	first.cancel()
	newCache(t, s, "y", mib)
	// Once the watcher still registered has y, a cancelled one would have it too.
	second.waitFor(t, isCache("y"))
	if got := first.changes(); len(got) != 1 || got[0].Cache.Name != "x" {
		t.Fatalf("a cancelled watcher saw %s; want only x", describe(got))
	}
}

func testWatchSlowWatcher(t *testing.T, open func(*testing.T, control.Policy) control.Store) {
	s := open(t, control.Policy{MemoryBytes: 10 * mib})
	entered, release := make(chan uint32), make(chan struct{})
	var mu sync.Mutex
	var seen []string
	cancel := s.Watch(func(c control.Change) {
		mu.Lock()
		seen = append(seen, c.Cache.Name)
		mu.Unlock()
		if c.Cache.Name == "slow" {
			entered <- c.CacheID
			<-release
		}
	})
	defer cancel()
	var wg sync.WaitGroup
	create := func(name string) {
		defer wg.Done()
		if _, err := s.CreateCache(control.Cache{Name: name, LimitBytes: mib}); err != nil {
			t.Error(err)
		}
	}
	wg.Add(2)
	go create("slow")
	var id uint32
	select {
	case id = <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("the watcher was never called")
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	// Writes that notify nobody do not wait for a watcher.
	done := make(chan error, 1)
	go func() {
		if err := s.MarkActive(map[uint32]time.Time{id: time.Now()}); err != nil {
			done <- err
			return
		}
		done <- s.AppendHistory([]control.Sample{{CacheID: id, Time: time.Now()}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("writing activity or history waited for a watcher")
	}
	// A change commits while the watcher is busy with the one before...
	go create("next")
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, err := s.CacheByName("next"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a change did not commit while a watcher was busy with the one before")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	early := slices.Clone(seen)
	mu.Unlock()
	if len(early) != 1 {
		t.Fatalf("the watcher was called again before it returned: %v", early)
	}
	// ...and is delivered after it, in order.
	released = true
	close(release)
	wg.Wait()
	deadline = time.Now().Add(waitTimeout)
	for {
		mu.Lock()
		got := strings.Join(seen, " ")
		mu.Unlock()
		if got == "slow next" {
			break
		}
		if got != "slow" || time.Now().After(deadline) {
			t.Fatalf("delivered %q, want \"slow next\"", got)
		}
		time.Sleep(time.Millisecond)
	}
}
