package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/memhive/memhive/tenancy"
)

// routingKeys is how many keys T13 reads on each side: owned by the
// serving node, and owned by the other two.
const routingKeys = 30000

// routing is T13 (pipeline 1) and T13b (pipeline 16), memhive only: on
// n1 of a three-node cluster with --route server, T1's connections doing
// only gets, of keys n1 owns (the memcached column) against keys n2 and
// n3 own, which n1 forwards (the memhive column), alternating round by
// round. Both sides read the same number of keys, stored beforehand on
// their owners, so every get hits.
//
// Which keys a node owns is computed here with tenancy.Owners set exactly
// as the nodes set it (their --node names) and the cache's id, as clients
// cannot know it: bench takes the routing package for that one question.
// The CPU each forwarded get costs is the serving node's plus its
// owners', from /proc; an owned get's is the serving node's.
func (c *CompareConfig) routing(ctx context.Context, dir string) ([]Row, error) {
	gets := Workloads()[0].Load
	gets.SetRatio, gets.GetRatio = 0, 1
	p16 := gets
	p16.Pipeline = 16
	rows := []Row{
		{Workload: Workload{ID: "T13", Name: "T1's gets only, on n1 of a three-node cluster with --route server: keys n2 and n3 own, forwarded by n1 (memhive only; the memcached column is keys n1 owns), pipeline 1",
			Target: "p99 <= 2x owned", Load: gets}},
		{Workload: Workload{ID: "T13b", Name: "T13 with pipeline 16",
			Target: "ops >= 0.5x owned", Load: p16}},
	}
	for i := range rows {
		rows[i].Memhive, rows[i].Memc = Measurement{Server: "forwarded"}, Measurement{Server: "owned"}
	}
	share := max(c.MemoryMiB/2, 64)
	bc, err := c.startCluster(filepath.Join(dir, "t13"), c.MemoryMiB, "--auth", "sasl", "--route", "server")
	if err != nil {
		return rows, err
	}
	defer bc.stop()
	login, err := createCache(bc.https[0], clusterToken, "t13", 3*share)
	if err != nil {
		return rows, fmt.Errorf("creating the cache: %w", err)
	}
	cacheID, err := cacheIDOf(bc.https[0], login)
	if err != nil {
		return rows, err
	}
	// Made on n1, the credential reaches n2 and n3 within milliseconds
	// (T12); the prefill logs in on each.
	for n, p := range bc.nodes {
		for deadline := time.Now().Add(10 * time.Second); !saslLogin(p.Addr, login); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return rows, fmt.Errorf("the cache's credential never logged in on n%d", n+1)
			}
		}
	}
	byOwner, owned, forwarded := routingKeySpace(bc, cacheID)
	for n, keys := range byOwner {
		fill := gets
		fill.Addr, fill.Logins, fill.KeyList, fill.Conns = bc.nodes[n].Addr, []Login{login}, keys, 4
		if err := Prefill(ctx, fill); err != nil {
			return rows, fmt.Errorf("prefill of n%d's keys on n%d: %w", n+1, n+1, err)
		}
	}
	c.logf("T13  %d keys owned by n1, %d by n2 and n3, each stored on its owner", len(owned), len(forwarded))
	type side struct {
		m    *Measurement
		keys []string
		cpu  time.Duration // n1's, and with forwarding n2's and n3's, over every round
		own  time.Duration // n1's alone: what bounds a node on a machine of its own
		ops  float64
		miss int64 // gets that missed: every key was stored on its owner
	}
	sides := make([][2]side, len(rows))
	for i := range rows {
		sides[i] = [2]side{{m: &rows[i].Memhive, keys: forwarded}, {m: &rows[i].Memc, keys: owned}}
	}
	serving, owners := bc.nodes[0], bc.nodes[1:]
	for round := 0; round < c.Rounds; round++ {
		for i, row := range rows {
			for j := range sides[i] {
				s := &sides[i][j]
				load := row.Workload.Load
				load.Addr, load.Logins, load.KeyList, load.Duration = serving.Addr, []Login{login}, s.keys, c.Duration
				cpus := []*Proc{serving}
				if s.m == &rows[i].Memhive {
					cpus = append(cpus, owners...)
				}
				cpu0, own0 := cpuOf(cpus...), cpuOf(serving)
				r, err := Run(ctx, load)
				if err != nil {
					return rows, fmt.Errorf("%s %s round %d: %w", row.Workload.ID, s.m.Server, round+1, err)
				}
				s.cpu += cpuOf(cpus...) - cpu0
				s.own += cpuOf(serving) - own0
				s.ops += float64(r.Ops)
				s.miss += r.Misses
				s.m.Ops = append(s.m.Ops, r.OpsSec)
				s.m.P99 = append(s.m.P99, r.P99us)
				s.m.P999 = append(s.m.P999, r.P999us)
				c.logf("%-4s %-9s round %d: %9.0f ops/s  p99 %7.0f µs", row.Workload.ID, s.m.Server, round+1, r.OpsSec, r.P99us)
			}
		}
	}
	perOp := func(d time.Duration, ops float64) float64 { return float64(d.Microseconds()) / ops }
	for i := range rows {
		fw, ow := sides[i][0], sides[i][1]
		_, fOps, _ := stats(fw.m.Ops)
		_, oOps, _ := stats(ow.m.Ops)
		_, fP99, _ := stats(fw.m.P99)
		_, oP99, _ := stats(ow.m.P99)
		rows[i].Note = fmt.Sprintf("forwarded/owned: throughput **%.2f**, p99 **%.2f**; CPU per get: forwarded %.2f µs (n1 plus the owners n2, n3), owned %.2f µs (n1), **%.2f**; n1's own CPU per forwarded get %.2f µs, **%.2f** of an owned one",
			fOps/oOps, fP99/oP99, perOp(fw.cpu, fw.ops), perOp(ow.cpu, ow.ops), perOp(fw.cpu, fw.ops)/perOp(ow.cpu, ow.ops),
			perOp(fw.own, fw.ops), perOp(fw.own, fw.ops)/perOp(ow.own, ow.ops))
		for _, s := range []side{fw, ow} {
			if s.miss > 0 {
				// Stored on their owners, every key should hit: a miss is
				// a get served by a node that does not hold it, not
				// forwarded, which makes the comparison meaningless.
				rows[i].Note += fmt.Sprintf("; **%.0f%% of the %s gets missed**", 100*float64(s.miss)/s.ops, s.m.Server)
			}
		}
		c.logf("%-4s %s", rows[i].Workload.ID, rows[i].Note)
	}
	return rows, nil
}

