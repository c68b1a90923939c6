package tenancy

import (
	"testing"
	"time"

	"github.com/memhive/memhive/control"
)

// TestLimitSplitOverNodes: in a cluster each node's engine holds its share
// of a cache's limit, L/N for N live nodes, at least one page; a change of
// N or of L resizes it, growing at once and shrinking once the applier is
// done; limit_maxbytes is the share. Each step follows the ones before it.
func TestLimitSplitOverNodes(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	c, err := store.CreateCache(control.Cache{Name: "app", LimitBytes: 12 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	def, err := store.CacheByName(DefaultCache) // 8 MiB
	if err != nil {
		t.Fatal(err)
	}
	const page = 1 << 20 // the engine's least limit: one page
	steps := []struct {
		name     string
		nodes    int   // SetNodes, unless 0
		limit    int64 // a plan change to this limit, unless 0
		grows    bool  // the engine holds its share when the call returns, before Sync
		want     int64 // app's engine limit
		wantDef  int64 // the default cache's
		wantNode int
	}{
		{name: "alone", want: 12 << 20, wantDef: 8 << 20, wantNode: 1},
		{name: "three nodes", nodes: 3, want: 4 << 20, wantDef: 8 << 20 / 3, wantNode: 3},
		{name: "a node left", nodes: 2, grows: true, want: 6 << 20, wantDef: 4 << 20, wantNode: 2},
		{name: "same count again", nodes: 2, grows: true, want: 6 << 20, wantDef: 4 << 20, wantNode: 2},
		{name: "plan change up", limit: 20 << 20, grows: true, want: 10 << 20, wantDef: 4 << 20, wantNode: 2},
		{name: "plan change down", limit: 8 << 20, want: 4 << 20, wantDef: 4 << 20, wantNode: 2},
		{name: "more nodes than pages", nodes: 16, want: page, wantDef: page, wantNode: 16},
		{name: "no members seen counts as one", nodes: -1, grows: true, want: 8 << 20, wantDef: 8 << 20, wantNode: 1},
	}
	for _, st := range steps {
		switch {
		case st.nodes != 0:
			ts.SetNodes(max(st.nodes, 0))
		case st.limit != 0:
			if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &st.limit}); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if got := ts.Engine(c.ID).LimitBytes(); st.grows && got != st.want {
			t.Errorf("%s: engine limit %d when the call returned, want %d at once", st.name, got, st.want)
		}
		ts.Sync()
		if got := ts.Engine(c.ID).LimitBytes(); got != st.want {
			t.Errorf("%s: engine limit %d, want %d", st.name, got, st.want)
		}
		if got := ts.Engine(def.ID).LimitBytes(); got != st.wantDef {
			t.Errorf("%s: default cache's engine limit %d, want %d", st.name, got, st.wantDef)
		}
		if stats, _ := ts.CacheStats(c.ID); stats["limit_maxbytes"] != uint64(st.want) {
			t.Errorf("%s: limit_maxbytes %d, want the share %d", st.name, stats["limit_maxbytes"], st.want)
		}
		if ts.Nodes() != st.wantNode {
			t.Errorf("%s: Nodes() = %d, want %d", st.name, ts.Nodes(), st.wantNode)
		}
	}

	// A cache created while three nodes live starts with its share.
	ts.SetNodes(3)
	n, err := store.CreateCache(control.Cache{Name: "new", LimitBytes: 9 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.Engine(n.ID).LimitBytes(); got != 3<<20 {
		t.Fatalf("a cache created among three nodes: engine limit %d, want 3 MiB", got)
	}
}

// TestLocalModeIgnoresNodes: in local mode (--auth none) the default cache
// keeps the whole memory whatever the node count.
func TestLocalModeIgnoresNodes(t *testing.T) {
	ts, _ := storeTenants(t, Config{Local: true, LocalLimit: 32 << 20})
	ts.SetNodes(4)
	ts.Sync()
	if got := ts.LocalCache().Engine().LimitBytes(); got != 32<<20 {
		t.Fatalf("local default cache's limit %d after SetNodes(4), want 32 MiB", got)
	}
}

// clusterView plays the etcd store's Cache: LastActive is the latest over
// every node, here what other nodes reported (elsewhere), or the store
// cannot be reached (down).
type clusterView struct {
	control.Store
	elsewhere func() time.Time
	down      bool
}

func (v *clusterView) Cache(id uint32) (control.Cache, error) {
	if v.down {
		return control.Cache{}, control.ErrUnavailable
	}
	c, err := v.Store.Cache(id)
	if err == nil && v.elsewhere != nil && v.elsewhere().After(c.LastActive) {
		c.LastActive = v.elsewhere()
	}
	return c, err
}

// TestIdleDevCacheJudgedClusterWide: a dev cache idle on this node is
// disabled only if it is idle on every node, as the store's LastActive
// says; when the store cannot say, it stays enabled.
func TestIdleDevCacheJudgedClusterWide(t *testing.T) {
	const idle = 300 * time.Millisecond
	cases := []struct {
		name         string
		view         clusterView
		wantDisabled bool
	}{
		{name: "idle everywhere", wantDisabled: true},
		{name: "idle elsewhere too", view: clusterView{elsewhere: func() time.Time { return time.Now().Add(-time.Hour) }}, wantDisabled: true},
		{name: "busy on another node", view: clusterView{elsewhere: time.Now}},
		{name: "store unreachable", view: clusterView{down: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			view := tc.view
			_, store := storeTenantsVia(t, Config{DevIdle: idle, SyncEvery: 50 * time.Millisecond}, func(s control.Store) control.Store {
				view.Store = s
				return &view
			})
			dev, err := store.CreateCache(control.Cache{Name: "dev", LimitBytes: 8 << 20, Enabled: true, Dev: true})
			if err != nil {
				t.Fatal(err)
			}
			// Long enough for several syncs after the cache went idle here.
			deadline := time.Now().Add(idle + 2*time.Second)
			for {
				c, err := store.Cache(dev.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !c.Enabled {
					if !tc.wantDisabled {
						t.Fatal("disabled a dev cache that is not idle cluster-wide")
					}
					return
				}
				if time.Now().After(deadline) {
					if tc.wantDisabled {
						t.Fatal("an idle dev cache was not disabled")
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestSetNodesRacesPlanChanges: member changes (the cluster's goroutine)
// and plan changes (the store's) at the same time end with the engine at
// the share of the last limit over the last node count.
func TestSetNodesRacesPlanChanges(t *testing.T) {
	ts, store := storeTenants(t, Config{})
	c, err := store.CreateCache(control.Cache{Name: "app", LimitBytes: 24 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			ts.SetNodes(1 + i%4)
		}
		ts.SetNodes(3)
	}()
	for i := range 200 {
		limit := int64(12+i%3*6) << 20
		if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &limit}); err != nil {
			t.Fatal(err)
		}
	}
	last := int64(36 << 20)
	if _, err := store.UpdateCache(c.ID, control.CacheUpdate{LimitBytes: &last}); err != nil {
		t.Fatal(err)
	}
	<-done
	ts.Sync()
	if got := ts.Engine(c.ID).LimitBytes(); got != 12<<20 {
		t.Fatalf("engine limit %d after the races, want 36 MiB / 3 nodes = 12 MiB", got)
	}
}
