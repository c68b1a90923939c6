package tenancy

import (
	"sync/atomic"

	"github.com/dgryski/go-farm"
)

// Node is one live node of a cluster as routing sees it: its name (the
// order of the server list, and the seed of its share of the keys) and
// the memcache address its peers forward requests to.
type Node struct {
	Name string
	Addr string
}

// Owners decides which node of a cluster owns each key of each cache, by
// rendezvous (highest random weight) hashing: every node scores the key,
// and the highest score owns it. Rendezvous rather than a ketama ring
// because a cluster has a handful of nodes: scoring each of them costs a
// few multiplications per key, needs no ring of virtual points to keep
// the shares even (each node's share is exactly 1/N in expectation, with
// the spread of a fair draw), and when a node joins or leaves only the
// keys it wins or held move, about 1/N of them. The cache id is part of
// the score, so one cache's hot keys do not all land where another's do.
//
// The zero Owners has no nodes: this node owns every key. Safe for
// concurrent use: Set swaps a new table in, and lookups read whichever
// table they find, without locks.
type Owners struct {
	table atomic.Pointer[ownerTable]
}

type ownerTable struct {
	nodes []Node
	seeds []uint64 // seeds[i] is nodes[i].Name's hash
	self  int      // index of this node in nodes, -1 if it is not a member
}

// Set makes nodes, in the cluster's order, the owners from now on; self
// is this node's name. A node not (or no longer) among them owns nothing,
// and forwards every key.
func (o *Owners) Set(nodes []Node, self string) {
	t := &ownerTable{nodes: append([]Node(nil), nodes...), seeds: make([]uint64, len(nodes)), self: -1}
	for i, n := range t.nodes {
		t.seeds[i] = farm.Hash64WithSeed([]byte(n.Name), 0x6f776e657273) // "owners"
		if n.Name == self {
			t.self = i
		}
	}
	o.table.Store(t)
}

// Owner returns the node that owns key in cache cacheID, and whether it
// is this node. With no nodes set, or only this one, it is this node.
func (o *Owners) Owner(cacheID uint32, key []byte) (owner Node, self bool) {
	t := o.table.Load()
	if t == nil || len(t.nodes) == 0 {
		return Node{}, true
	}
	best := t.best(cacheID, farm.Hash64WithSeed(key, 0))
	return t.nodes[best], best == t.self
}

// best is the index of the node with the highest score for a key hash.
func (t *ownerTable) best(cacheID uint32, keyHash uint64) int {
	h := keyHash ^ uint64(cacheID)*0x9e3779b97f4a7c15
	best, bestScore := 0, uint64(0)
	for i, seed := range t.seeds {
		if s := mix64(h ^ seed); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// Others returns every node but this one, in the cluster's order: where
// a command for the whole cache (flush_all) goes besides this node.
func (o *Owners) Others() []Node {
	t := o.table.Load()
	if t == nil {
		return nil
	}
	others := make([]Node, 0, len(t.nodes))
	for i, n := range t.nodes {
		if i != t.self {
			others = append(others, n)
		}
	}
	return others
}

// Nodes returns the owners, in the cluster's order.
func (o *Owners) Nodes() []Node {
	t := o.table.Load()
	if t == nil {
		return nil
	}
	return append([]Node(nil), t.nodes...)
}

// mix64 is SplitMix64's finaliser: it spreads every bit of its input over
// the whole output, so that scores of one key under different seeds are
// independent draws.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
