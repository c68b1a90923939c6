package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/memhive/memhive/tenancy"
)

// TestHandOverMovesItemsToTheirNewOwners: node n0 leaves a cluster of
// three; its items reach n1 and n2 (whichever owns each once n0 is gone),
// with their flags, a key the new owner already holds keeps its newer
// value, and every item can then be read through any node.
func TestHandOverMovesItemsToTheirNewOwners(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	leaving := nodes[0]
	c := dialText(t, leaving.addr, "alice", "ecila")
	const items = 600
	for i := 0; i < items; i++ {
		k := fmt.Sprintf("ho-%d", i)
		if got := c.roundTrip(fmt.Sprintf("set %s %d 0 %d\r\n%s\r\n", k, i, len(k), k), "\r\n"); got != "STORED\r\n" {
			t.Fatalf("set %s: %q", k, got)
		}
	}
	// The cluster as it will be without n0.
	var rest []tenancy.Node
	for _, n := range nodes[1:] {
		rest = append(rest, tenancy.Node{Name: n.name, Addr: n.addr})
	}
	after := &tenancy.Owners{}
	after.Set(rest, leaving.name)
	for _, n := range nodes[1:] {
		n.owners.Set(rest, n.name)
	}
	// A newer value already on its new owner must survive.
	newer := ""
	for i := 0; i < items && newer == ""; i++ {
		k := fmt.Sprintf("ho-%d", i)
		if o, _ := after.Owner(1, []byte(k)); o.Name == nodes[1].name {
			if owned, _ := leaving.owners.Owner(1, []byte(k)); owned.Name == leaving.name {
				newer = k
			}
		}
	}
	direct := dialText(t, nodes[1].addr, "alice", "ecila")
	if got := direct.roundTrip(fmt.Sprintf("set %s 7 0 5\r\nnewer\r\n", newer), "\r\n"); got != "STORED\r\n" {
		t.Fatalf("set %s on its new owner: %q", newer, got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := leaving.s.HandOver(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("handover: %+v", res)
	if res.Failed != 0 || res.Present != 1 || res.Stored+res.Present != res.Sent || res.Sent == 0 {
		t.Errorf("handover %+v: want every item sent stored, one already present, none failed", res)
	}
	// Everything n0 owned is now on n1 or n2, through either.
	for _, via := range nodes[1:] {
		r := dialText(t, via.addr, "alice", "ecila")
		for i := 0; i < items; i++ {
			k := fmt.Sprintf("ho-%d", i)
			if owned, _ := leaving.owners.Owner(1, []byte(k)); owned.Name != leaving.name {
				continue // it never was on n0
			}
			want := fmt.Sprintf("VALUE %s %d %d\r\n%s\r\nEND\r\n", k, i, len(k), k)
			if k == newer {
				want = fmt.Sprintf("VALUE %s 7 5\r\nnewer\r\nEND\r\n", k)
			}
			if got := r.roundTrip("get "+k+"\r\n", "END\r\n"); got != want {
				t.Fatalf("get %s through %s after the handover: %q, want %q", k, via.name, got, want)
			}
		}
	}
	var handed uint64
	if tn := leaving.ts.Cache(1); tn != nil {
		handed = tn.Conns.HandedOver.Load()
	}
	if handed != uint64(res.Stored) {
		t.Errorf("handed_over_items %d, want %d", handed, res.Stored)
	}
}
