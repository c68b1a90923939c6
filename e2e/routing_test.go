package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/memcachier/mc/v3"

	"github.com/memhive/memhive/tenancy"
)

// forwardTimeout is the --forward-timeout TestClusterRouting's nodes run
// with, said out loud: the test measures against it. It is five times
// the default: under make test, with other packages' tests on the same
// two cores, a forwarded request now and then waited longer than 100 ms
// for its owner to be scheduled, and a miss in the 30,000 reads was a
// failure.
const forwardTimeout = 500 * time.Millisecond

// forwardSlack is how much longer than forwardTimeout a request for a
// dead owner's key may take to be answered: the scheduling of a loaded,
// shared two-core machine, not the server's own delay.
const forwardSlack = 150 * time.Millisecond

// routeKey and routeValue are the keys the routing test's clients store
// and the values each key holds, the same in Go and in
// testdata/pylibmc_routing.py, so that one client checks what another
// wrote.
func routeKey(prefix string, i int) string   { return fmt.Sprintf("%s-%d", prefix, i) }
func routeValue(prefix string, i int) string { return fmt.Sprintf("%s-value-%d", prefix, i) }

// owners is the key owners as the nodes given compute them: tenancy.Owners
// set with their --node names, which seed the hash, in name order. The
// test's copy says which node must hold each key.
func (c *cluster) owners(nodes ...int) *tenancy.Owners {
	var ns []tenancy.Node
	for _, i := range nodes {
		ns = append(ns, tenancy.Node{Name: c.name(i), Addr: c.addrs(i)})
	}
	o := new(tenancy.Owners)
	o.Set(ns, "")
	return o
}

// ownerOf is the index of the node that o says owns key in cache cacheID.
func (c *cluster) ownerOf(o *tenancy.Owners, cacheID uint32, key string) int {
	n, _ := o.Owner(cacheID, []byte(key))
	for i := range c.nodes {
		if c.name(i) == n.Name {
			return i
		}
	}
	c.t.Fatalf("key %s: owner %+v is no node of the cluster", key, n)
	return -1
}

// statNum is a counter of node i's text stats for l's cache; a counter
// the node does not report fails the test, naming it.
func (c *cluster) statNum(i int, l login, name string) int {
	c.t.Helper()
	v, ok := c.stats(i, l)[name]
	if !ok {
		c.t.Errorf("n%d: no %s in stats", i+1, name)
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.t.Errorf("n%d: stat %s=%q", i+1, name, v)
		return -1
	}
	return n
}

// routedClient is gomemcache given one node only, as a client that takes
// one server is, logged in with the text login on each connection.
func routedClient(addr string, l login) *memcache.Client {
	client := newGomemcache(addr, 8)
	client.DialContext = textLoginDialer(l)
	return client
}

