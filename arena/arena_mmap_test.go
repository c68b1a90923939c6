//go:build linux && !race

package arena

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports, per OS page of b (which must start OS-page aligned),
// whether the page is in RAM, as mincore(2) sees it.
func resident(t *testing.T, b []byte) []bool {
	t.Helper()
	osPage := os.Getpagesize()
	vec := make([]byte, (len(b)+osPage-1)/osPage)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

func countTrue(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestFreshArenaCostsNoRSS(t *testing.T) {
	a, err := New(256<<20, 1<<20+48)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := countTrue(resident(t, a.Mem())); n != 0 {
		t.Fatalf("%d OS pages resident in a fresh arena, want 0", n)
	}
}

// TestNoReserve maps more than this machine has; only MAP_NORESERVE (and a
// kernel not in strict overcommit mode) lets that succeed.
func TestNoReserve(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/vm/overcommit_memory"); err != nil || strings.TrimSpace(string(b)) == "2" {
		t.Skip("strict overcommit: MAP_NORESERVE is ignored")
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	size := 2 * (int(si.Totalram) + int(si.Totalswap)) * int(si.Unit)
	a, err := New(size, 1<<20)
	if err != nil {
		t.Fatalf("New(%d MiB) on a machine with %d MiB RAM+swap: %v", size>>20, size>>21, err)
	}
	a.Mem()[len(a.Mem())-1] = 1
	a.Close()
}

func TestReleaseReturnsWholeOSPages(t *testing.T) {
	osPage := os.Getpagesize()
	for _, ps := range []int{1<<20 + 48, 4 * osPage, 3*osPage + 100} {
		a, err := New(16*ps, ps)
		if err != nil {
			t.Fatal(err)
		}
		for p := range a.Pages() {
			fill(a, p)
		}
		all := resident(t, a.Mem())
		if n := countTrue(all); n != len(all) {
			t.Fatalf("page size %d: %d of %d OS pages resident after writing all", ps, n, len(all))
		}
		a.Release(5)
		lo, hi := 5*ps, 6*ps
		inLo, inHi := roundUp(lo, osPage), hi/osPage*osPage
		after := resident(t, a.Mem())
		for i, r := range after {
			inside := i*osPage >= inLo && (i+1)*osPage <= inHi
			if r == inside {
				t.Fatalf("page size %d: after Release(5) OS page %d (bytes %d..%d, page 5 is %d..%d) resident=%v",
					ps, i, i*osPage, (i+1)*osPage, lo, hi, r)
			}
		}
		checkZero(t, a, 5)
		checkFilled(t, a, 4)
		checkFilled(t, a, 6)
		a.Close()
	}
}

func TestReleaseOfUntouchedPageFaultsNothingIn(t *testing.T) {
	ps := 3*os.Getpagesize() + 100
	a, err := New(8*ps, ps)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for p := range a.Pages() {
		a.Release(p)
	}
	// Release reads the edges, which may map the shared zero page (mincore
	// counts that); what must not happen is a private copy, which smaps
	// counts as Anonymous.
	if kb := anonymousKB(t, a.Mem()); kb != 0 {
		t.Fatalf("%d kB anonymous memory after releasing %d untouched pages, want 0", kb, a.Pages())
	}
	fill(a, 2)
	if kb := anonymousKB(t, a.Mem()); kb == 0 {
		t.Fatal("smaps shows no anonymous memory after a write: the check above proves nothing")
	}
	for p := range a.Pages() {
		if p != 2 {
			checkZero(t, a, p)
		}
	}
}

// anonymousKB is the Anonymous field of /proc/self/smaps for the mapping
// that starts at b: private memory actually allocated to it.
func anonymousKB(t *testing.T, b []byte) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	start := strconv.FormatUint(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), 16)
	in := false
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, _, _ := strings.Cut(f[0], "-")
			in = strings.TrimLeft(lo, "0") == start
			continue
		}
		if v, ok := strings.CutPrefix(line, "Anonymous:"); in && ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatalf("mapping at %s not found in smaps", start)
	return 0
}

// getMempolicy reads the policy of the OS page holding addr.
func getMempolicy(t *testing.T, addr unsafe.Pointer) (mode int, mask uint64) {
	t.Helper()
	var m int32
	var words [maxNodeID/64 + 1]uint64
	_, _, errno := unix.Syscall6(unix.SYS_GET_MEMPOLICY, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&words[0])),
		uintptr(len(words)*64), uintptr(addr), unix.MPOL_F_ADDR, 0)
	if errno != 0 {
		t.Fatalf("get_mempolicy: %v", errno)
	}
	return int(m), words[0]
}

func skipIfNoMbind(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("mbind not available here: %v", err)
	}
}

func TestBindSpansSetsPreferredNode(t *testing.T) {
	osPage := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 8*osPage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	err = bindSpans(mem, []span{{off: 2 * osPage, len: 4 * osPage, node: 0}})
	skipIfNoMbind(t, err)
	if err != nil {
		t.Fatalf("bindSpans to node 0: %v", err)
	}
	for i, want := range map[int]int{0: unix.MPOL_DEFAULT, 2: unix.MPOL_PREFERRED, 5: unix.MPOL_PREFERRED, 6: unix.MPOL_DEFAULT} {
		mode, mask := getMempolicy(t, unsafe.Pointer(&mem[i*osPage]))
		if mode != want || (want == unix.MPOL_PREFERRED && mask != 1) {
			t.Errorf("OS page %d: policy %d mask %#x, want %d (mask 1 when preferred)", i, mode, mask, want)
		}
	}
	if err := unbind(mem); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	if mode, _ := getMempolicy(t, unsafe.Pointer(&mem[3*osPage])); mode != unix.MPOL_DEFAULT {
		t.Errorf("after unbind: policy %d, want default", mode)
	}
}

// TestNewBindsEveryPage runs New's binding path with a node list naming
// node 0 twice, the only node this machine surely has.
func TestNewBindsEveryPage(t *testing.T) {
	ps := 1<<16 + 64
	a, err := newArena(8*ps, ps, []int{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.nodes == nil {
		skipIfNoMbind(t, bindSpans(a.mapped, []span{{0, os.Getpagesize(), 0}}))
		t.Fatal("binding to node 0 was refused")
	}
	for p := range a.Pages() {
		mode, mask := getMempolicy(t, unsafe.Pointer(&a.Mem()[p*ps+ps/2]))
		if mode != unix.MPOL_PREFERRED || mask != 1 || a.Node(p) != 0 {
			t.Errorf("page %d: policy %d mask %#x Node %d, want preferred node 0", p, mode, mask, a.Node(p))
		}
	}
	fill(a, 7)
	checkFilled(t, a, 7)
}

// TestNewFallsBackWhenBindingFails asks for a node no machine has: New must
// still succeed, leave memory unbound and report node 0.
func TestNewFallsBackWhenBindingFails(t *testing.T) {
	ps := 1<<16 + 64
	a, err := newArena(8*ps, ps, []int{0, maxNodeID})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for p := range a.Pages() {
		if n := a.Node(p); n != 0 {
			t.Fatalf("Node(%d) = %d after a refused binding, want 0", p, n)
		}
	}
	if a.nodes == nil {
		if mode, _ := getMempolicy(t, unsafe.Pointer(&a.Mem()[0])); mode != unix.MPOL_DEFAULT {
			t.Errorf("policy %d left after a refused binding, want default", mode)
		}
	}
	fill(a, 7)
	checkFilled(t, a, 7)
}
