package tenancy

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/enginetest"
)

// storeTenants opens a real store in a temporary directory and follows it.
func storeTenants(t *testing.T, cfg Config) (*Tenants, control.Store) {
	t.Helper()
	return storeTenantsVia(t, cfg, nil)
}

// storeTenantsVia is storeTenants with the Tenants following wrap(store)
// (wrap may be nil), to play a store that knows more than this node.
func storeTenantsVia(t *testing.T, cfg Config, wrap func(control.Store) control.Store) (*Tenants, control.Store) {
	t.Helper()
	mem := enginetest.Memory(t, 64)
	store, err := control.Open(filepath.Join(t.TempDir(), "control.db"), control.Policy{MemoryBytes: 64 << 20}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateCache(control.Cache{Name: DefaultCache, LimitBytes: 8 << 20, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	var followed control.Store = store
	if wrap != nil {
		followed = wrap(store)
	}
	ts, err := New(cfg, mem, followed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	return ts, store
}

func TestTenantsFollowTheStore(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	var revokes atomic.Int32
	ts.OnRevoke(func() { revokes.Add(1) })

	c, err := store.CreateCache(control.Cache{Name: "app", LimitBytes: 16 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	eng := ts.Engine(c.ID)
	if eng == nil || eng.LimitBytes() != 16<<20 {
		t.Fatalf("new cache's engine: %v", eng)
	}
	cred, password, err := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite})
	if err != nil {
		t.Fatal(err)
	}
	u, tn := ts.Authenticate([]byte(cred.Username), []byte(password))
	if u == nil || tn.ID() != c.ID || u.Cache() != tn || ts.Cache(c.ID) != tn || u.Capabilities() != (Capabilities{control.CapWrite}) {
		t.Fatalf("authenticate: user %v cache %v", u, tn)
	}
	if u, _ := ts.Authenticate([]byte(cred.Username), []byte(password+"x")); u != nil {
		t.Fatal("wrong password authenticated")
	}

	if _, err := store.UpdateCredential(cred.ID, control.CredentialUpdate{Caps: new(control.CapAll)}); err != nil {
		t.Fatal(err)
	}
	if !u.Capabilities().Unrestricted() {
		t.Fatal("a capability change did not reach the live credential")
	}
	if u.Capabilities() != (Capabilities{control.CapAll}) || u.Capabilities() != (*Credential)(nil).Capabilities() {
		t.Fatal("a credential with every capability is not a local connection's equal")
	}

	limit := int64(32 << 20)
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	if eng.LimitBytes() != limit {
		t.Fatalf("growing: engine limit %d when the store answered", eng.LimitBytes())
	}
	small := int64(4 << 20)
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &small}); err != nil {
		t.Fatal(err)
	}
	ts.Sync()
	if eng.LimitBytes() != small {
		t.Fatalf("shrinking: engine limit %d", eng.LimitBytes())
	}

	off := false
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if !ts.Revoked(tn, u, nil) {
		t.Fatal("a disabled cache's connection is not revoked when the store answers")
	}
	ts.Sync()
	if revokes.Load() != 1 {
		t.Fatalf("disabling revoked %d times", revokes.Load())
	}
	if u, _ := ts.Authenticate([]byte(cred.Username), []byte(password)); u != nil {
		t.Fatal("a disabled cache's credential authenticated")
	}
	on := true
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	if u, _ := ts.Authenticate([]byte(cred.Username), []byte(password)); u == nil {
		t.Fatal("a re-enabled cache's credential did not authenticate")
	}

	if ts.Revoked(tn, u, nil) {
		t.Fatal("a re-enabled cache's connection is revoked")
	}

	if err := store.DeleteCredential(cred.ID); err != nil {
		t.Fatal(err)
	}
	if !ts.Revoked(tn, u, nil) {
		t.Fatal("a deleted credential's connection is not revoked when the store answers")
	}
	ts.Sync()
	if !u.gone.Load() || revokes.Load() != 2 {
		t.Fatalf("deleting a credential: gone %v, revokes %d", u.gone.Load(), revokes.Load())
	}
	if err := store.DeleteCache(c.ID); err != nil {
		t.Fatal(err)
	}
	if ts.Engine(c.ID) != nil || !tn.gone.Load() {
		t.Fatal("a deleted cache is still served")
	}
	ts.Sync()
	if revokes.Load() != 3 {
		t.Fatalf("deleting a cache: %d revokes", revokes.Load())
	}
}

func TestIdleDevCacheIsDisabled(t *testing.T) {
	ts, store := storeTenants(t, Config{DevIdle: 300 * time.Millisecond, SyncEvery: 50 * time.Millisecond})
	dev, err := store.CreateCache(control.Cache{Name: "dev", LimitBytes: 8 << 20, Enabled: true, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	busy, err := store.CreateCache(control.Cache{Name: "busy", LimitBytes: 8 << 20, Enabled: true, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	ts.mu.RLock()
	busyTenant := ts.byID[busy.ID]
	ts.mu.RUnlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		busyTenant.Touch(time.Now().Unix() + 1) // a command every tick
		c, err := store.Cache(dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Enabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle dev cache was not disabled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, err := store.Cache(busy.ID); err != nil || !c.Enabled {
		t.Fatalf("a busy dev cache was disabled: %+v %v", c, err)
	}
	if c, err := store.Cache(1); err != nil || c.Name != DefaultCache || !c.Enabled {
		t.Fatalf("a non-dev cache was disabled: %+v %v", c, err)
	}
}

// TestTenantsFollowCertificateBindings: a client certificate finds the
// credential it is bound to by fingerprint, or by CN only when verified;
// a change of binding ends the logins made with the old one; unbinding,
// deleting the credential or its cache forgets it.
func TestTenantsFollowCertificateBindings(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	var revokes atomic.Int32
	ts.OnRevoke(func() { revokes.Add(1) })
	c, err := store.CreateCache(control.Cache{Name: "app", LimitBytes: 8 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cred, _, _ := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	other, _, _ := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite})
	fp := control.Fingerprint([]byte("a certificate"))
	byFP := &ClientCert{fingerprint: fp}
	verified := &ClientCert{fingerprint: control.Fingerprint([]byte("another")), cn: "worker"}
	unverified := &ClientCert{fingerprint: verified.fingerprint}

	if ts.AuthenticateCert(byFP) != nil {
		t.Fatal("an unbound certificate found a credential")
	}
	if _, err := store.UpdateCredential(cred.ID, control.CredentialUpdate{CertSHA256: &fp}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateCredential(other.ID, control.CredentialUpdate{CertCN: new("worker")}); err != nil {
		t.Fatal(err)
	}
	if revokes.Load() != 0 {
		t.Fatalf("binding unbound credentials revoked %d times", revokes.Load())
	}
	u := ts.AuthenticateCert(byFP)
	if u == nil || u.id != cred.ID || !u.matches(byFP) {
		t.Fatalf("by fingerprint: %+v", u)
	}
	if u := ts.AuthenticateCert(verified); u == nil || u.id != other.ID {
		t.Fatalf("by verified CN: %+v", u)
	}
	if ts.AuthenticateCert(unverified) != nil {
		t.Fatal("an unverified certificate logged in by its CN")
	}

	// A capability change keeps the binding and revokes nothing.
	store.UpdateCredential(cred.ID, control.CredentialUpdate{Caps: new(control.CapWrite)})
	if !u.matches(byFP) || revokes.Load() != 0 {
		t.Fatalf("after a capability change: matches %v, %d revokes", u.matches(byFP), revokes.Load())
	}
	// Rebinding to another certificate ends the old one's logins.
	if _, err := store.UpdateCredential(cred.ID, control.CredentialUpdate{CertSHA256: new(control.Fingerprint([]byte("new")))}); err != nil {
		t.Fatal(err)
	}
	if !ts.Revoked(u.Cache(), u, byFP) || ts.Revoked(u.Cache(), u, nil) {
		t.Fatal("rebinding must cut off the logins by the old certificate only")
	}
	ts.Sync()
	if u.matches(byFP) || ts.AuthenticateCert(byFP) != nil || revokes.Load() != 1 {
		t.Fatalf("after rebinding: matches %v, %d revokes", u.matches(byFP), revokes.Load())
	}
	// Deleting the credential, or its cache, forgets its certificate.
	store.DeleteCredential(other.ID)
	if ts.AuthenticateCert(verified) != nil {
		t.Fatal("a deleted credential's CN still logs in")
	}
	store.DeleteCache(c.ID)
	if len(ts.byCert) != 0 || len(ts.byCN) != 0 {
		t.Fatalf("after deleting the cache: %d fingerprints, %d CNs", len(ts.byCert), len(ts.byCN))
	}
}

// TestSlowApplierDoesNotHoldTheStore: while the applier is busy (here, a
// server slow to close connections), changes commit and their calls
// return at once, their lookups already recorded; their work is done
// afterwards, in commit order.
func TestSlowApplierDoesNotHoldTheStore(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	a, err := store.CreateCache(control.Cache{Name: "a", LimitBytes: 8 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateCache(control.Cache{Name: "b", LimitBytes: 16 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	bEng := ts.Engine(b.ID)
	entered, release := make(chan struct{}), make(chan struct{})
	var events []int64 // b's engine limit at each revocation
	ts.OnRevoke(func() {
		events = append(events, bEng.LimitBytes())
		if len(events) == 1 {
			close(entered)
			<-release
		}
	})

	off := false
	if _, err := store.UpdateCache(a.ID, control.CacheUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("disabling a cache did not have its connections closed")
	}

	start := time.Now()
	small := int64(4 << 20)
	if _, err := store.UpdateCache(b.ID, control.CacheUpdate{LimitBytes: &small}); err != nil {
		t.Fatal(err)
	}
	cred, password, err := store.CreateCredential(b.ID, control.NewCredential{Caps: control.CapAll})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteCredential(cred.ID); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("three changes took %v while the applier was busy", took)
	}
	if bEng.LimitBytes() != 16<<20 {
		t.Fatalf("b shrank to %d before the change committed before it was applied", bEng.LimitBytes())
	}
	synced := make(chan struct{})
	go func() {
		ts.Sync()
		close(synced)
	}()
	select {
	case <-synced:
		t.Fatal("Sync returned while the applier was busy")
	case <-time.After(50 * time.Millisecond):
	}

	close(release)
	<-synced
	if bEng.LimitBytes() != small {
		t.Fatalf("b's limit after Sync: %d", bEng.LimitBytes())
	}
	if len(events) != 2 || events[0] != 16<<20 || events[1] != small {
		t.Fatalf("b's limit at each revocation: %v, want [%d %d]", events, 16<<20, small)
	}
	if u, _ := ts.Authenticate([]byte(cred.Username), []byte(password)); u != nil {
		t.Fatal("a deleted credential authenticated")
	}
}

// TestGrowingBehindAShrinkWaitsForIt: a limit raised while a shrink of the
// same cache is queued is set after it, so the last change wins.
func TestGrowingBehindAShrinkWaitsForIt(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	c, err := store.CreateCache(control.Cache{Name: "c", LimitBytes: 16 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	ts.later(func() { <-release }) // the applier is busy
	for _, mb := range []int64{4, 16, 8, 24} {
		limit := mb << 20
		if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &limit}); err != nil {
			t.Fatal(err)
		}
	}
	if got := ts.Engine(c.ID).LimitBytes(); got != 16<<20 {
		t.Fatalf("limit %d while the shrink waits, want the old 16 MiB", got)
	}
	close(release)
	ts.Sync()
	if got := ts.Engine(c.ID).LimitBytes(); got != 24<<20 {
		t.Fatalf("limit %d after Sync, want the last change's 24 MiB", got)
	}
	if ts.Cache(c.ID).resizes.Load() != 0 {
		t.Fatal("resizes still counted as queued")
	}
}
