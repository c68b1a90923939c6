package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/memhive/memhive/internal/procstat"
)

// EtcdBinary is Debian's etcd (package etcd-server), which tools/
// install-deps.sh installs: the cluster workloads run a real etcd.
const EtcdBinary = "/usr/bin/etcd"

// clusterToken is the admin token of the cluster workloads' nodes.
const clusterToken = "bench-token"

// startEtcd starts a one-member etcd on loopback with its data in dir.
func startEtcd(dir string) (*Proc, string, error) {
	if _, err := exec.LookPath(EtcdBinary); err != nil {
		return nil, "", fmt.Errorf("%s is missing (Debian's etcd-server; run tools/install-deps.sh): %w", EtcdBinary, err)
	}
	client, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	peer, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	os.RemoveAll(dir)
	argv := []string{EtcdBinary, "--name", "bench", "--data-dir", dir,
		"--listen-client-urls", "http://" + client, "--advertise-client-urls", "http://" + client,
		"--listen-peer-urls", "http://" + peer, "--initial-advertise-peer-urls", "http://" + peer,
		"--initial-cluster", "bench=http://" + peer,
		"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"}
	p, err := StartProc("etcd", client, argv, nil)
	return p, "http://" + client, err
}

// benchCluster is etcd and three memhive nodes, n1..n3.
type benchCluster struct {
	etcd  *Proc
	nodes []*Proc
	https []string
}

func (bc *benchCluster) stop() {
	for _, p := range bc.nodes {
		p.Stop()
	}
	if bc.etcd != nil {
		bc.etcd.Stop()
	}
}

// startCluster starts etcd and three nodes with extra flags each, and
// waits until the first lists all three as its servers.
func (c *CompareConfig) startCluster(dir string, memoryMiB int, extra ...string) (*benchCluster, error) {
	bc := &benchCluster{}
	var err error
	var endpoint string
	if bc.etcd, endpoint, err = startEtcd(filepath.Join(dir, "etcd")); err != nil {
		return nil, err
	}
	var addrs []string
	for i := 1; i <= 3; i++ {
		args := append([]string{"--etcd", endpoint, "--node", fmt.Sprintf("n%d", i), "--admin-token", clusterToken}, extra...)
		p, httpAddr, err := c.memhiveWithHTTP(filepath.Join(dir, fmt.Sprintf("n%d", i)), memoryMiB, args...)
		if err != nil {
			bc.stop()
			return nil, err
		}
		bc.nodes = append(bc.nodes, p)
		bc.https = append(bc.https, httpAddr)
		addrs = append(addrs, p.Addr)
	}
	want := strings.Join(addrs, ",")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, err := clusterServers(bc.https[0])
		if err == nil && got == want {
			return bc, nil
		}
		if time.Now().After(deadline) {
			bc.stop()
			return nil, fmt.Errorf("n1 lists servers %q (%v), want %q", got, err, want)
		}
	}
}

