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
	cred, password, err := store.CreateCredential(c.ID, control.CapWrite, false)
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

	if _, err := store.SetCapabilities(cred.ID, control.CapAll); err != nil {
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
