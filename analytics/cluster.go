package analytics

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// In a cluster a cache's memory, and so its items, stats and history, are
// split over the live nodes, and the analytics API on any node answers for
// all of them: ClusterNodes asks every member, this node directly and the
// others over HTTP at the internal endpoints below, which every node of a
// cluster serves to the other nodes only (they carry the cluster secret).
//
//	GET  /cluster/v1/caches/{id}/stats                this node's stats of the cache
//	POST /cluster/v1/caches/{id}/flush                flush the cache on this node
//	GET  /cluster/v1/caches/{id}/history?since=NANOS  this node's samples since then
//
// Each answers 200 with JSON (a stats object, "", an array of
// control.Sample) or an error object; the caller counts anything but 200
// as the node failing.
//
// A node turns cluster mode on with its control.Cluster (the etcd
// backend) and its own control.Member, nothing else:
//
//	APIConfig{..., Cluster: etcd, Self: self}    // fan-out, servers, internal endpoints
//	AdminConfig{..., Cluster: etcd}              // servers follow the members
//	Metrics{..., Node: self.Name}                // a node label on every series
//	StartSampler(store, tenants, self.Advertise, ...) // samples name the node as the API keys it
//
// Leaving them unset (nil, "") is a single node, exactly as before.
const clusterPrefix = "/cluster/v1/"

// DefaultFlushTimeout bounds how long ClusterNodes waits for another node
// to flush a cache when its FlushTimeout is zero: longer than for stats,
// since a flush reported failed that then completes would mislead, but
// bounded, so that a dead node costs an error rather than a hung request.
const DefaultFlushTimeout = 30 * time.Second

// clusterClient is the HTTP client of a ClusterNodes without one of its
// own. Its limits keep one slow node from holding many connections.
var clusterClient = &fasthttp.Client{
	Name:                "memhive-cluster",
	MaxConnsPerHost:     64,
	MaxIdleConnDuration: time.Minute,
	ReadTimeout:         DefaultFlushTimeout,
	WriteTimeout:        DefaultFlushTimeout,
}

// ClusterNodes is Nodes for a node of a cluster: every call asks every
// live member of Cluster concurrently, this node through Local and the
// others over HTTP (the internal endpoints, with Cluster's secret), each
// bounded by a timeout, and keys answers and failures by the member's
// Advertise address (its memcache host:port, as MemCachier's API names
// servers). A member that fails, times out or cannot be reached is named
// in failed. The members are those Cluster lists at the call: a node that
// joins is asked from then on, one that leaves no longer is. Until the
// list is known (it is empty), this node answers alone.
//
// The zero values of Client, Timeout and FlushTimeout are defaults, so a
// ClusterNodes is a plain value, safe for concurrent use.
type ClusterNodes struct {
	Cluster control.Cluster
	// Self is this node's member Name: that member is answered by Local,
	// without a request to itself.
	Self string
	// Local answers for this node; its Name is replaced by the member's
	// Advertise address.
	Local LocalNode
	// Client makes the requests to the other nodes; nil means a shared
	// default client.
	Client *fasthttp.Client
	// Timeout bounds each node's stats and history; zero means
	// DefaultStatsTimeout.
	Timeout time.Duration
	// FlushTimeout bounds each other node's flush; zero means
	// DefaultFlushTimeout.
	FlushTimeout time.Duration
}

// members is the live members to ask, in name order: this node alone
// while the cluster has listed none.
func (c ClusterNodes) members() []control.Member {
	ms := c.Cluster.Members()
	if len(ms) == 0 {
		return []control.Member{{Name: c.Self, Advertise: c.Local.Name}}
	}
	return ms
}

func (c ClusterNodes) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultStatsTimeout
}

func (c ClusterNodes) flushTimeout() time.Duration {
	if c.FlushTimeout > 0 {
		return c.FlushTimeout
	}
	return DefaultFlushTimeout
}

// local is Local answering as member m.
func (c ClusterNodes) local(m control.Member) LocalNode {
	l := c.Local
	l.Name = m.Advertise
	if l.Timeout <= 0 {
		l.Timeout = c.timeout()
	}
	return l
}

// fanOut runs ask for each of members at once and waits for them all;
// ask reports whether its member answered. failed lists, sorted, the
// Advertise addresses of those that did not.
func fanOut(members []control.Member, ask func(i int, m control.Member) bool) (failed []string) {
	ok := make([]bool, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i] = ask(i, m)
		}()
	}
	wg.Wait()
	for i, m := range members {
		if !ok[i] {
			failed = append(failed, m.Advertise)
		}
	}
	sort.Strings(failed)
	return failed
}

// Stats implements Nodes: one entry per member that answered.
func (c ClusterNodes) Stats(id uint32) (map[string]map[string]uint64, []string) {
	members := c.members()
	answers := make([]map[string]uint64, len(members))
	failed := fanOut(members, func(i int, m control.Member) bool {
		if m.Name == c.Self {
			byNode, failed := c.local(m).Stats(id)
			answers[i] = byNode[m.Advertise]
			return len(failed) == 0
		}
		var st map[string]uint64
		if !c.call(m, "GET", c.cachePath(id, "stats"), c.timeout(), &st) {
			return false
		}
		answers[i] = st
		return true
	})
	byNode := map[string]map[string]uint64{}
	for i, m := range members {
		if answers[i] != nil {
			byNode[m.Advertise] = answers[i]
		}
	}
	if len(failed) > 0 && len(byNode) == 0 {
		byNode = nil
	}
	return byNode, failed
}

