package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/memcachier/mc/v3"

	"github.com/memhive/memhive/internal/etcdtest"
	"github.com/memhive/memhive/internal/testserver"
)

// clusterLeaseTTL is the membership lease memhive holds by default: a
// node that dies leaves the server list within it.
const clusterLeaseTTL = 5 * time.Second

// propagation is how soon a control change made on one node must be in
// force on every other (issue 14: within 2 s).
const propagation = 2 * time.Second

// cluster is a real etcd and memhive nodes n1..nN on loopback, each with
// its own data directory, memcache port and HTTP port, kept so that a
// node restarted comes back where it was.
type cluster struct {
	t     *testing.T
	etcd  *etcdtest.Etcd
	nodes []*hive
	ports []int
	https []string
	datas []string
	extra []string // flags every node gets, restarted ones too
}

// startCluster starts etcd and n nodes, each with the extra flags, and
// waits until every node lists all n as the cluster's servers.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, etcd: etcdtest.Start(t), extra: extra}
	for i := 0; i < n; i++ {
		c.ports = append(c.ports, testserver.FreePort(t))
		c.https = append(c.https, fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t)))
		c.datas = append(c.datas, t.TempDir())
		c.nodes = append(c.nodes, nil)
	}
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		// Concurrently, as an operator's machines boot: only one of them
		// may create the default cache.
		go func() { defer wg.Done(); c.nodes[i] = c.startNode(i) }()
	}
	wg.Wait()
	created := 0
	for i := range c.nodes {
		if c.nodes[i] == nil {
			t.FailNow()
		}
		if strings.Contains(c.nodes[i].Output(), `created cache "default"`) {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d nodes created the default cache, want 1", created)
	}
	for i := range c.nodes {
		c.waitServers(i, c.addrs(), clusterLeaseTTL)
	}
	return c
}

// startNode starts node i (named n<i+1>) on its port, HTTP address and
// data. The test polls logins until a change reaches a node, each poll a
// failed login until then, so the per-address limit on failed logins is
// off: it would refuse the test's address the login it waits for.
func (c *cluster) startNode(i int) *hive {
	args := []string{"--etcd", c.etcd.Endpoint(), "--node", c.name(i), "--memory", "256", "--history-interval", "300ms",
		"--auth-fail-limit", "0"}
	return startHiveOn(c.t, c.ports[i], c.https[i], c.datas[i], append(args, c.extra...)...)
}

// name is node i's --node name.
func (c *cluster) name(i int) string { return fmt.Sprintf("n%d", i+1) }

// addrs is the server list of the nodes given (all when none), in name order.
func (c *cluster) addrs(nodes ...int) string {
	if len(nodes) == 0 {
		for i := range c.nodes {
			nodes = append(nodes, i)
		}
	}
	var list []string
	for _, i := range nodes {
		list = append(list, fmt.Sprintf("127.0.0.1:%d", c.ports[i]))
	}
	return strings.Join(list, ",")
}

// servers is the server list node i reports for its caches in the admin API.
func (c *cluster) servers(i int) string {
	var caches []struct {
		Servers string `json:"servers"`
	}
	st, err := c.nodes[i].tryAdmin("GET", "/admin/v1/caches", nil, &caches)
	if err != nil || st != 200 || len(caches) == 0 {
		return fmt.Sprintf("(status %d, %v, %d caches)", st, err, len(caches))
	}
	return caches[0].Servers
}

// waitServers waits until node i's server list is want, for at most limit.
func (c *cluster) waitServers(i int, want string, limit time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	pollUntil(c.t, limit, fmt.Sprintf("n%d listing servers %s (has %s)", i+1, want, c.servers(i)), func() bool {
		return c.servers(i) == want
	})
	return time.Since(start)
}

// stats logs in on node i with l over the text protocol and returns its stats.
func (c *cluster) stats(i int, l login) map[string]string {
	c.t.Helper()
	tc := dialText(c.t, c.nodes[i].Addr)
	defer tc.c.Close()
	if got := tc.asciiLogin(l); got != "STORED" {
		c.t.Fatalf("n%d: login of %s answered %q", i+1, l.Username, got)
	}
	return tc.stats()
}

// waitShare waits until every node given holds share bytes of l's cache.
func (c *cluster) waitShare(l login, share int64, nodes ...int) {
	c.t.Helper()
	for _, i := range nodes {
		pollUntil(c.t, propagation, fmt.Sprintf("n%d holding %d bytes of cache %d", i+1, share, l.CacheID), func() bool {
			return c.stats(i, l)["limit_maxbytes"] == strconv.FormatInt(share, 10)
		})
	}
}