// inParallel runs do(0) .. do(n-1) on workers goroutines and returns how
// many failed and the first few failures: a test of thousands of keys
// reports what went wrong without thousands of lines, and goes on to its
// other parts.
func inParallel(n, workers int, do func(i int) error) (failed int, first []string) {
	var next, bad atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := do(i); err != nil {
					bad.Add(1)
					mu.Lock()
					if len(first) < 5 {
						first = append(first, err.Error())
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return int(bad.Load()), first
}

// pylibmcRouting runs testdata/pylibmc_routing.py (ketama over servers)
// in mode set or get over n keys with prefix, and returns the last line it
// printed, its summary (a warning of the library's may come before).
func pylibmcRouting(t *testing.T, servers string, l login, mode, prefix string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script, _ := filepath.Abs(filepath.Join("testdata", "pylibmc_routing.py"))
	out, err := exec.CommandContext(ctx, systemPython, script, servers, l.Username, l.Password, mode, prefix, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Errorf("pylibmc %s %s: %v\n%s", mode, prefix, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// timedReply is one request of the kill -9 part: which node it went to,
// for which key, what came back and how long it took.
type timedReply struct {
	node  int
	what  string // "get of a dead owner's key", ...
	key   string
	reply string
	took  time.Duration
}

// timedGet sends "get key" on tc and reads the whole answer, returning
// "END" for a miss, the value for a hit, or the error line.
func timedGet(tc *textConn, key string) (string, time.Duration) {
	start := time.Now()
	first := tc.cmd("get " + key + "\r\n")
	if !strings.HasPrefix(first, "VALUE ") {
		return first, time.Since(start)
	}
	value := tc.line()
	if end := tc.line(); end != "END" {
		return fmt.Sprintf("%s, then %q instead of END", value, end), time.Since(start)
	}
	return value, time.Since(start)
}

// timedSet sends "set key 0 0 len" with value on tc and returns the reply line.
func timedSet(tc *textConn, key, value string) (string, time.Duration) {
	start := time.Now()
	reply := tc.cmd(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value))
	return reply, time.Since(start)
}

// TestClusterRouting is issue 15's must-show of server-side routing on a
// cluster of three nodes with --route server: a client given one node
// reaches the whole cluster's memory, every key held by the node
// tenancy.Owners names, read back through another node; clients that hash
// differently (pylibmc's ketama, memcachier/mc's modulo, gomemcache on one
// node) read each other's values; the forwarding counters add up; and a
// node killed with kill -9 costs only its own keys, each failing within
// --forward-timeout, until its lease expires and the survivors own them.
//
// It fails until the forwarding (server.Config.Route) is served: before,
// every node serves what it receives, so n1 holds all 30,000 keys.
func TestClusterRouting(t *testing.T) {
	const keys = 30000
	c := startCluster(t, 3, "--route", "server", "--forward-timeout", forwardTimeout.String())
	created := time.Now()
	l := c.spreadCache(0, "routing", 96)
	c.waitLogin(l, true, created, 0, 1, 2)
	c.waitShare(l, 32<<20, 0, 1, 2)
	all := c.owners(0, 1, 2)
	owned := make([]int, len(c.nodes)) // keys each node owns of the 30,000
	for i := 0; i < keys; i++ {
		owned[c.ownerOf(all, l.CacheID, routeKey("gm", i))]++
	}
	t.Logf("of %d keys, tenancy.Owners gives n1 %d, n2 %d, n3 %d", keys, owned[0], owned[1], owned[2])

	viaA, viaC := routedClient(c.nodes[0].Addr, l), routedClient(c.nodes[2].Addr, l)
	t.Log("--- (a) gomemcache given only n1 stores 30,000 keys; each node holds its owned share; all read back through n3")
	start := time.Now()
	failed, first := inParallel(keys, 8, func(i int) error {
		return viaA.Set(&memcache.Item{Key: routeKey("gm", i), Value: []byte(routeValue("gm", i))})
	})
	if failed > 0 {
		t.Errorf("%d of %d sets through n1 failed, first: %s", failed, keys, strings.Join(first, "; "))
	}
	t.Logf("stored through n1 in %v", time.Since(start))
	c.checkSpread(l, keys, "gomemcache through n1")
	for i := range c.nodes {
		if got := c.statNum(i, l, "curr_items"); got != owned[i] {
			t.Errorf("n%d holds %d items, want the %d keys tenancy.Owners gives it", i+1, got, owned[i])
		}
	}
	start = time.Now()
	failed, first = inParallel(keys, 8, func(i int) error {
		it, err := viaC.Get(routeKey("gm", i))
		switch {
		case err != nil:
			return fmt.Errorf("%s: %v", routeKey("gm", i), err)
		case string(it.Value) != routeValue("gm", i):
			return fmt.Errorf("%s = %q", routeKey("gm", i), it.Value)
		}
		return nil
	})
	if failed > 0 {
		t.Errorf("%d of %d keys did not read back through n3, first: %s", failed, keys, strings.Join(first, "; "))
	}
	t.Logf("read back through n3 in %v", time.Since(start))

	t.Log("--- (d) the forwarding counters add up")
	// n1 forwarded the sets of the keys it does not own, n3 the gets of
	// the keys it does not own, one request each; n2 served no client.
	for i, want := range []int{keys - owned[0], 0, keys - owned[2]} {
		fwd, errs := c.statNum(i, l, "forwarded_requests"), c.statNum(i, l, "forward_errors")
		t.Logf("n%d: forwarded_requests %d, forward_errors %d", i+1, fwd, errs)
		if fwd != want || errs != 0 {
			t.Errorf("n%d: forwarded_requests %d, forward_errors %d; want %d and 0", i+1, fwd, errs, want)
		}
	}
	// A multi-get through n2 splits over the three owners and comes back
	// whole.
	var multi []string
	for i := 0; i < 100; i++ {
		multi = append(multi, routeKey("gm", i*297))
	}
	got, err := routedClient(c.nodes[1].Addr, l).GetMulti(multi)
	if err != nil || len(got) != len(multi) {
		t.Errorf("a multi-get of %d keys through n2: %d items, %v", len(multi), len(got), err)
	}
	for k, it := range got {
		i, _ := strconv.Atoi(strings.TrimPrefix(k, "gm-"))
		if string(it.Value) != routeValue("gm", i) {
			t.Errorf("multi-get through n2: %s = %q", k, it.Value)
		}
	}

	t.Log("--- (b) pylibmc (ketama over all three) and memcachier/mc (modulo over all three) read each other's values")
	const cross = 3000
	mcClient := mc.NewMCwithConfig(c.addrs(), l.Username, l.Password, mc.DefaultConfig())
	defer mcClient.Quit()
	if out := pylibmcRouting(t, c.addrs(), l, "set", "py", cross); out != fmt.Sprintf("%d stored", cross) {
		t.Errorf("pylibmc set printed %q, want %d stored", out, cross)
	}
	failed, first = inParallel(cross, 1, func(i int) error {
		got, _, _, err := mcClient.Get(routeKey("py", i))
		if err != nil || got != routeValue("py", i) {
			return fmt.Errorf("%s = %q, %v", routeKey("py", i), got, err)
		}
		return nil
	})
	if failed > 0 {
		t.Errorf("memcachier/mc missed %d of the %d keys pylibmc wrote, first: %s", failed, cross, strings.Join(first, "; "))
	}
	failed, first = inParallel(cross, 1, func(i int) error {
		_, err := mcClient.Set(routeKey("mc", i), routeValue("mc", i), 0, 0, 0)
		return err
	})
	if failed > 0 {
		t.Errorf("memcachier/mc: %d of %d sets failed, first: %s", failed, cross, strings.Join(first, "; "))
	}
	want := fmt.Sprintf("%d read back, 0 missing, 0 wrong", cross)
	for _, prefix := range []string{"mc", "gm"} { // gm: what gomemcache wrote through n1
		if out := pylibmcRouting(t, c.addrs(), l, "get", prefix, cross); out != want {
			t.Errorf("pylibmc reading what %s wrote printed %q, want %q", map[string]string{"mc": "memcachier/mc", "gm": "gomemcache"}[prefix], out, want)
		}
	}

	t.Log("--- (c) kill -9 of n2: its keys fail within the forward timeout through the survivors, the rest answer; after its lease, the survivors own them")
	const killKeys = 600
	// Few enough requests that, even if each waits the whole timeout
	// (about 1 s in all), both survivors are done before n2's lease runs
	// out and its keys change owner: it may have been renewed up to a
	// third of its 5 s before the kill.
	const tries = 5
	var dead, live []int // of kill-0 .. kill-599, owned by n2 and by the others
	for i := 0; i < killKeys; i++ {
		if c.ownerOf(all, l.CacheID, routeKey("kill", i)) == 1 {
			dead = append(dead, i)
		} else {
			live = append(live, i)
		}
	}
	if len(dead) < 2*tries || len(live) < 2*tries {
		t.Fatalf("of %d keys, n2 owns %d and the others %d: too few to try %d of each on both survivors", killKeys, len(dead), len(live), tries)
	}
	failed, first = inParallel(killKeys, 4, func(i int) error {
		return viaA.Set(&memcache.Item{Key: routeKey("kill", i), Value: []byte(routeValue("kill", i))})
	})
	if failed > 0 {
		t.Errorf("%d of %d sets before the kill failed, first: %s", failed, killKeys, strings.Join(first, "; "))
	}
	// Logged in before the kill: what is timed is the requests alone.
	survivors := []int{0, 2}
	errsBefore := map[int]int{}
	for _, i := range survivors {
		errsBefore[i] = c.statNum(i, l, "forward_errors")
	}
	conns := map[int]*textConn{}
	for _, i := range survivors {
		conns[i] = dialText(t, c.nodes[i].Addr)
		if got := conns[i].asciiLogin(l); got != "STORED" {
			t.Fatalf("n%d: login answered %q", i+1, got)
		}
	}
	c.nodes[1].Kill()
	killed := time.Now()
	var mu sync.Mutex
	var replies []timedReply
	var wg sync.WaitGroup
	for n, i := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := conns[i]
			var mine []timedReply
			for j := 0; j < tries; j++ {
				dk, lk := routeKey("kill", dead[n*tries+j]), routeKey("kill", live[n*tries+j])
				reply, took := timedGet(tc, dk)
				mine = append(mine, timedReply{i, "get of a dead owner's key", dk, reply, took})
				reply, took = timedSet(tc, dk, "after-the-kill")
				mine = append(mine, timedReply{i, "set of a dead owner's key", dk, reply, took})
				reply, took = timedGet(tc, lk)
				mine = append(mine, timedReply{i, "get of a live owner's key", lk, reply, took})
			}
			mu.Lock()
			replies = append(replies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Had n2 left meanwhile, its keys would have had new owners for some
	// of the requests: the survivors must still list it.
	tried := time.Since(killed)
	for _, i := range survivors {
		if got := c.servers(i); got != c.addrs() {
			t.Errorf("n%d dropped n2 (lists %s) within the %v the requests after the kill took: they did not all test a dead owner", i+1, got, tried)
		}
	}
	var slowest time.Duration
	for _, r := range replies {
		slowest = max(slowest, r.took)
		if r.took > forwardTimeout+forwardSlack {
			t.Errorf("n%d: %s %s took %v, want within %v (+%v slack)", r.node+1, r.what, r.key, r.took, forwardTimeout, forwardSlack)
		}
		var ok bool
		switch r.what {
		case "get of a dead owner's key":
			ok = r.reply == "END" // a miss
		case "set of a dead owner's key":
			ok = strings.HasPrefix(r.reply, "SERVER_ERROR")
		default:
			i, _ := strconv.Atoi(strings.TrimPrefix(r.key, "kill-"))
			ok = r.reply == routeValue("kill", i)
		}
		if !ok {
			t.Errorf("n%d: %s %s answered %q", r.node+1, r.what, r.key, r.reply)
		}
	}
	t.Logf("%d requests through the survivors in the %v after the kill, the slowest %v", len(replies), tried, slowest)
	// Each survivor counted the get and the set of every dead owner's key
	// it was asked for as a forward error.
	for _, i := range survivors {
		if got := c.statNum(i, l, "forward_errors") - errsBefore[i]; got < 2*tries {
			t.Errorf("n%d counted %d forward errors for the %d requests of a dead owner's keys", i+1, got, 2*tries)
		}
	}
	for _, i := range survivors {
		c.waitServers(i, c.addrs(0, 2), clusterLeaseTTL+time.Second-time.Since(killed))
	}
	t.Logf("n2 left the server list %v after kill -9", time.Since(killed))
	// The survivors own n2's keys now (the ones tried above and the rest):
	// sets through n1 are stored, gets through n3 find them.
	two := c.owners(0, 2)
	failed, first = inParallel(len(dead), 4, func(j int) error {
		key := routeKey("kill", dead[j])
		if owner := c.ownerOf(two, l.CacheID, key); !slices.Contains(survivors, owner) {
			return fmt.Errorf("%s: owned by n%d of two survivors", key, owner+1)
		}
		value := []byte("owned-again-" + key)
		if err := viaA.Set(&memcache.Item{Key: key, Value: value}); err != nil {
			return fmt.Errorf("set %s through n1: %v", key, err)
		}
		it, err := viaC.Get(key)
		if err != nil || string(it.Value) != string(value) {
			return fmt.Errorf("get %s through n3: %v", key, err)
		}
		return nil
	})
	if failed > 0 {
		t.Errorf("%d of n2's %d keys did not work again after its lease expired, first: %s", failed, len(dead), strings.Join(first, "; "))
	}
	// ... and the keys the survivors owned all along are still there.
	failed, first = inParallel(len(live), 4, func(j int) error {
		key := routeKey("kill", live[j])
		it, err := viaC.Get(key)
		if err != nil || string(it.Value) != routeValue("kill", live[j]) {
			return fmt.Errorf("get %s through n3: %v", key, err)
		}
		return nil
	})
	if failed > 0 {
		t.Errorf("%d of the survivors' %d keys were lost, first: %s", failed, len(live), strings.Join(first, "; "))
	}
}

// TestGracefulStopHandsItemsOver is issue 15's rolling restart: under a
// steady read load of the keys one node owns, through the other two, that
// node is stopped with SIGTERM. It leaves the member list, hands its
// items to their new owners and stops; the reads' hit ratio stays above
// 99%.
func TestGracefulStopHandsItemsOver(t *testing.T) {
	const keys = 3000
	c := startCluster(t, 3, "--route", "server")
	created := time.Now()
	l := c.spreadCache(0, "rolling", 96)
	c.waitLogin(l, true, created, 0, 1, 2)
	viaA := routedClient(c.nodes[0].Addr, l)
	all := c.owners(0, 1, 2)
	var leaving []string // the keys n2 owns
	for i := 0; i < keys; i++ {
		k := routeKey("roll", i)
		if err := viaA.Set(&memcache.Item{Key: k, Value: []byte(routeValue("roll", i))}); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		if c.ownerOf(all, l.CacheID, k) == 1 {
			leaving = append(leaving, k)
		}
	}
	var hits, misses, errs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := routedClient(c.nodes[[]int{0, 2}[w%2]].Addr, l)
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := leaving[i%len(leaving)]
				it, err := client.Get(k)
				switch {
				case err == memcache.ErrCacheMiss:
					misses.Add(1)
				case err != nil:
					errs.Add(1)
				case string(it.Value) != routeValue("roll", mustIndex(k)):
					errs.Add(1)
				default:
					hits.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	before := hits.Load() + misses.Load()
	stopped := time.Now()
	c.nodes[1].Stop() // SIGTERM
	t.Logf("n2 stopped in %v; it logged: %s", time.Since(stopped).Round(time.Millisecond), handOverLine(c.nodes[1].Output()))
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	h, m, e := hits.Load(), misses.Load(), errs.Load()
	ratio := float64(h) / float64(h+m+e)
	t.Logf("reads of n2's %d keys: %d hits, %d misses, %d errors (%d reads before the stop): hit ratio %.4f", len(leaving), h, m, e, before, ratio)
	if ratio <= 0.99 {
		t.Errorf("hit ratio %.4f through a graceful stop, want above 0.99", ratio)
	}
}

// mustIndex is the number at the end of a routeKey.
func mustIndex(key string) int {
	n, _ := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:])
	return n
}

// handOverLine is the line a node logs about its handover, or a note
// that it logged none.
func handOverLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "handed items over") {
			return line
		}
	}
	return "(no handover line)"
}
