package analytics

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// fakeCluster is a control.Cluster whose member list the test sets.
type fakeCluster struct {
	mu      sync.Mutex
	members []control.Member
	secret  string
}

func (c *fakeCluster) Members() []control.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

func (c *fakeCluster) WatchMembers(fn func([]control.Member)) func() {
	fn(c.Members())
	return func() {}
}

func (c *fakeCluster) Secret() string { return c.secret }

func (c *fakeCluster) set(ms []control.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = slices.Clone(ms)
}

// lockedSource is a node's engines, safe to read from the test while the
// node's HTTP server calls it: what crosses a socket is no happens-before
// edge for the race detector.
type lockedSource struct {
	mu      sync.Mutex
	stats   map[uint32]map[string]uint64
	flushed []uint32
}

func (s *lockedSource) CacheIDs() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []uint32
	for id := range s.stats {
		ids = append(ids, id)
	}
	return ids
}

func (s *lockedSource) CacheStats(id uint32) (map[string]uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stats[id]
	return st, ok
}

func (s *lockedSource) Flush(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushed = append(s.flushed, id)
	_, ok := s.stats[id]
	return ok
}

func (s *lockedSource) flushes() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.flushed)
}

// nodeHistory is the shared control store as one node sees it: caches
// and credentials are the cluster's, the stats history is the node's own
// (as the etcd backend keeps it under the node's --data).
type nodeHistory struct {
	control.Store
	samples []control.Sample
}

func (s nodeHistory) History(id uint32, since time.Time) ([]control.Sample, error) {
	var out []control.Sample
	for _, x := range s.samples {
		if x.CacheID == id && !x.Time.Before(since) {
			out = append(out, x)
		}
	}
	return out, nil
}

// clusterNode is one node of a clusterFixture.
type clusterNode struct {
	member control.Member
	source *lockedSource
	api    *API
	srv    *HTTPServer
}

// clusterFixture is three nodes, each an analytics API on its own
// loopback HTTP server, over one control store, the cache of apiFixture
// (id 1, credential "full") split over them.
type clusterFixture struct {
	*apiFixture
	cluster *fakeCluster
	nodes   []*clusterNode
	t0      time.Time
}

const clusterSecret = "cluster-secret-0123456789"