// canLogin reports whether l logs in over SASL on node i. It never fails
// the test: a refusal, a closed connection or a timeout is false.
func (c *cluster) canLogin(i int, l login) bool {
	conn, err := net.DialTimeout("tcp", c.nodes[i].Addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	mech, value := "PLAIN", "\x00"+l.Username+"\x00"+l.Password
	req := make([]byte, 24, 24+len(mech)+len(value))
	req[0], req[1] = 0x80, opSASLAuth
	binary.BigEndian.PutUint16(req[2:], uint16(len(mech)))
	binary.BigEndian.PutUint32(req[8:], uint32(len(mech)+len(value)))
	req = append(append(req, mech...), value...)
	if _, err := conn.Write(req); err != nil {
		return false
	}
	reply := make([]byte, 24)
	if _, err := io.ReadFull(conn, reply); err != nil || reply[0] != 0x81 {
		return false
	}
	return binary.BigEndian.Uint16(reply[6:]) == 0
}

// waitLogin waits until l logs in (or, with want false, no longer logs in)
// on every node given, within propagation of since.
func (c *cluster) waitLogin(l login, want bool, since time.Time, nodes ...int) {
	c.t.Helper()
	for _, i := range nodes {
		pollUntil(c.t, propagation-time.Since(since), fmt.Sprintf("login of %s on n%d being %v", l.Username, i+1, want), func() bool {
			return c.canLogin(i, l) == want
		})
	}
}

// spreadCache creates a cache of mb MiB through node i and checks that
// its server list is the whole cluster.
func (c *cluster) spreadCache(i int, name string, mb int) login {
	c.t.Helper()
	var l struct {
		login
		Servers string `json:"servers"`
	}
	if st := c.nodes[i].admin("POST", "/admin/v1/caches", map[string]any{"name": name, "memory_limit_mb": mb}, &l); st != 201 {
		c.t.Fatalf("creating cache %s on n%d: status %d", name, i+1, st)
	}
	if l.Servers != c.addrs() {
		c.t.Fatalf("cache %s: servers %q, want the cluster %q", name, l.Servers, c.addrs())
	}
	return l.login
}

// checkSpread checks that each node holds between 20% and 45% of the n
// keys l's cache was given.
func (c *cluster) checkSpread(l login, n int, client string) {
	c.t.Helper()
	var shares []string
	for i := range c.nodes {
		items, _ := strconv.Atoi(c.stats(i, l)["curr_items"])
		share := float64(items) / float64(n)
		shares = append(shares, fmt.Sprintf("n%d %.1f%%", i+1, 100*share))
		if share < 0.20 || share > 0.45 {
			c.t.Errorf("%s: n%d holds %d of %d keys (%.1f%%), want 20%%..45%%", client, i+1, items, n, 100*share)
		}
	}
	c.t.Logf("%s: keys per node: %s", client, strings.Join(shares, ", "))
}

// servedList is the server list node h keeps in its serve.json for the
// CLI, "" while it has none.
func servedList(h *hive) string {
	var st struct {
		Servers string `json:"servers"`
	}
	b, err := os.ReadFile(filepath.Join(h.data, "serve.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return ""
	}
	return st.Servers
}

// textLoginDialer dials a memhive node and logs in with MemCachier's text
// login before gomemcache sees the connection: gomemcache has no SASL.
func textLoginDialer(l login) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(conn, "set %s 0 0 %d\r\n%s\r\n", l.Username, len(l.Password), l.Password)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len("STORED\r\n"))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "STORED\r\n" {
			conn.Close()
			return nil, fmt.Errorf("text login on %s: %q, %v", addr, buf, err)
		}
		conn.SetReadDeadline(time.Time{})
		return conn, nil
	}
}

// phase runs one step of a long end-to-end test on the test's own
// goroutine (the cluster's helpers fail the parent test, which a subtest
// may not do), logging where it starts so that a failure is placed.
func phase(t *testing.T, name string, step func(t *testing.T)) {
	t.Helper()
	if t.Failed() {
		return
	}
	t.Logf("--- %s", name)
	step(t)
}

