package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/atomicfile"
	"github.com/memhive/memhive/server"
	"github.com/memhive/memhive/tenancy"
)

// TestClusterFlags: the cluster flags' defaults and the command lines
// refused, each error naming the flag to fix.
func TestClusterFlags(t *testing.T) {
	host, _ := os.Hostname()
	cases := []struct {
		name          string
		args          []string
		wantErr       string // a part of the error; "" for none
		node, adv     string
		wantEndpoints int
	}{
		{name: "no cluster: advertise is --listen", args: nil, adv: "127.0.0.1:11211"},
		{name: "no cluster, -p", args: []string{"-p", "11300"}, adv: "127.0.0.1:11300"},
		{name: "--node needs --etcd", args: []string{"--node", "n1"}, wantErr: "--node needs --etcd"},
		{name: "--advertise needs --etcd", args: []string{"--advertise", "10.0.0.1:11211"}, wantErr: "--advertise needs --etcd"},
		{name: "--etcd-ca needs --etcd", args: []string{"--etcd-ca", "ca.pem"}, wantErr: "--etcd-ca needs --etcd"},
		{name: "defaults", args: []string{"--etcd", "http://127.0.0.1:2379"}, node: host, adv: "127.0.0.1:11211", wantEndpoints: 1},
		{name: "three endpoints", args: []string{"--etcd", "https://e1:2379, https://e2:2379,https://e3:2379", "--node", "n2"}, node: "n2", adv: "127.0.0.1:11211", wantEndpoints: 3},
		{name: "unspecified listen", args: []string{"--etcd", "http://e:2379", "--listen", "0.0.0.0:11211"}, wantErr: "pass --advertise"},
		{name: "unspecified listen, v6", args: []string{"--etcd", "http://e:2379", "--listen", "[::]:11211"}, wantErr: "pass --advertise"},
		{name: "unspecified advertise", args: []string{"--etcd", "http://e:2379", "--advertise", "0.0.0.0:11211"}, wantErr: "--advertise 0.0.0.0:11211 is not an address"},
		{name: "advertise without port", args: []string{"--etcd", "http://e:2379", "--advertise", "10.0.0.1"}, wantErr: "--advertise \"10.0.0.1\""},
		{name: "unspecified listen, advertised", args: []string{"--etcd", "http://e:2379", "--listen", "0.0.0.0:11211", "--advertise", "10.0.0.1:11211", "--node", "a"},
			node: "a", adv: "10.0.0.1:11211", wantEndpoints: 1},
		{name: "empty --etcd list", args: []string{"--etcd", " , "}, wantErr: "client URLs"},
		{name: "local mode: a cluster of plain memcacheds", args: []string{"--etcd", "http://e:2379", "--auth", "none", "--node", "n1"},
			node: "n1", adv: "127.0.0.1:11211", wantEndpoints: 1},
		{name: "cert without key", args: []string{"--etcd", "http://e:2379", "--etcd-cert", "c.pem"}, wantErr: "--etcd-cert and --etcd-key"},
		{name: "relative prefix", args: []string{"--etcd", "http://e:2379", "--etcd-prefix", "memhive"}, wantErr: "--etcd-prefix"},
		{name: "node with a slash", args: []string{"--etcd", "http://e:2379", "--node", "a/b"}, wantErr: "--node"},
		{name: "a memory file on a cluster node", args: []string{"--etcd", "http://e:2379", "--memory-file", "/dev/shm/m"}, wantErr: "--memory-file is for a single node"},
	}
	for _, tc := range cases {
		c, err := parseServeFlags(tc.args, io.Discard, io.Discard)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case c.node != tc.node || c.advertise != tc.adv || len(c.etcdEndpoints) != tc.wantEndpoints:
			t.Errorf("%s: node %q advertise %q endpoints %q; want %q %q and %d endpoints", tc.name, c.node, c.advertise, c.etcdEndpoints, tc.node, tc.adv, tc.wantEndpoints)
		}
	}
}

// TestEtcdTLS: --etcd-ca and --etcd-cert/--etcd-key make the TLS
// configuration etcd is reached with; bad files are errors naming the flag.
func TestEtcdTLS(t *testing.T) {
	dir := t.TempDir()
	pemPath, _ := writeCertPEM(t, dir, "node") // certificate and key in one file
	if cfg, err := etcdTLS("", "", ""); cfg != nil || err != nil {
		t.Fatalf("no TLS flags: %v %v", cfg, err)
	}
	cfg, err := etcdTLS(pemPath, pemPath, pemPath)
	if err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.MinVersion != 0x0303 {
		t.Fatalf("CA and client certificate: %+v %v", cfg, err)
	}
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("not PEM"), 0o600)
	if _, err := etcdTLS(empty, "", ""); err == nil || !strings.Contains(err.Error(), "--etcd-ca") {
		t.Fatalf("a CA file without certificates: %v", err)
	}
	if _, err := etcdTLS("", empty, empty); err == nil || !strings.Contains(err.Error(), "--etcd-cert") {
		t.Fatalf("a bad client certificate: %v", err)
	}
}