// Flush implements Nodes: it returns once every member has flushed the
// cache or been given up on.
func (c ClusterNodes) Flush(id uint32) []string {
	return fanOut(c.members(), func(_ int, m control.Member) bool {
		if m.Name == c.Self {
			return len(c.local(m).Flush(id)) == 0
		}
		return c.call(m, "POST", c.cachePath(id, "flush"), c.flushTimeout(), nil)
	})
}

// History implements Nodes: every member's samples merged, oldest first,
// each keeping the Server its node gave it.
func (c ClusterNodes) History(id uint32, since time.Time) ([]control.Sample, []string) {
	var mu sync.Mutex
	var all []control.Sample
	failed := fanOut(c.members(), func(_ int, m control.Member) bool {
		var samples []control.Sample
		if m.Name == c.Self {
			var failed []string
			if samples, failed = c.local(m).History(id, since); len(failed) > 0 {
				return false
			}
		} else if !c.call(m, "GET", c.cachePath(id, "history")+"?since="+strconv.FormatInt(since.UnixNano(), 10), c.timeout(), &samples) {
			return false
		}
		mu.Lock()
		all = append(all, samples...)
		mu.Unlock()
		return true
	})
	sortSamples(all)
	return all, failed
}

func (ClusterNodes) cachePath(id uint32, action string) string {
	return clusterPrefix + "caches/" + strconv.FormatUint(uint64(id), 10) + "/" + action
}

// call asks member m at path on its HTTP address, with the cluster
// secret, waiting at most timeout, and decodes a 200 answer into out (nil:
// the answer is not read). Whatever else happens is m failing; the reason
// goes to the log, since the API's answer only names m.
func (c ClusterNodes) call(m control.Member, method, path string, timeout time.Duration, out any) bool {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + m.HTTP + path)
	req.Header.Set("Authorization", "Bearer "+c.Cluster.Secret())
	client := c.Client
	if client == nil {
		client = clusterClient
	}
	err := client.DoTimeout(req, resp, timeout)
	if err == nil && resp.StatusCode() != fasthttp.StatusOK {
		err = fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	if err == nil && out != nil {
		err = json.Unmarshal(resp.Body(), out)
	}
	if err != nil {
		c.Local.logger().Warn("asking a cluster node", "node", m.Name, "http", m.HTTP, "path", path, "err", err)
		return false
	}
	return true
}

// ServerList is the servers string of a cluster's caches: the members'
// Advertise addresses in name order, comma-separated, as clients take
// MEMCACHIER_SERVERS.
func ServerList(members []control.Member) string {
	ms := append([]control.Member(nil), members...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	addrs := make([]string, 0, len(ms))
	for _, m := range ms {
		addrs = append(addrs, m.Advertise)
	}
	return strings.Join(addrs, ",")
}

// clusterServers is the live server list of cluster, or fallback while
// it lists no member (etcd not reached yet).
func clusterServers(cluster control.Cluster, fallback string) string {
	if s := ServerList(cluster.Members()); s != "" {
		return s
	}
	return fallback
}

// peerEndpoints serves the internal endpoints (clusterPrefix) to the
// other nodes of a cluster, from local: only to requests that carry the
// cluster secret, so that nothing outside the cluster can read a cache's
// stats or flush it this way.
type peerEndpoints struct {
	cluster control.Cluster
	local   LocalNode
}

// handle answers a request whose path is under clusterPrefix. A request
// without a bearer token is 401, one with any other token than the
// cluster's secret (or while the secret is empty) 403; either is
// refused before its path is even read, so it does nothing.
func (p peerEndpoints) handle(ctx *fasthttp.RequestCtx, rest string) {
	auth := string(ctx.Request.Header.Peek("Authorization"))
	if !strings.HasPrefix(auth, "Bearer ") {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="memhive cluster"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "the cluster secret is required")
		return
	}
	if !bearerOK(ctx, p.cluster.Secret()) {
		writeError(ctx, fasthttp.StatusForbidden, "wrong cluster secret")
		return
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	if len(parts) != 3 || parts[0] != "caches" {
		writeError(ctx, fasthttp.StatusNotFound, "Not found.")
		return
	}
	id, err := parseID(parts[1])
	if err != nil {
		writeError(ctx, fasthttp.StatusNotFound, "No cache found.")
		return
	}
	method := string(ctx.Method())
	switch {
	case parts[2] == "stats" && method == "GET":
		byNode, failed := p.local.Stats(id)
		if len(failed) > 0 {
			writeError(ctx, fasthttp.StatusInternalServerError, "stats not gathered")
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, byNode[p.local.Name])
	case parts[2] == "flush" && method == "POST":
		if len(p.local.Flush(id)) > 0 {
			writeError(ctx, fasthttp.StatusInternalServerError, "not flushed")
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, "")
	case parts[2] == "history" && method == "GET":
		ns, err := strconv.ParseInt(string(ctx.QueryArgs().Peek("since")), 10, 64)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "since must be unix nanoseconds")
			return
		}
		samples, failed := p.local.History(id, time.Unix(0, ns))
		if len(failed) > 0 {
			writeError(ctx, fasthttp.StatusInternalServerError, "history not read")
			return
		}
		if samples == nil {
			samples = []control.Sample{}
		}
		writeJSON(ctx, fasthttp.StatusOK, samples)
	case parts[2] == "stats" || parts[2] == "flush" || parts[2] == "history":
		methodNotAllowed(ctx)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "Not found.")
	}
}