// TestClusterOfThree is issue 14's cluster end to end: three nodes and
// etcd on loopback, real clients spreading keys over the server list,
// control changes reaching every node, a node killed and restarted, and
// etcd stopped and started. Its nodes serve with --route client, issue
// 14's mode, which it tests: each node holds what its clients hash to it,
// and after a kill -9 a client that fails over finds every key answered
// by the survivors, where --route server would fail the dead node's keys
// (TestClusterRouting tests that mode).
func TestClusterOfThree(t *testing.T) {
	const keys = 10000
	const mib = 1 << 20
	c := startCluster(t, 3, "--route", "client")
	py := c.spreadCache(0, "cluster-py", 96)
	gm := c.spreadCache(1, "cluster-gm", 96)
	mcLogin := c.spreadCache(2, "cluster-mc", 96)
	now := time.Now()
	for _, l := range []login{py, gm, mcLogin} {
		c.waitLogin(l, true, now, 0, 1, 2)
		c.waitShare(l, 32*mib, 0, 1, 2)
	}

	phase(t, "pylibmc", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		script, _ := filepath.Abs(filepath.Join("testdata", "pylibmc_cluster.py"))
		out, err := exec.CommandContext(ctx, systemPython, script, c.addrs(), py.Username, py.Password, strconv.Itoa(keys)).CombinedOutput()
		if err != nil {
			t.Fatalf("pylibmc: %v\n%s", err, out)
		}
		if want := fmt.Sprintf("%d stored, %d read back", keys, keys); !strings.Contains(string(out), want) {
			t.Fatalf("pylibmc printed %q, want %q", out, want)
		}
		c.checkSpread(py, keys, "pylibmc (ketama)")
	})

	phase(t, "gomemcache", func(t *testing.T) {
		var ss memcache.ServerList
		if err := ss.SetServers(strings.Split(c.addrs(), ",")...); err != nil {
			t.Fatal(err)
		}
		client := memcache.NewFromSelector(&ss)
		client.Timeout = 5 * time.Second
		client.MaxIdleConns = 4
		client.DialContext = textLoginDialer(gm)
		for i := 0; i < keys; i++ {
			must(t, "set", client.Set(&memcache.Item{Key: fmt.Sprintf("cluster-gm-%d", i), Value: []byte(fmt.Sprintf("value-%d", i))}))
		}
		for i := 0; i < keys; i++ {
			mustGet(t, client, fmt.Sprintf("cluster-gm-%d", i), []byte(fmt.Sprintf("value-%d", i)), 0)
		}
		c.checkSpread(gm, keys, "gomemcache (ServerList)")
	})

	mcConfig := mc.DefaultConfig()
	mcConfig.Failover = true
	mcConfig.DownRetryDelay = time.Hour // a node killed stays skipped for the rest of the test
	mcClient := mc.NewMCwithConfig(c.addrs(), mcLogin.Username, mcLogin.Password, mcConfig)
	defer mcClient.Quit()
	phase(t, "memcachier-mc", func(t *testing.T) {
		for i := 0; i < keys; i++ {
			k, v := fmt.Sprintf("cluster-mc-%d", i), fmt.Sprintf("value-%d", i)
			if _, err := mcClient.Set(k, v, 0, 0, 0); err != nil {
				t.Fatalf("set %s: %v", k, err)
			}
		}
		for i := 0; i < keys; i++ {
			k, v := fmt.Sprintf("cluster-mc-%d", i), fmt.Sprintf("value-%d", i)
			if got, _, _, err := mcClient.Get(k); err != nil || got != v {
				t.Fatalf("get %s = %q, %v; want %q", k, got, err, v)
			}
		}
		c.checkSpread(mcLogin, keys, "memcachier/mc")
	})
	phase(t, "analytics over the cluster", func(t *testing.T) {
		// Any node answers for all three, keyed by host:port.
		var byNode map[string]map[string]uint64
		if st := c.nodes[2].apiGet(gm, fmt.Sprintf("/api/v1/%d/stats", gm.CacheID), &byNode); st != 200 {
			t.Fatalf("/stats on n3: status %d", st)
		}
		items := uint64(0)
		for i := range c.nodes {
			addr := c.addrs(i)
			st, ok := byNode[addr]
			if !ok {
				t.Fatalf("/stats has no entry for n%d (%s): %v", i+1, addr, byNode)
			}
			if st["limit_maxbytes"] != 32*mib {
				t.Errorf("/stats: n%d's limit_maxbytes %d, want its share %d", i+1, st["limit_maxbytes"], 32*mib)
			}
			items += st["curr_items"]
		}
		if len(byNode) != 3 || items != keys {
			t.Errorf("/stats: %d entries holding %d items, want 3 holding %d", len(byNode), items, keys)
		}
		// History holds every node's samples, each naming its server.
		pollUntil(t, 10*time.Second, "/history holding samples of all three nodes", func() bool {
			var samples []struct {
				Server string `json:"server"`
			}
			c.nodes[0].apiGet(gm, fmt.Sprintf("/api/v1/%d/history", gm.CacheID), &samples)
			servers := map[string]bool{}
			for _, s := range samples {
				servers[s.Server] = true
			}
			return len(servers) == 3 && servers[c.addrs(0)] && servers[c.addrs(1)] && servers[c.addrs(2)]
		})
		// A flush through one node empties the cache on every node before
		// it answers.
		if st, body := c.nodes[1].guideCall("POST", fmt.Sprintf("/api/v1/%d/flush", gm.CacheID), gm, "", ""); st != 200 {
			t.Fatalf("/flush on n2: %d %s", st, body)
		}
		for i := range c.nodes {
			if got := c.stats(i, gm)["curr_items"]; got != "0" {
				t.Errorf("n%d holds %s items of the flushed cache", i+1, got)
			}
		}
		// The internal endpoints answer nobody without the cluster secret.
		for _, as := range []login{gm, {Username: "x", Password: "y"}} {
			st, _ := c.nodes[0].guideCall("POST", fmt.Sprintf("/cluster/v1/caches/%d/flush", py.CacheID), as, "", "")
			if st != 401 && st != 403 {
				t.Errorf("the internal flush endpoint answered %d to a client without the cluster secret", st)
			}
		}
		if got := c.stats(0, py)["curr_items"]; got == "0" {
			t.Errorf("a refused internal flush emptied the cache")
		}
	})

	phase(t, "the server list for the CLI", func(t *testing.T) {
		// serve.json, which the CLI reads on a node's --data, follows the
		// members; `memhive env` prints the live list.
		for i, n := range c.nodes {
			if got := servedList(n); got != c.addrs() {
				t.Errorf("n%d's serve.json lists %q, want %q", i+1, got, c.addrs())
			}
		}
		out, err := exec.Command(testserver.MemhiveBinary(t), "env", "cluster-py", "--data", c.datas[0], "--admin-token", adminToken).Output()
		if err != nil || !strings.Contains(string(out), "MEMCACHIER_SERVERS="+c.addrs()+"\n") {
			t.Errorf("memhive env cluster-py on n1's --data: %v\n%s", err, out)
		}
	})

	phase(t, "credentials", func(t *testing.T) {
		// Created on n1, it logs in on n3.
		created := time.Now()
		fresh := c.nodes[0].createCred(py.CacheID, true, true, true)
		c.waitLogin(fresh, true, created, 2)
		t.Logf("created on n1, logged in on n3 after %v", time.Since(created))
		// Deleted on n2, its connections on n1 and n3 end.
		var conns []*textConn
		for _, i := range []int{0, 2} {
			tc := dialText(t, c.nodes[i].Addr)
			if got := tc.asciiLogin(fresh); got != "STORED" {
				t.Fatalf("n%d: login answered %q", i+1, got)
			}
			conns = append(conns, tc)
		}
		deleted := time.Now()
		if st := c.nodes[1].admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", py.CacheID, fresh.ID), nil, nil); st/100 != 2 {
			t.Fatalf("deleting the credential on n2: status %d", st)
		}
		for n, tc := range conns {
			if !tc.closedByPeer(propagation - time.Since(deleted)) {
				t.Errorf("a connection of the deleted credential on n%d was still open %v after", 2*n+1, propagation)
			}
		}
		t.Logf("deleted on n2, connections on n1 and n3 closed after %v", time.Since(deleted))
		c.waitLogin(fresh, false, deleted, 0, 2)
	})

	phase(t, "kill -9 and rejoin", func(t *testing.T) {
		c.nodes[1].Kill()
		killed := time.Now()
		// Until its lease runs out it is still a member, and the stats of
		// the cluster name it as the node that did not answer.
		if st, body := c.nodes[0].guideCall("GET", fmt.Sprintf("/api/v1/%d/stats", py.CacheID), py, "", ""); st != 500 || !strings.Contains(body, "Server error: "+c.addrs(1)) {
			t.Errorf("/stats with n2 killed: %d %s; want 500 naming %s", st, body, c.addrs(1))
		}
		// memcachier/mc fails over: every command is answered.
		for i := 0; i < 300; i++ {
			k, v := fmt.Sprintf("after-kill-%d", i), fmt.Sprintf("value-%d", i)
			if _, err := mcClient.Set(k, v, 0, 0, 0); err != nil {
				t.Fatalf("memcachier/mc set %s after the kill: %v", k, err)
			}
			if got, _, _, err := mcClient.Get(k); err != nil || got != v {
				t.Fatalf("memcachier/mc get %s after the kill = %q, %v", k, got, err)
			}
		}
		for _, i := range []int{0, 2} {
			c.waitServers(i, c.addrs(0, 2), clusterLeaseTTL+time.Second-time.Since(killed))
		}
		t.Logf("n2 left the server list %v after kill -9", time.Since(killed))
		for _, l := range []login{py, gm, mcLogin} {
			c.waitShare(l, 48*mib, 0, 2)
		}
		for _, i := range []int{0, 2} {
			pollUntil(t, propagation, fmt.Sprintf("n%d's serve.json dropping n2", i+1), func() bool {
				return servedList(c.nodes[i]) == c.addrs(0, 2)
			})
		}
		c.nodes[1] = c.startNode(1)
		for i := range c.nodes {
			c.waitServers(i, c.addrs(), 10*time.Second)
		}
		for _, l := range []login{py, gm, mcLogin} {
			c.waitShare(l, 32*mib, 0, 1, 2)
		}
	})

	phase(t, "etcd away", func(t *testing.T) {
		c.etcd.Stop()
		// Existing logins keep working on every node.
		for i := range c.nodes {
			if !c.canLogin(i, gm) {
				t.Errorf("n%d refused a known login while etcd was away", i+1)
			}
			tc := dialText(t, c.nodes[i].Addr)
			if got := tc.asciiLogin(py); got != "STORED" {
				t.Errorf("n%d: text login while etcd was away answered %q", i+1, got)
			}
			tc.c.Close()
		}
		// A control change is refused, clearly.
		body := map[string]any{"write": true, "flush": false, "api": false}
		path := fmt.Sprintf("/admin/v1/caches/%d/credentials", py.CacheID)
		var made login
		st, err := c.nodes[0].tryAdmin("POST", path, body, &made)
		if err != nil || st != 503 {
			t.Fatalf("creating a credential while etcd is away: status %d, %v; want 503", st, err)
		}
		// A node restarted meanwhile serves the logins it knew, from its
		// copy on disk.
		c.nodes[0].Stop()
		c.nodes[0] = c.startNode(0)
		if !c.canLogin(0, gm) {
			t.Errorf("n1, restarted while etcd was away, refused a login it knew")
		}
		c.etcd.Restart()
		restarted := time.Now()
		pollUntil(t, 20*time.Second, "the change going through once etcd is back", func() bool {
			st, err = c.nodes[0].tryAdmin("POST", path, body, &made)
			return err == nil && st == 201
		})
		t.Logf("a change went through %v after etcd restarted", time.Since(restarted))
		made.CacheID = py.CacheID
		for i := range c.nodes {
			for deadline := time.Now().Add(10 * time.Second); !c.canLogin(i, made); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the change made once etcd was back had not reached n%d 10 s later; its log:\n%s", i+1, c.nodes[i].Output())
				}
			}
			t.Logf("n%d has it %v after etcd restarted", i+1, time.Since(restarted))
		}
		for i, n := range c.nodes {
			out := n.Output()
			if got := strings.Count(out, "etcd unreachable; serving the last state seen"); got != 1 {
				t.Errorf("n%d logged %d times that etcd was unreachable, want once:\n%s", i+1, got, out)
			}
			if got := strings.Count(out, "etcd reachable again"); got != 1 {
				t.Errorf("n%d logged %d times that etcd was back, want once", i+1, got)
			}
		}
	})

	phase(t, "SIGTERM leaves at once", func(t *testing.T) {
		c.nodes[2].Stop()
		stopped := time.Now()
		for _, i := range []int{0, 1} {
			c.waitServers(i, c.addrs(0, 1), propagation)
		}
		t.Logf("n3 stopped with SIGTERM left the server list after %v", time.Since(stopped))
		for _, l := range []login{py, gm, mcLogin} {
			c.waitShare(l, 48*mib, 0, 1)
		}
	})
}
