package difftest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/bench"
	"github.com/memhive/memhive/internal/etcdtest"
	"github.com/memhive/memhive/internal/testserver"
	"github.com/memhive/memhive/tenancy"
)

// clusterNodes is the number of memhive nodes of TestDifferentialCluster.
const clusterNodes = 3

// clusterForwardTimeout is the nodes' --forward-timeout. The run tests
// what forwarding answers, not how fast: a forwarded request that times
// out is answered as a miss or a server error, which a cache may answer
// but memcached did not, and on a loaded, shared machine a large
// multi-get's forwarded values can take longer than the default 100 ms.
// forward_errors, reported after the run, says whether any did.
const clusterForwardTimeout = 10 * time.Second

// clusterToken is the admin token of the cluster's nodes, whose admin API
// the test asks for the server list each node sees.
const clusterToken = "difftest-cluster-token"

// TestDifferentialCluster is TestDifferential with memhive a cluster of
// three nodes on a real (embedded) etcd, every one with --route server,
// the client connected to the first node only: each node owns about a
// third of the keys, so about two thirds of the requests are forwarded,
// and every reply must still be memcached's (CAS values normalised as in
// TestDifferential). The same variables apply (DIFF_SEED, DIFF_REQUESTS,
// DIFF_CHECK_STATE).
//
// The nodes run with --auth none, as TestDifferential's memhive does: a
// cluster of plain memcacheds in which every connection of every node
// uses the cache "default", each node with its whole --memory, as
// memcached -m 1024 has. The run normalises one thing more than
// TestDifferential (Options.PerNodeStats): the stats replies of a node of
// a cluster count that node's work and hold that node's items, as the
// stats of each server of a memcached pool do, so their counters are
// compared by name only.
func TestDifferentialCluster(t *testing.T) {
	differential(t, "TestDifferentialCluster", Options{PerNodeStats: true}, func() pair {
		p := pair{ref: testserver.StartMemcached(t, memcachedArgs...)}
		p.others = startCluster(t)
		p.a, p.b = Target{Name: "memcached", Addr: p.ref.Addr}, Target{Name: "memhive-cluster", Addr: p.others[0].Addr}
		p.report = func() string { return forwardCounters(p.others) }
		return p
	})
}

// startCluster starts etcd and the nodes n1..n3 on loopback, in that
// order, and waits until each lists all three as the server list, which
// it sets after the owners of the keys (cmd/memhive's member watch): the
// nodes then agree on who owns every key. It logs the share of the
// generator's keys n1, the node the client talks to, owns.
func startCluster(t *testing.T) []*testserver.Server {
	t.Helper()
	etcd := etcdtest.Start(t)
	var nodes []*testserver.Server
	var https, addrs []string
	for i := 0; i < clusterNodes; i++ {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		args := append([]string{"--etcd", etcd.Endpoint(), "--node", fmt.Sprintf("n%d", i+1), "--route", "server",
			"--forward-timeout", clusterForwardTimeout.String(), "--http", httpAddr, "--admin-token", clusterToken}, memhiveArgs...)
		s := testserver.StartMemhive(t, args...)
		nodes, https, addrs = append(nodes, s), append(https, httpAddr), append(addrs, s.Addr)
	}
	want := strings.Join(addrs, ",")
	var cacheID uint32
	for i, h := range https {
		deadline := time.Now().Add(30 * time.Second)
		for {
			info, err := nodeCaches(h)
			if err == nil && len(info) == 1 && info[0].Servers == want {
				cacheID = info[0].CacheID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d does not list the servers %s: %+v, %v\n%s", i+1, want, info, err, nodes[i].Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var ns []tenancy.Node
	for i, a := range addrs {
		ns = append(ns, tenancy.Node{Name: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	o := new(tenancy.Owners)
	o.Set(ns, "n1")
	own := 0
	keys := NewGenerator(1, time.Now()).keys
	for _, k := range keys {
		if _, self := o.Owner(cacheID, []byte(k)); self {
			own++
		}
	}
	t.Logf("difftest: n1 owns %d of the generator's %d keys (%.0f%%); the others are forwarded", own, len(keys), 100*float64(own)/float64(len(keys)))
	return nodes
}

// cacheInfo is what startCluster reads of a cache in the admin API.
type cacheInfo struct {
	CacheID uint32 `json:"cache_id"`
	Servers string `json:"servers"`
}

// nodeCaches is the caches the admin API on httpAddr lists.
func nodeCaches(httpAddr string) ([]cacheInfo, error) {
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/admin/v1/caches", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	var info []cacheInfo
	return info, json.Unmarshal(raw, &info)
}

// forwardCounters reads each node's forwarded_requests and forward_errors
// from its "stats", for the run's summary: how much of the traffic was
// forwarded, and whether a forwarded request failed (an answer that is
// not the owner's). Both count since the traffic's last "stats reset".
func forwardCounters(nodes []*testserver.Server) string {
	var parts []string
	for i, n := range nodes {
		st, err := bench.ServerStats(n.Addr)
		if err != nil {
			parts = append(parts, fmt.Sprintf("n%d: %v", i+1, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("n%d forwarded_requests %d forward_errors %d", i+1, st["forwarded_requests"], st["forward_errors"]))
	}
	return strings.Join(parts, "; ")
}
