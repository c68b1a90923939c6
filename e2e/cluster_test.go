package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/etcdtest"
	"github.com/memhive/memhive/internal/testserver"
)

// clusterNode starts `memhive serve --etcd` as node name on data.
func clusterNode(t *testing.T, etcd *etcdtest.Etcd, name, data string) *hive {
	t.Helper()
	return startHiveWithin(t, 30*time.Second, data, "--etcd", etcd.Endpoint(), "--node", name, "--overcommit", "--memory", "64")
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

// limitOn is cache l's limit_maxbytes on node h.
func limitOn(t *testing.T, h *hive, l login) string {
	t.Helper()
	tc := dialText(t, h.Addr)
	defer tc.c.Close()
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("logging in on %s: %q", h.Addr, got)
	}
	return tc.stats()["limit_maxbytes"]
}

// eventually waits up to limit for cond, failing with what it last said.
func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, got := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v; last: %s", what, limit, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterFollowsItsMembers: three nodes on one etcd (embedded in the
// test). The first makes the default cache, the others find it. A cache
// of limit L holds L/3 on each node (limit_maxbytes), and every node's
// server list (serve.json, memhive env through the CLI) is the three in
// name order. A node killed with SIGKILL leaves the list when its lease
// runs out (5 s) and the others' shares grow to L/2; restarted on its
// --data, it rejoins and the shares are L/3 again; a node stopped with
// SIGTERM leaves at once. It passes once the real etcd store replaces the
// stub in control (the merge of issue 14).
func TestClusterFollowsItsMembers(t *testing.T) {
	t.Parallel()
	etcd := etcdtest.Start(t)
	names := []string{"n1", "n2", "n3"}
	nodes := make([]*hive, len(names))
	for i, name := range names {
		nodes[i] = clusterNode(t, etcd, name, t.TempDir())
	}
	created := 0
	for _, h := range nodes {
		if strings.Contains(h.Output(), `created cache "default"`) {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d nodes created the default cache, want 1", created)
	}
	list := func(hs ...*hive) string {
		var addrs []string
		for _, h := range hs {
			addrs = append(addrs, h.Addr)
		}
		return strings.Join(addrs, ",")
	}
	const mib = 1 << 20
	app := nodes[0].createCache("app", 24)
	share := func(n int) string { return fmt.Sprint(24 * mib / n) }
	// follows waits until every node of live lists live and holds L/len(live).
	follows := func(what string, limit time.Duration, live ...*hive) time.Duration {
		t.Helper()
		return eventually(t, limit, what, func() (bool, string) {
			for _, h := range live {
				if got := servedList(h); got != list(live...) {
					return false, fmt.Sprintf("%s lists %q, want %q", h.Addr, got, list(live...))
				}
				if got := limitOn(t, h, app); got != share(len(live)) {
					return false, fmt.Sprintf("%s: limit_maxbytes %s, want %s", h.Addr, got, share(len(live)))
				}
			}
			return true, ""
		})
	}
	follows("three nodes", 10*time.Second, nodes...)

	// The CLI on a node's --data prints the live list, through its admin API.
	out, err := exec.Command(testserver.MemhiveBinary(t), "env", "app", "--data", nodes[0].data, "--admin-token", adminToken).Output()
	if err != nil || !strings.Contains(string(out), "MEMCACHIER_SERVERS="+list(nodes...)+"\n") {
		t.Fatalf("memhive env app on n1's --data: %v\n%s", err, out)
	}

	nodes[2].Kill()
	took := follows("n3 killed", 15*time.Second, nodes[0], nodes[1])
	t.Logf("a killed node left the server list after %v", took.Round(time.Millisecond))

	nodes[2] = clusterNode(t, etcd, "n3", nodes[2].data)
	follows("n3 restarted", 10*time.Second, nodes...)

	nodes[1].Stop() // SIGTERM: it leaves before it stops
	took = follows("n2 stopped", 15*time.Second, nodes[0], nodes[2])
	if took > 3*time.Second {
		t.Errorf("a node stopped with SIGTERM left the server list after %v: it should leave at once, not when its lease expires", took)
	}
}