// TestServerList: the server list is the members' addresses in name
// order, with this node in it even before its join is seen.
func TestServerList(t *testing.T) {
	self := control.Member{Name: "n2", Advertise: "10.0.0.2:11211"}
	n1 := control.Member{Name: "n1", Advertise: "10.0.0.1:11211"}
	n3 := control.Member{Name: "n3", Advertise: "10.0.0.3:11211"}
	for _, tc := range []struct {
		members []control.Member
		want    string
	}{
		{nil, "10.0.0.2:11211"},
		{[]control.Member{n3, n1}, "10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211"},
		{[]control.Member{n1, self, n3}, "10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211"},
		{[]control.Member{self}, "10.0.0.2:11211"},
	} {
		if got := serverList(withSelf(tc.members, self)); got != tc.want {
			t.Errorf("members %v: %q, want %q", tc.members, got, tc.want)
		}
	}
}

// TestCLIOnAClusterNode: the CLI never opens a store in a cluster node's
// --data (its caches live in etcd; opening would make an empty embedded
// store), goes through the running node's admin API, and prints the
// server list the node keeps in serve.json, or, through another node
// (--http), the list that node answers.
func TestCLIOnAClusterNode(t *testing.T) {
	dir := t.TempDir()
	if err := atomicfile.WriteJSON(filepath.Join(dir, clusterFile), clusterMarker{Etcd: []string{"http://127.0.0.1:2379"}, Prefix: "/memhive", Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("tok\n"), 0o600)
	if _, err := runCmd(t, cacheCmd, "list", "--data", dir); err == nil || !strings.Contains(err.Error(), "cluster node") {
		t.Fatalf("no node running: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, storeFile)); err == nil {
		t.Fatal("the CLI made an embedded store in a cluster node's --data")
	}

	// A node's admin API (here over an embedded store elsewhere), which
	// answers its own server list.
	store, err := control.Open(filepath.Join(t.TempDir(), storeFile), control.Policy{MemoryBytes: 1 << 30, MinLimitBytes: 1 << 20}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	admin := analytics.NewAdmin(analytics.AdminConfig{Store: store, Token: "tok", Servers: "10.0.0.1:11211,10.0.0.2:11211"})
	srv, err := analytics.ListenAndServe("127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { admin.Handle(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	three := "10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211"
	if err := atomicfile.WriteJSON(filepath.Join(dir, serveStateFile), serveState{HTTP: srv.Addr(), Servers: three, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, cacheCmd, "create", "app", "--data", dir)
	if err != nil || envLines(out)["MEMCACHIER_SERVERS"] != three {
		t.Fatalf("cache create through the node: %v, want servers %s\n%s", err, three, out)
	}
	if _, err := os.Stat(filepath.Join(dir, storeFile)); err == nil {
		t.Fatal("the CLI made an embedded store in a cluster node's --data")
	}
	// serve.json of another node's --data does not apply to --http.
	os.Remove(filepath.Join(dir, serveStateFile))
	out, err = runCmd(t, envCmd, "app", "--data", dir, "--http", srv.Addr())
	if err != nil || envLines(out)["MEMCACHIER_SERVERS"] != "10.0.0.1:11211,10.0.0.2:11211" {
		t.Fatalf("env through --http: %v, want the node's own list\n%s", err, out)
	}
}

// racingStore plays a node that lost the race to make the default cache:
// the store looked empty, but another node created it meanwhile.
type racingStore struct{ control.Store }

func (r racingStore) Caches() ([]control.Cache, error) { return nil, nil }

func (r racingStore) CreateCache(c control.Cache) (control.Cache, error) {
	if _, err := r.Store.CreateCache(c); err != nil { // the other node's
		return control.Cache{}, err
	}
	return control.Cache{}, control.ErrExists
}

// TestDefaultCacheRace: nodes starting at once on an empty etcd all try
// to make the default cache; the ones that lose find it and print no
// credentials.
func TestDefaultCacheRace(t *testing.T) {
	store, err := control.Open(filepath.Join(t.TempDir(), storeFile), control.Policy{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	created, cred, err := ensureDefaultCache(racingStore{store}, 64<<20, 1<<20, false)
	if err != nil || created != nil || cred.Username != "" {
		t.Fatalf("losing the race: created %v, credential %q, error %v; want nothing made and no error", created, cred.Username, err)
	}
	if c, err := store.CacheByName("default"); err != nil || c.LimitBytes != 64<<20 {
		t.Fatalf("the default cache: %+v %v", c, err)
	}
}

// TestRouteFlags: --route defaults to server in a cluster and client
// alone, --forward-timeout to DefaultForwardTimeout; a route that cannot
// work, and a timeout nothing would use, are refused naming the flag.
func TestRouteFlags(t *testing.T) {
	const etcd = "http://127.0.0.1:2379"
	cases := []struct {
		name    string
		args    []string
		wantErr string
		route   string
		timeout time.Duration
	}{
		{name: "alone: client", args: nil, route: "client", timeout: server.DefaultForwardTimeout},
		{name: "alone, client said", args: []string{"--route", "client"}, route: "client", timeout: server.DefaultForwardTimeout},
		{name: "alone, server refused", args: []string{"--route", "server"}, wantErr: "--route server needs --etcd"},
		{name: "alone, a timeout refused", args: []string{"--forward-timeout", "50ms"}, wantErr: "--forward-timeout needs --route server"},
		{name: "cluster: server", args: []string{"--etcd", etcd, "--node", "n1"}, route: "server", timeout: server.DefaultForwardTimeout},
		{name: "cluster without logins: server", args: []string{"--etcd", etcd, "--node", "n1", "--auth", "none"}, route: "server", timeout: server.DefaultForwardTimeout},
		{name: "cluster, a timeout", args: []string{"--etcd", etcd, "--node", "n1", "--forward-timeout", "250ms"}, route: "server", timeout: 250 * time.Millisecond},
		{name: "cluster, server said", args: []string{"--etcd", etcd, "--node", "n1", "--route", "server", "--forward-timeout", "1s"}, route: "server", timeout: time.Second},
		{name: "cluster, client", args: []string{"--etcd", etcd, "--node", "n1", "--route", "client"}, route: "client", timeout: server.DefaultForwardTimeout},
		{name: "cluster, client with a timeout", args: []string{"--etcd", etcd, "--node", "n1", "--route", "client", "--forward-timeout", "1s"}, wantErr: "--forward-timeout needs --route server"},
		{name: "unknown route", args: []string{"--etcd", etcd, "--node", "n1", "--route", "proxy"}, wantErr: `--route "proxy"`},
		{name: "zero timeout", args: []string{"--etcd", etcd, "--node", "n1", "--forward-timeout", "0s"}, wantErr: "--forward-timeout 0s: must be positive"},
		{name: "negative timeout", args: []string{"--etcd", etcd, "--node", "n1", "--forward-timeout", "-1ms"}, wantErr: "must be positive"},
	}
	for _, tc := range cases {
		c, err := parseServeFlags(tc.args, io.Discard, io.Discard)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case c.route != tc.route || c.forwardTimeout != tc.timeout:
			t.Errorf("%s: --route %q --forward-timeout %v; want %q %v", tc.name, c.route, c.forwardTimeout, tc.route, tc.timeout)
		}
	}
}

// TestOwnerNodes: every node makes the same owners from the member list,
// in whatever order it lists them: names and addresses are the members',
// in name order, so a key has one owner cluster-wide, and each node knows
// itself among them. A node not in the list (its join not yet seen, or
// left) owns nothing, as the others see it, and one that has seen no
// member at all serves every key itself.
func TestOwnerNodes(t *testing.T) {
	n1 := control.Member{Name: "n1", Advertise: "10.0.0.1:11211", HTTP: "10.0.0.1:11280"}
	n2 := control.Member{Name: "n2", Advertise: "10.0.0.2:11211", HTTP: "10.0.0.2:11280"}
	n3 := control.Member{Name: "n3", Advertise: "10.0.0.3:11211", HTTP: "10.0.0.3:11280"}
	want := []tenancy.Node{{Name: "n1", Addr: "10.0.0.1:11211"}, {Name: "n2", Addr: "10.0.0.2:11211"}, {Name: "n3", Addr: "10.0.0.3:11211"}}
	views := []struct {
		self    string
		members []control.Member
	}{
		{"n1", []control.Member{n3, n1, n2}},
		{"n2", []control.Member{n1, n2, n3}},
		{"n3", []control.Member{n2, n3, n1}},
	}
	owners := make([]*tenancy.Owners, len(views))
	for i, v := range views {
		nodes := ownerNodes(v.members)
		if !slices.Equal(nodes, want) {
			t.Fatalf("%s: owners %v, want %v", v.self, nodes, want)
		}
		owners[i] = new(tenancy.Owners)
		owners[i].Set(nodes, v.self)
	}
	joining := new(tenancy.Owners) // n4, its join not seen yet
	joining.Set(ownerNodes([]control.Member{n2, n3, n1}), "n4")
	alone := new(tenancy.Owners) // etcd never seen
	alone.Set(ownerNodes(nil), "n1")
	for k := 0; k < 3000; k++ {
		key := []byte("key-" + strconv.Itoa(k))
		owner, _ := owners[0].Owner(7, key)
		selves := 0
		for i, o := range owners {
			got, self := o.Owner(7, key)
			if got != owner {
				t.Fatalf("key %s: n%d says %v owns it, n1 says %v", key, i+1, got, owner)
			}
			if self {
				selves++
				if got.Name != views[i].self {
					t.Fatalf("key %s: n%d claims it, owned by %v", key, i+1, got)
				}
			}
		}
		if selves != 1 {
			t.Fatalf("key %s: %d nodes claim it, want exactly its owner", key, selves)
		}
		if got, self := joining.Owner(7, key); self || got != owner {
			t.Fatalf("key %s: a node not yet a member says %v owns it (self %v), the members %v", key, got, self, owner)
		}
		if _, self := alone.Owner(7, key); !self {
			t.Fatalf("key %s: a node that has seen no member does not serve it", key)
		}
	}
}