// routingKeySpace walks T1's key names (key:0, key:1, ...) and sorts them
// by the node that owns them in cache cacheID, as the nodes of bc compute
// it, until routingKeys are owned by n1 and as many by n2 and n3: byOwner
// holds them per node, for the prefill on each owner; owned are n1's, and
// forwarded n2's and n3's interleaved as the names come, so that both
// owners get their share of the forwarded load.
func routingKeySpace(bc *benchCluster, cacheID uint32) (byOwner [][]string, owned, forwarded []string) {
	var o tenancy.Owners
	var nodes []tenancy.Node
	for n, p := range bc.nodes {
		nodes = append(nodes, tenancy.Node{Name: fmt.Sprintf("n%d", n+1), Addr: p.Addr})
	}
	o.Set(nodes, nodes[0].Name)
	byOwner = make([][]string, len(nodes))
	for i := 0; len(owned) < routingKeys || len(forwarded) < routingKeys; i++ {
		key := "key:" + strconv.Itoa(i)
		owner, self := o.Owner(cacheID, []byte(key))
		switch {
		case self && len(owned) < routingKeys:
			owned = append(owned, key)
		case !self && len(forwarded) < routingKeys:
			forwarded = append(forwarded, key)
		default:
			continue
		}
		n, _ := strconv.Atoi(owner.Name[1:])
		byOwner[n-1] = append(byOwner[n-1], key)
	}
	return byOwner, owned, forwarded
}
