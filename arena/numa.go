package arena

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxNodeID bounds the node ids accepted from sysfs. Linux allows at most
// 1024 nodes (NODES_SHIFT 10); the margin keeps the mbind mask small and a
// corrupt tree from asking for a huge one.
const maxNodeID = 4095

// NodesFrom lists the NUMA nodes that can hold memory, read from a sysfs
// tree rooted at sysfsRoot ("/sys" on a real system; tests pass fake trees).
// A node counts when <root>/devices/system/node/node<N> is a directory and N
// appears in that directory's "online" list (and in "has_memory" where the
// kernel provides it: a CPU-only node cannot hold pages). Entries whose name
// is not exactly "node" followed by a decimal id are ignored. The ids come
// back sorted. A missing tree, or one naming no usable node, means a machine
// without NUMA and yields []int{0}; an unreadable tree or a malformed list
// file is an error.
func NodesFrom(sysfsRoot string) ([]int, error) {
	dir := filepath.Join(sysfsRoot, "devices", "system", "node")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []int{0}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("arena: %w", err)
	}
	var ids []int
	for _, e := range entries {
		id, ok := nodeID(e.Name())
		if !ok {
			continue
		}
		// Stat, not e.IsDir: a tree assembled from symlinks should count too.
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !fi.IsDir() {
			continue
		}
		ids = append(ids, id)
	}
	for _, name := range []string{"online", "has_memory"} {
		keep, err := readNodeList(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if keep != nil {
			ids = slices.DeleteFunc(ids, func(id int) bool { return !keep[id] })
		}
	}
	if len(ids) == 0 {
		return []int{0}, nil
	}
	slices.Sort(ids)
	return ids, nil
}

// nodeID parses a sysfs node directory name. Only the kernel's own spelling
// is accepted ("node0", "node12"; not "node", "node01", "node-1", "nodeX").
func nodeID(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "node")
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	id, err := strconv.Atoi(digits)
	if err != nil || id > maxNodeID {
		return 0, false
	}
	return id, true
}

// readNodeList reads a kernel node list file; nil (and no error) when the
// file does not exist, so the caller applies no filter.
func readNodeList(path string) (map[int]bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("arena: %w", err)
	}
	set, err := parseNodeList(string(b))
	if err != nil {
		return nil, fmt.Errorf("arena: %s: %w", path, err)
	}
	return set, nil
}

// parseNodeList parses the kernel's list format ("0", "0-3,8,10-11", or
// empty) into a set.
func parseNodeList(s string) (map[int]bool, error) {
	set := map[int]bool{}
	s = strings.TrimSpace(s)
	if s == "" {
		return set, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(part, "-")
		lo, err1 := strconv.Atoi(first)
		hi, err2 := lo, error(nil)
		if isRange {
			hi, err2 = strconv.Atoi(last)
		}
		if err1 != nil || err2 != nil || lo < 0 || hi < lo || hi > maxNodeID {
			return nil, fmt.Errorf("bad node list %q", s)
		}
		for id := lo; id <= hi; id++ {
			set[id] = true
		}
	}
	return set, nil
}

// span is a run of whole OS pages of the region, [off, off+len) in bytes,
// to be bound to one node.
type span struct {
	off, len, node int
}

// groupPages is how many consecutive arena pages go to the same node: one
// when a page covers an OS page, else enough pages to cover one, since the
// kernel binds memory in whole OS pages.
func groupPages(pageSize, osPage int) int {
	return (osPage + pageSize - 1) / pageSize
}

// planBinding decides which bytes of a region of pages*pageSize bytes go to
// which node: groups of groupPages pages are dealt to nodes round-robin, and
// an OS page belongs to the group holding its first byte (pages need not be
// OS-page aligned, so a page's head may share an OS page with the previous
// page and follow that page's node). The spans are OS-page aligned, ascending,
// non-empty and cover the region up to the next OS page boundary; adjacent
// spans with the same node are merged. With fewer than two nodes there is
// nothing to bind and the plan is empty.
func planBinding(pages, pageSize, osPage int, nodes []int) []span {
	if len(nodes) < 2 || pages <= 0 {
		return nil
	}
	g := groupPages(pageSize, osPage)
	groupBytes := g * pageSize
	groups := (pages + g - 1) / g
	end := roundUp(pages*pageSize, osPage)
	var spans []span
	for k := range groups {
		lo := roundUp(k*groupBytes, osPage)
		hi := min(roundUp((k+1)*groupBytes, osPage), end)
		if lo >= hi {
			// A short last group in which no OS page starts: its bytes
			// already belong to the previous group's last OS page.
			continue
		}
		node := nodes[k%len(nodes)]
		if n := len(spans); n > 0 && spans[n-1].node == node && spans[n-1].off+spans[n-1].len == lo {
			spans[n-1].len += hi - lo
			continue
		}
		spans = append(spans, span{off: lo, len: hi - lo, node: node})
	}
	return spans
}

// nodeOfPage is the node planBinding gives the OS page under the middle byte
// of page. A page meets at most one change of node (at the first OS page
// boundary inside it), so that is the node holding most of its bytes.
func nodeOfPage(page, pageSize, osPage, group int, nodes []int) int {
	mid := page*pageSize + pageSize/2
	osFirst := mid / osPage * osPage // first byte of the OS page under mid
	return nodes[(osFirst/(group*pageSize))%len(nodes)]
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int { return (n + m - 1) / m * m }
