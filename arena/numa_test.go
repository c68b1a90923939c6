package arena

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSysfs builds a sysfs-like tree under a temporary root. Entries ending
// in "/" are directories; the others are files with the given contents.
func fakeSysfs(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	nodeDir := filepath.Join(root, "devices", "system", "node")
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range entries {
		var err error
		if dir, ok := strings.CutSuffix(name, "/"); ok {
			err = os.MkdirAll(filepath.Join(nodeDir, dir, "cpulist-placeholder"), 0o755)
		} else {
			err = os.WriteFile(filepath.Join(nodeDir, name), []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestNodesFrom(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries map[string]string
		want    []int
	}{
		{"one node", map[string]string{"node0/": "", "online": "0\n", "possible": "0\n", "has_cpu": "0\n"}, []int{0}},
		{"two nodes with a gap", map[string]string{"node0/": "", "node2/": "", "online": "0,2\n"}, []int{0, 2}},
		{"range in online", map[string]string{"node3/": "", "node1/": "", "node0/": "", "node2/": "", "online": "0-3\n"}, []int{0, 1, 2, 3}},
		{"no online file", map[string]string{"node0/": "", "node1/": ""}, []int{0, 1}},
		{"offline node dropped", map[string]string{"node0/": "", "node1/": "", "online": "0\n"}, []int{0}},
		{"online node without directory dropped", map[string]string{"node1/": "", "online": "0-1\n"}, []int{1}},
		{"memoryless node dropped", map[string]string{"node0/": "", "node1/": "", "node2/": "", "online": "0-2\n", "has_memory": "0,2\n"}, []int{0, 2}},
		{"malformed names ignored", map[string]string{
			"node0/": "", "node5/": "", "nodeX/": "", "node/": "", "node-1/": "", "node01/": "",
			"node2a/": "", "xnode3/": "", "Node4/": "", "node99999/": "", "power/": "",
			"node7": "a file, not a node directory",
		}, []int{0, 5}},
		{"empty node dir", map[string]string{}, []int{0}},
		{"nothing online", map[string]string{"node0/": "", "online": "\n"}, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := NodesFrom(fakeSysfs(t, c.entries))
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("NodesFrom = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestNodesFromSymlinkedNode(t *testing.T) {
	root := fakeSysfs(t, map[string]string{"node0/": "", "real1/": ""})
	dir := filepath.Join(root, "devices", "system", "node")
	if err := os.Symlink(filepath.Join(dir, "real1"), filepath.Join(dir, "node1")); err != nil {
		t.Fatal(err)
	}
	got, err := NodesFrom(root)
	if err != nil || !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("NodesFrom = %v, %v; want [0 1]", got, err)
	}
}

func TestNodesFromMissingTree(t *testing.T) {
	for _, root := range []string{filepath.Join(t.TempDir(), "absent"), t.TempDir()} {
		got, err := NodesFrom(root)
		if err != nil || !slices.Equal(got, []int{0}) {
			t.Errorf("NodesFrom(%s) = %v, %v; want [0]", root, got, err)
		}
	}
}

func TestNodesFromMalformedList(t *testing.T) {
	for _, list := range []string{"zero", "0-", "3-1", "0,,1", "-1", "0-99999"} {
		for _, file := range []string{"online", "has_memory"} {
			root := fakeSysfs(t, map[string]string{"node0/": "", file: list})
			got, err := NodesFrom(root)
			if err == nil || !strings.HasPrefix(err.Error(), "arena: ") {
				t.Errorf("%s %q: NodesFrom = %v, %v; want an arena error", file, list, got, err)
			}
		}
	}
}

func TestNodesFromRealSysfs(t *testing.T) {
	got, err := NodesFrom("/sys")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !slices.IsSorted(got) {
		t.Fatalf("NodesFrom(/sys) = %v, want a sorted non-empty list", got)
	}
	t.Logf("NUMA nodes: %v", got)
}

func TestParseNodeList(t *testing.T) {
	for in, want := range map[string][]int{
		"":              nil,
		"\n":            nil,
		"0":             {0},
		"0-3,8,10-11\n": {0, 1, 2, 3, 8, 10, 11},
		"2-2":           {2},
	} {
		set, err := parseNodeList(in)
		if err != nil {
			t.Errorf("parseNodeList(%q): %v", in, err)
			continue
		}
		if got := slices.Sorted(maps.Keys(set)); !slices.Equal(got, want) {
			t.Errorf("parseNodeList(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestPlanBindingSmallCases(t *testing.T) {
	const os = 4096
	for _, c := range []struct {
		name            string
		pages, pageSize int
		nodes           []int
		want            []span
	}{
		{"one node binds nothing", 8, os, []int{0}, nil},
		{"no node binds nothing", 8, os, nil, nil},
		{"aligned pages alternate", 4, os, []int{0, 1},
			[]span{{0, os, 0}, {os, os, 1}, {2 * os, os, 0}, {3 * os, os, 1}}},
		{"ids with gaps", 3, 2 * os, []int{0, 2},
			[]span{{0, 2 * os, 0}, {2 * os, 2 * os, 2}, {4 * os, 2 * os, 0}}},
		{"three nodes", 4, os, []int{1, 2, 5},
			[]span{{0, os, 1}, {os, os, 2}, {2 * os, os, 5}, {3 * os, os, 1}}},
		// Pages of 1.5 OS pages: page 1 starts mid OS page 1, which page 0
		// owns (it holds that OS page's first byte).
		{"unaligned pages", 4, os + os/2, []int{0, 1},
			[]span{{0, 2 * os, 0}, {2 * os, os, 1}, {3 * os, 2 * os, 0}, {5 * os, os, 1}}},
		// Pages of a third of an OS page go to nodes three at a time.
		{"small pages grouped", 7, 1500, []int{0, 1},
			[]span{{0, os + os, 0}, {2 * os, os, 1}}},
	} {
		got := planBinding(c.pages, c.pageSize, os, c.nodes)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: planBinding(%d, %d, %d, %v) =\n  %v\nwant\n  %v", c.name, c.pages, c.pageSize, os, c.nodes, got, c.want)
		}
	}
}

// TestPlanBindingInvariants checks, over many shapes, that a plan covers the
// region with aligned, ordered, non-empty spans that never repeat a node
// back to back, that big pages are dealt round-robin, and that nodeOfPage names the
// node of the span under each page's middle byte.
func TestPlanBindingInvariants(t *testing.T) {
	nodeLists := [][]int{{0, 1}, {0, 2}, {0, 1, 2, 3}, {3, 7, 9}}
	for _, osPage := range []int{4096, 16384, 65536} {
		for _, ps := range []int{64, 1000, 4095, 4096, 4097, 6144, 8192, 12345, 1<<20 + 48} {
			for _, pages := range []int{1, 2, 3, 5, 17, 64} {
				for _, nodes := range nodeLists {
					checkPlan(t, pages, ps, osPage, nodes)
				}
			}
		}
	}
}

func checkPlan(t *testing.T, pages, ps, osPage int, nodes []int) {
	t.Helper()
	spans := planBinding(pages, ps, osPage, nodes)
	where := func() string { return fmt.Sprintf("planBinding(%d, %d, %d)", pages, ps, osPage) }
	off := 0
	for i, s := range spans {
		if s.off != off || s.len <= 0 || s.off%osPage != 0 || s.len%osPage != 0 {
			t.Fatalf("%s %v: span %d %+v not aligned, empty or not contiguous", where(), nodes, i, s)
		}
		if i > 0 && spans[i-1].node == s.node {
			t.Fatalf("%s %v: spans %d and %d both go to node %d unmerged", where(), nodes, i-1, i, s.node)
		}
		if !slices.Contains(nodes, s.node) {
			t.Fatalf("%s %v: span %d goes to unknown node %d", where(), nodes, i, s.node)
		}
		off += s.len
	}
	if want := roundUp(pages*ps, osPage); off != want {
		t.Fatalf("%s %v: spans cover %d bytes, want %d", where(), nodes, off, want)
	}
	g := groupPages(ps, osPage)
	for p := range pages {
		mid := p*ps + ps/2
		i, _ := slices.BinarySearchFunc(spans, mid, func(s span, x int) int {
			switch {
			case s.off+s.len <= x:
				return -1
			case s.off > x:
				return 1
			}
			return 0
		})
		if got := nodeOfPage(p, ps, osPage, g, nodes); got != spans[i].node {
			t.Fatalf("%s %v: nodeOfPage(%d) = %d, but the span under its middle goes to %d", where(), nodes, p, got, spans[i].node)
		}
		// A page spanning two or more OS pages is dealt exactly
		// round-robin: page p goes to nodes[p%len(nodes)].
		if ps >= 2*osPage && nodeOfPage(p, ps, osPage, g, nodes) != nodes[p%len(nodes)] {
			t.Fatalf("%s %v: page %d goes to node %d, want %d", where(), nodes, p, nodeOfPage(p, ps, osPage, g, nodes), nodes[p%len(nodes)])
		}
	}
}
