package tenancy

import (
	"fmt"
	"testing"
)

func nodes(names ...string) []Node {
	var ns []Node
	for i, n := range names {
		ns = append(ns, Node{Name: n, Addr: fmt.Sprintf("127.0.0.1:%d", 11211+i)})
	}
	return ns
}

// TestOwnersSpreadKeysEvenly: three nodes each own close to a third of a
// cache's keys, and every node computes the same owner for every key.
func TestOwnersSpreadKeysEvenly(t *testing.T) {
	const keys = 30000
	var views [3]Owners
	all := nodes("n1", "n2", "n3")
	for i := range views {
		views[i].Set(all, all[i].Name)
	}
	count := map[string]int{}
	for k := 0; k < keys; k++ {
		key := []byte(fmt.Sprintf("key-%d", k))
		owner, _ := views[0].Owner(7, key)
		count[owner.Name]++
		for i := range views {
			o, self := views[i].Owner(7, key)
			if o != owner || self != (owner.Name == all[i].Name) {
				t.Fatalf("%s: n%d says %v (self %v), n1 says %v", key, i+1, o, self, owner)
			}
		}
	}
	for _, n := range all {
		share := float64(count[n.Name]) / keys
		if share < 0.31 || share > 0.355 {
			t.Errorf("%s owns %.1f%% of the keys, want about a third", n.Name, 100*share)
		}
	}
}

// TestOwnersMoveOnlyTheLeaversKeys: when a node leaves, only the keys it
// owned change owner; when one joins, only about 1/N of the keys move,
// all to it.
func TestOwnersMoveOnlyTheLeaversKeys(t *testing.T) {
	const keys = 30000
	var three, two, four Owners
	three.Set(nodes("n1", "n2", "n3"), "n1")
	two.Set([]Node{nodes("n1", "n2", "n3")[0], nodes("n1", "n2", "n3")[2]}, "n1")
	four.Set(nodes("n1", "n2", "n3", "n4"), "n1")
	moved, gained := 0, 0
	for k := 0; k < keys; k++ {
		key := []byte(fmt.Sprintf("key-%d", k))
		before, _ := three.Owner(1, key)
		after, _ := two.Owner(1, key)
		if before != after {
			moved++
			if before.Name != "n2" {
				t.Fatalf("%s moved from %s to %s when n2 left", key, before.Name, after.Name)
			}
		}
		joined, _ := four.Owner(1, key)
		if joined != before {
			gained++
			if joined.Name != "n4" {
				t.Fatalf("%s moved from %s to %s when n4 joined", key, before.Name, joined.Name)
			}
		}
	}
	if share := float64(gained) / keys; share < 0.22 || share > 0.28 {
		t.Errorf("a fourth node took %.1f%% of the keys, want about a quarter", 100*share)
	}
	t.Logf("n2 leaving moved %d keys; n4 joining moved %d", moved, gained)
}

// TestOwnersWithoutNodes: no table, or this node alone, owns everything;
// a node that is not a member owns nothing.
func TestOwnersWithoutNodes(t *testing.T) {
	var o Owners
	if _, self := o.Owner(1, []byte("k")); !self {
		t.Error("an empty Owners does not own a key")
	}
	o.Set(nodes("n1"), "n1")
	if _, self := o.Owner(1, []byte("k")); !self || len(o.Others()) != 0 {
		t.Error("a single node does not own a key, or has others")
	}
	o.Set(nodes("n1", "n2"), "n9")
	for k := 0; k < 100; k++ {
		if _, self := o.Owner(1, []byte(fmt.Sprint(k))); self {
			t.Fatal("a node outside the members owns a key")
		}
	}
	if got := len(o.Others()); got != 2 {
		t.Errorf("a non-member has %d others, want 2", got)
	}
}

// TestCachesSpreadApart: the same key of two caches does not always land
// on the same node.
func TestCachesSpreadApart(t *testing.T) {
	var o Owners
	o.Set(nodes("n1", "n2", "n3"), "n1")
	same := 0
	for k := 0; k < 3000; k++ {
		key := []byte(fmt.Sprint(k))
		a, _ := o.Owner(1, key)
		b, _ := o.Owner(2, key)
		if a == b {
			same++
		}
	}
	if same > 1300 || same < 700 {
		t.Errorf("%d of 3000 keys have the same owner in two caches, want about a third", same)
	}
}

func BenchmarkOwner(b *testing.B) {
	var o Owners
	o.Set(nodes("n1", "n2", "n3"), "n1")
	key := []byte("memtier-1234567")
	b.ReportAllocs()
	for b.Loop() {
		o.Owner(1, key)
	}
}
