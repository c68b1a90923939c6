package server

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
)

// storeTenants opens a real store in a temporary directory and follows it.
func storeTenants(t *testing.T, cfg TenantsConfig) (*Tenants, control.Store) {
	t.Helper()
	mem := testMemory(t, 64)
	store, err := control.Open(filepath.Join(t.TempDir(), "control.db"), control.Policy{MemoryBytes: 64 << 20}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateCache(control.Cache{Name: DefaultCache, LimitBytes: 8 << 20, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	ts, err := NewTenants(cfg, mem, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	return ts, store
}

func TestTenantsFollowTheStore(t *testing.T) {
	ts, store := storeTenants(t, TenantsConfig{})
	var revokes atomic.Int32
	ts.revoke = func() { revokes.Add(1) }

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
	u, tn := ts.authenticate([]byte(cred.Username), []byte(password))
	if u == nil || tn.id != c.ID || u.Caps() != control.CapWrite {
		t.Fatalf("authenticate: user %v cache %v", u, tn)
	}
	if u, _ := ts.authenticate([]byte(cred.Username), []byte(password+"x")); u != nil {
		t.Fatal("wrong password authenticated")
	}

	if _, err := store.UpdateCredential(cred.ID, control.CredentialUpdate{Caps: new(control.CapAll)}); err != nil {
		t.Fatal(err)
	}
	if u.Caps() != control.CapAll {
		t.Fatal("a capability change did not reach the live credential")
	}

	limit := int64(32 << 20)
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	if eng.LimitBytes() != limit {
		t.Fatalf("resize: engine limit %d", eng.LimitBytes())
	}

	off := false
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if revokes.Load() != 1 {
		t.Fatalf("disabling revoked %d times", revokes.Load())
	}
	if u, _ := ts.authenticate([]byte(cred.Username), []byte(password)); u != nil {
		t.Fatal("a disabled cache's credential authenticated")
	}
	on := true
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	if u, _ := ts.authenticate([]byte(cred.Username), []byte(password)); u == nil {
		t.Fatal("a re-enabled cache's credential did not authenticate")
	}

	if err := store.DeleteCredential(cred.ID); err != nil {
		t.Fatal(err)
	}
	if !u.gone.Load() || revokes.Load() != 2 {
		t.Fatalf("deleting a credential: gone %v, revokes %d", u.gone.Load(), revokes.Load())
	}
	if err := store.DeleteCache(c.ID); err != nil {
		t.Fatal(err)
	}
	if ts.Engine(c.ID) != nil || !tn.gone.Load() {
		t.Fatal("a deleted cache is still served")
	}
}

func TestIdleDevCacheIsDisabled(t *testing.T) {
	ts, store := storeTenants(t, TenantsConfig{DevIdle: 300 * time.Millisecond, SyncEvery: 50 * time.Millisecond})
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
		busyTenant.touch(time.Now().Unix() + 1) // a command every tick
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
	ts, store := storeTenants(t, TenantsConfig{})
	var revokes atomic.Int32
	ts.revoke = func() { revokes.Add(1) }
	c, err := store.CreateCache(control.Cache{Name: "app", LimitBytes: 8 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cred, _, _ := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	other, _, _ := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite})
	fp := control.Fingerprint([]byte("a certificate"))
	byFP := &peerCert{fingerprint: fp}
	verified := &peerCert{fingerprint: control.Fingerprint([]byte("another")), cn: "worker"}
	unverified := &peerCert{fingerprint: verified.fingerprint}

	if ts.certificateUser(byFP) != nil {
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
	u := ts.certificateUser(byFP)
	if u == nil || u.id != cred.ID || !u.matches(byFP) {
		t.Fatalf("by fingerprint: %+v", u)
	}
	if u := ts.certificateUser(verified); u == nil || u.id != other.ID {
		t.Fatalf("by verified CN: %+v", u)
	}
	if ts.certificateUser(unverified) != nil {
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
	if u.matches(byFP) || ts.certificateUser(byFP) != nil || revokes.Load() != 1 {
		t.Fatalf("after rebinding: matches %v, %d revokes", u.matches(byFP), revokes.Load())
	}
	// Deleting the credential, or its cache, forgets its certificate.
	store.DeleteCredential(other.ID)
	if ts.certificateUser(verified) != nil {
		t.Fatal("a deleted credential's CN still logs in")
	}
	store.DeleteCache(c.ID)
	if len(ts.byCert) != 0 || len(ts.byCN) != 0 {
		t.Fatalf("after deleting the cache: %d fingerprints, %d CNs", len(ts.byCert), len(ts.byCN))
	}
}