func newCluster(t *testing.T, n int) *clusterFixture {
	t.Helper()
	f := &clusterFixture{apiFixture: newAPI(t), cluster: &fakeCluster{secret: clusterSecret}, t0: time.Now().Add(-30 * time.Minute)}
	var members []control.Member
	for i := 1; i <= n; i++ {
		node := &clusterNode{source: &lockedSource{stats: map[uint32]map[string]uint64{
			1: {"curr_items": uint64(10 * i), "get_hits": uint64(i), "limit_maxbytes": 8 << 20 / uint64(n)},
		}}}
		node.member = control.Member{Name: fmt.Sprintf("node-%d", i), Advertise: fmt.Sprintf("10.0.0.%d:11211", i)}
		// Each node sampled the cache twice, a minute apart, the nodes a
		// few seconds apart from each other.
		store := nodeHistory{Store: f.store}
		for k := 0; k < 2; k++ {
			store.samples = append(store.samples, control.Sample{CacheID: 1, Server: node.member.Advertise,
				Time: f.t0.Add(time.Duration(k)*time.Minute + time.Duration(i)*time.Second), Stats: map[string]uint64{"get_hits": uint64(100*i + k)}})
		}
		node.api = NewAPI(APIConfig{Store: store, Source: node.source, Cluster: f.cluster, Self: node.member, HistoryWindow: time.Hour})
		srv, err := ListenAndServe("127.0.0.1:0", func(ctx *fasthttp.RequestCtx) {
			if !node.api.Handle(ctx) {
				ctx.Error("Not found", fasthttp.StatusNotFound)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		node.srv = srv
		t.Cleanup(func() { srv.Shutdown() })
		node.member.HTTP = srv.Addr()
		members = append(members, node.member)
		f.nodes = append(f.nodes, node)
	}
	f.cluster.set(members)
	return f
}

// get asks node i's analytics API with credential "full".
func (f *clusterFixture) get(i int, method, path string) (int, string) {
	return doWith(f.nodes[i].api.Handle, method, path, f.full, "")
}

// TestClusterStats: any node answers /stats for the whole cluster, one
// entry per node keyed by its Advertise address, each with that node's
// own stats.
func TestClusterStats(t *testing.T) {
	f := newCluster(t, 3)
	want := `{"10.0.0.1:11211":{"curr_items":10,"get_hits":1,"limit_maxbytes":2796202},` +
		`"10.0.0.2:11211":{"curr_items":20,"get_hits":2,"limit_maxbytes":2796202},` +
		`"10.0.0.3:11211":{"curr_items":30,"get_hits":3,"limit_maxbytes":2796202}}` + "\n"
	for i := range f.nodes {
		if status, body := f.get(i, "GET", "/api/v1/1/stats"); status != 200 || body != want {
			t.Fatalf("node %d: %d %s\nwant 200 %s", i+1, status, body, want)
		}
	}
}

// TestClusterNodeFails: a node that is gone, or that accepts and never
// answers, is named in the guide's 500, sorted, within the timeout; once
// it leaves the member list it is no longer asked.
func TestClusterNodeFails(t *testing.T) {
	f := newCluster(t, 3)
	// Node 2 hangs: it accepts connections and never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ms := f.cluster.Members()
	ms[1].HTTP = hung.Addr().String()
	f.cluster.set(ms)
	// Node 3 is gone.
	f.nodes[2].srv.Shutdown()

	// Node 1 with a short timeout, to keep the test quick.
	first := f.nodes[0]
	local := LocalNode{Source: first.source, Name: first.member.Advertise, Store: nodeHistory{Store: f.store}}
	first.api = NewAPI(APIConfig{Store: f.store, Source: first.source, Cluster: f.cluster, Self: first.member, HistoryWindow: time.Hour,
		Nodes: ClusterNodes{Cluster: f.cluster, Self: first.member.Name, Local: local, Timeout: 300 * time.Millisecond, FlushTimeout: 300 * time.Millisecond}})
	const want = `"Server error: 10.0.0.2:11211,10.0.0.3:11211"` + "\n"
	for _, req := range [][2]string{{"GET", "/api/v1/1/stats"}, {"GET", "/api/v1/1/history"}, {"POST", "/api/v1/1/flush"}} {
		start := time.Now()
		status, body := f.get(0, req[0], req[1])
		if status != 500 || body != want {
			t.Fatalf("%s %s: %d %s\nwant 500 %s", req[0], req[1], status, body, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s %s took %v with a timeout of 300ms", req[0], req[1], d)
		}
	}
	// The two leave the cluster: the answer is node 1's alone.
	f.cluster.set(ms[:1])
	if status, body := f.get(0, "GET", "/api/v1/1/stats"); status != 200 || body != `{"10.0.0.1:11211":{"curr_items":10,"get_hits":1,"limit_maxbytes":2796202}}`+"\n" {
		t.Fatalf("after the others left: %d %s", status, body)
	}
}

// TestClusterFlush: /flush on one node answers once every node has
// flushed the cache.
func TestClusterFlush(t *testing.T) {
	f := newCluster(t, 3)
	if status, body := f.get(1, "POST", "/api/v1/1/flush"); status != 200 || body != `""`+"\n" {
		t.Fatalf("flush: %d %s", status, body)
	}
	for i, n := range f.nodes {
		if got := n.source.flushes(); !slices.Equal(got, []uint32{1}) {
			t.Errorf("node %d flushed %v, want [1]", i+1, got)
		}
	}
	// Without the flush capability nothing is flushed anywhere.
	sec := f.auth["sec"]
	if status, _ := doWith(f.nodes[0].api.Handle, "POST", "/api/v1/1/flush", sec, ""); status != 403 {
		t.Fatalf("flush without the capability: %d", status)
	}
	for i, n := range f.nodes {
		if got := n.source.flushes(); len(got) != 1 {
			t.Errorf("node %d flushed %v after a refused flush", i+1, got)
		}
	}
}

// TestClusterHistory: /history merges every node's samples by time, each
// keeping the node that took it as its server.
func TestClusterHistory(t *testing.T) {
	f := newCluster(t, 3)
	status, body := f.get(2, "GET", "/api/v1/1/history")
	var got []historyEntry
	if status != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("history: %d %s", status, body)
	}
	var want []historyEntry
	for k := 0; k < 2; k++ {
		for i := 1; i <= 3; i++ {
			ts := f.t0.Add(time.Duration(k)*time.Minute + time.Duration(i)*time.Second)
			want = append(want, historyEntry{MemcachierID: "1", Server: fmt.Sprintf("10.0.0.%d:11211", i),
				Stats: map[string]uint64{"get_hits": uint64(100*i + k)}, Timestamp: fmt.Sprint(ts.UnixMilli())})
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history:\n got %v\nwant %v", got, want)
	}
}

// TestClusterServers: a cache's servers are the live members' Advertise
// addresses in name order, in the analytics API and the admin API (its
// list and its create answer), and follow the member list.
func TestClusterServers(t *testing.T) {
	f := newCluster(t, 3)
	admin := NewAdmin(AdminConfig{Store: f.store, Token: token, Servers: "ignored:1", Cluster: f.cluster})
	servers := func() (api, show, created string) {
		var info struct{ Servers string }
		_, body := f.get(0, "GET", "/api/v1/1")
		json.Unmarshal([]byte(body), &info)
		api = info.Servers
		_, body = do(admin, "GET", "/admin/v1/caches/1", "Bearer "+token, "")
		info.Servers = ""
		json.Unmarshal([]byte(body), &info)
		show = info.Servers
		_, body = do(admin, "POST", "/admin/v1/caches", "Bearer "+token, fmt.Sprintf(`{"name":"c%d","memory_limit_mb":1}`, time.Now().UnixNano()%1e9))
		info.Servers = ""
		json.Unmarshal([]byte(body), &info)
		return api, show, info.Servers
	}
	ms := f.cluster.Members()
	// Out of order on purpose: the list is in name order whatever comes.
	f.cluster.set([]control.Member{ms[2], ms[0], ms[1]})
	all := "10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211"
	if a, s, c := servers(); a != all || s != all || c != all {
		t.Fatalf("three nodes: API %q, admin %q, created %q; want %q", a, s, c, all)
	}
	f.cluster.set([]control.Member{ms[0], ms[2]})
	two := "10.0.0.1:11211,10.0.0.3:11211"
	if a, s, c := servers(); a != two || s != two || c != two {
		t.Fatalf("node 2 left: API %q, admin %q, created %q; want %q", a, s, c, two)
	}
	// Until a member list is known, a node shows its own address.
	f.cluster.set(nil)
	if a, s, _ := servers(); a != "10.0.0.1:11211" || s != "ignored:1" {
		t.Fatalf("no member list: API %q, admin %q", a, s)
	}
}

// TestClusterEndpointsNeedTheSecret: the internal endpoints refuse, and
// do nothing for, every request without the cluster secret: none, a
// tenant's credential, the admin token, a wrong or empty secret; a node
// whose secret is empty refuses everyone. On a single node they do not
// exist.
func TestClusterEndpointsNeedTheSecret(t *testing.T) {
	f := newCluster(t, 2)
	target := f.nodes[1]
	reqs := [][2]string{
		{"GET", "/cluster/v1/caches/1/stats"},
		{"POST", "/cluster/v1/caches/1/flush"},
		{"GET", "/cluster/v1/caches/1/history?since=0"},
		{"GET", "/cluster/v1/caches/9/stats"},
		{"DELETE", "/cluster/v1/nothing"},
	}
	refused := map[string]int{
		"":                              401,
		f.full:                          401,
		"Bearer " + token:               403,
		"Bearer wrong":                  403,
		"Bearer " + clusterSecret + "x": 403,
		"Bearer " + clusterSecret[1:]:   403,
		"Bearer ":                       401, // an empty token is none: fasthttp trims the header
		clusterSecret:                   401,
	}
	for auth, want := range refused {
		for _, r := range reqs {
			// Over the network, as another node would call.
			status, body := httpDo(t, r[0], "http://"+target.member.HTTP+r[1], auth)
			if status != want || strings.Contains(body, "get_hits") {
				t.Errorf("%q %s %s: %d %s; want %d", auth, r[0], r[1], status, body, want)
			}
		}
	}
	if got := target.source.flushes(); len(got) != 0 {
		t.Fatalf("refused requests flushed %v", got)
	}
	// With the secret, the endpoints answer.
	bearer := "Bearer " + clusterSecret
	if status, body := httpDo(t, "GET", "http://"+target.member.HTTP+"/cluster/v1/caches/1/stats", bearer); status != 200 || !strings.Contains(body, `"get_hits":2`) {
		t.Fatalf("stats with the secret: %d %s", status, body)
	}
	if status, _ := httpDo(t, "POST", "http://"+target.member.HTTP+"/cluster/v1/caches/1/flush", bearer); status != 200 || len(target.source.flushes()) != 1 {
		t.Fatalf("flush with the secret: %d, flushed %v", status, target.source.flushes())
	}
	// A cluster without a secret lets nobody in, an empty bearer included.
	open := NewAPI(APIConfig{Store: f.store, Source: target.source, Cluster: &fakeCluster{}, Self: target.member})
	for _, auth := range []string{"Bearer ", "Bearer x", ""} {
		if status, _ := doWith(open.Handle, "POST", "/cluster/v1/caches/1/flush", auth, ""); status != 401 && status != 403 {
			t.Fatalf("empty secret, %q: %d", auth, status)
		}
	}
	if got := target.source.flushes(); len(got) != 1 {
		t.Fatalf("an empty secret let a flush through: %v", got)
	}
	// A single node has no such endpoints.
	if status, _ := f.apiFixture.do("GET", "/cluster/v1/caches/1/stats", "Bearer "+clusterSecret, ""); status != 0 {
		t.Fatalf("a single node answered an internal endpoint: %d", status)
	}
}

// httpDo makes one request over the network.
func httpDo(t *testing.T, method, url, auth string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

// TestMetricsNodeLabel: in a cluster every series of /metrics carries the
// node's name as its node label; a single node's carry none.
func TestMetricsNodeLabel(t *testing.T) {
	f := newAPI(t)
	for _, nodeName := range []string{"node-2", ""} {
		m := &Metrics{Store: f.store, Source: f.source, Version: "1.6.18-memhive", Public: true, Node: nodeName}
		status, body := doWith(m.Handle, "GET", "/metrics", "", "")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if status != 200 || err != nil {
			t.Fatalf("node %q: %d %v\n%s", nodeName, status, err, body)
		}
		series := 0
		for name, fam := range families {
			for _, mt := range fam.GetMetric() {
				series++
				got, has := "", false
				for _, l := range mt.GetLabel() {
					if l.GetName() == "node" {
						got, has = l.GetValue(), true
					}
				}
				if has != (nodeName != "") || got != nodeName {
					t.Errorf("node %q: a series of %s has node label %q (present %v)", nodeName, name, got, has)
				}
			}
		}
		if series < 10 {
			t.Fatalf("node %q: only %d series", nodeName, series)
		}
	}
}