// clusterServers is the server list a node's admin API gives its caches.
func clusterServers(httpAddr string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/admin/v1/caches", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var caches []struct {
		Servers string `json:"servers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&caches); err != nil || len(caches) == 0 {
		return "", fmt.Errorf("status %d, %d caches, %v", resp.StatusCode, len(caches), err)
	}
	return caches[0].Servers, nil
}

// clusterNode is T11: T1 against one node of a three-node cluster (etcd,
// membership and the control plane's watches running; --route client, so
// that the node serves every key it receives) against T1 on a single
// node, alternating. A cluster node serves only in SASL mode, so
// both sides do, every connection logged in with the text login, and each
// holds the same memory for the cache: the cluster's limit is three times
// the single node's, split over three.
func (c *CompareConfig) clusterNode(ctx context.Context, dir string) (Row, error) {
	w := Workload{ID: "T11", Name: "T1 against one node of a three-node cluster, text login on every connection (memhive only; the memcached column is a single memhive node, logged in the same way)",
		Target: "ops >= 0.97x a single node", Load: Workloads()[0].Load, Prefill: 100000}
	row := Row{Workload: w, Memhive: Measurement{Server: "cluster node"}, Memc: Measurement{Server: "single node"}}
	share := max(c.MemoryMiB/2, 64)
	// --route client: T11 is the price of being a member, not of
	// forwarding (T13); with --route server two thirds of its keys would
	// be forwarded.
	bc, err := c.startCluster(filepath.Join(dir, "t11"), c.MemoryMiB, "--auth", "sasl", "--route", "client")
	if err != nil {
		return row, err
	}
	defer bc.stop()
	inCluster, err := createCache(bc.https[0], clusterToken, "t11", 3*share)
	if err != nil {
		return row, fmt.Errorf("creating the cluster's cache: %w", err)
	}
	single, singleHTTP, err := c.memhiveWithHTTP(filepath.Join(dir, "t11-single"), c.MemoryMiB, "--auth", "sasl", "--admin-token", clusterToken, "--overcommit")
	if err != nil {
		return row, err
	}
	defer single.Stop()
	alone, err := createCache(singleHTTP, clusterToken, "t11", share)
	if err != nil {
		return row, fmt.Errorf("creating the single node's cache: %w", err)
	}
	// A credential made on n1 logs in on n1 as soon as it is answered.
	// Throughput on this shared machine swings by ±10% between rounds, so
	// the CPU each request costs the serving process is measured too, and
	// the CPU the rest of the cluster (n2, n3, etcd) burns meanwhile: the
	// price of running a cluster's idle members on the load's machine,
	// which a real cluster runs elsewhere.
	sides := []struct {
		m      *Measurement
		addr   string
		login  Login
		server *Proc
		others []*Proc
		cpu    time.Duration // the serving process's, over every round
		rest   time.Duration // the others', over every round
		ops    float64
	}{
		{m: &row.Memhive, addr: bc.nodes[0].Addr, login: inCluster, server: bc.nodes[0], others: []*Proc{bc.nodes[1], bc.nodes[2], bc.etcd}},
		{m: &row.Memc, addr: single.Addr, login: alone, server: single},
	}
	for _, s := range sides {
		pre := w.Load
		pre.Addr, pre.Keys, pre.Logins = s.addr, w.Prefill, []Login{s.login}
		if err := Prefill(ctx, pre); err != nil {
			return row, fmt.Errorf("prefill %s: %w", s.m.Server, err)
		}
	}
	for round := 0; round < c.Rounds; round++ {
		for i := range sides {
			s := &sides[i]
			load := w.Load
			load.Addr, load.Duration, load.Logins = s.addr, c.Duration, []Login{s.login}
			cpu0, rest0 := cpuOf(s.server), cpuOf(s.others...)
			r, err := Run(ctx, load)
			if err != nil {
				return row, fmt.Errorf("%s round %d: %w", s.m.Server, round+1, err)
			}
			s.cpu += cpuOf(s.server) - cpu0
			s.rest += cpuOf(s.others...) - rest0
			s.ops += float64(r.Ops)
			s.m.Ops = append(s.m.Ops, r.OpsSec)
			s.m.P99 = append(s.m.P99, r.P99us)
			s.m.P999 = append(s.m.P999, r.P999us)
			c.logf("T11  %-12s round %d: %9.0f ops/s  p99 %7.0f µs", s.m.Server, round+1, r.OpsSec, r.P99us)
		}
	}
	perOp := func(d time.Duration, ops float64) float64 { return float64(d.Microseconds()) / ops }
	cl, si := sides[0], sides[1]
	row.Note = fmt.Sprintf("CPU per request of the serving process: cluster node %.2f µs, single node %.2f µs (**%.2f**); n2, n3 and etcd meanwhile: %.1f%% of one core",
		perOp(cl.cpu, cl.ops), perOp(si.cpu, si.ops), perOp(cl.cpu, cl.ops)/perOp(si.cpu, si.ops),
		100*cl.rest.Seconds()/(float64(c.Rounds)*c.Duration.Seconds()))
	c.logf("T11  %s", row.Note)
	return row, nil
}

// cpuOf is the CPU time the processes have used so far (0 for one gone).
func cpuOf(procs ...*Proc) time.Duration {
	var sum time.Duration
	for _, p := range procs {
		d, _ := procstat.CPUTime(p.Pid)
		sum += d
	}
	return sum
}

// propagationChanges is how many credentials T12 creates.
const propagationChanges = 100

// propagation is T12: how long a control change takes to be in force on
// all three nodes of a cluster. A credential is created through n1's
// admin API; the clock runs from the request until a SASL login with it
// succeeds on every node, each polled every millisecond.
func (c *CompareConfig) propagation(dir string) (Row, error) {
	w := Workload{ID: "T12", Name: fmt.Sprintf("control-change propagation: a credential created on n1 until it logs in on all three nodes, %d changes (memhive only)", propagationChanges),
		Target: "p99 <= 1 s"}
	row := Row{Workload: w, Memhive: Measurement{Server: "cluster"}}
	// Polls are failed logins until the change arrives: no limit on them.
	bc, err := c.startCluster(filepath.Join(dir, "t12"), 256, "--auth", "sasl", "--auth-fail-limit", "0")
	if err != nil {
		return row, err
	}
	defer bc.stop()
	first, err := createCache(bc.https[0], clusterToken, "t12", 32)
	if err != nil {
		return row, err
	}
	cacheID, err := cacheIDOf(bc.https[0], first)
	if err != nil {
		return row, err
	}
	for i := 0; i < propagationChanges; i++ {
		start := time.Now()
		l, err := createCredential(bc.https[0], cacheID)
		if err != nil {
			return row, fmt.Errorf("change %d: %w", i, err)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(bc.nodes))
		for n, p := range bc.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for deadline := start.Add(10 * time.Second); !saslLogin(p.Addr, l); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						errs[n] = fmt.Errorf("change %d: %s never logged in on n%d", i, l.Username, n+1)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return row, err
			}
		}
		row.Memhive.P99 = append(row.Memhive.P99, float64(time.Since(start).Microseconds()))
	}
	lat := append([]float64(nil), row.Memhive.P99...)
	sort.Float64s(lat)
	row.Note = fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		lat[len(lat)/2]/1000, lat[len(lat)*99/100]/1000, lat[len(lat)-1]/1000)
	c.logf("T12  %s", row.Note)
	return row, nil
}

// cacheIDOf asks the analytics API which cache a credential belongs to.
func cacheIDOf(httpAddr string, l Login) (uint32, error) {
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/api/v1/login", nil)
	req.SetBasicAuth(l.Username, l.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		CacheID uint32 `json:"cache_id"`
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/api/v1/login: status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.CacheID, err
}

// createCredential adds a credential to a cache through the admin API.
func createCredential(httpAddr string, cacheID uint32) (Login, error) {
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/admin/v1/caches/%d/credentials", httpAddr, cacheID),
		strings.NewReader(`{"write":true,"flush":true,"api":true}`))
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Login{}, err
	}
	defer resp.Body.Close()
	var out struct{ Username, Password string }
	if resp.StatusCode != 201 {
		b, _ := io.ReadAll(resp.Body)
		return Login{}, fmt.Errorf("creating a credential: status %d: %s", resp.StatusCode, b)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return Login{out.Username, out.Password}, err
}

// saslLogin reports whether l logs in over binary SASL PLAIN at addr.
func saslLogin(addr string, l Login) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	mech, value := "PLAIN", "\x00"+l.Username+"\x00"+l.Password
	req := binHeader(nil, 0x21, len(mech), 0, len(mech)+len(value), 0)
	req = append(append(req, mech...), value...)
	if _, err := conn.Write(req); err != nil {
		return false
	}
	reply := make([]byte, 24)
	if _, err := io.ReadFull(conn, reply); err != nil {
		return false
	}
	return reply[0] == 0x81 && binary.BigEndian.Uint16(reply[6:]) == 0
}
