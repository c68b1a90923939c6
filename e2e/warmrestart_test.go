package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// warmItems is how many items TestWarmRestart stores, over its caches.
const warmItems = 1_000_000

// warmValue is item i's value: its length varies with i.
func warmValue(i int) string {
	return strconv.Itoa(i) + strings.Repeat("v", i%40)
}

// warmKey is item i's key in cache c.
func warmKey(c, i int) string { return fmt.Sprintf("c%d:k%d", c, i) }

// warmFlags and warmTTL give item i's client flags and expiry (0: none).
func warmFlags(i int) int { return (i % 7) * 1000 }
func warmTTL(i int) int {
	if i%4 == 0 {
		return 0
	}
	return 600 + i%3000
}

// memoryFileDir is where the test's memory files go: /dev/shm, as in
// production, when it exists.
func memoryFileDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "memhive-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return t.TempDir()
}

// pipeConn is a logged-in text connection writing pipelined batches.
type pipeConn struct {
	t *testing.T
	*textConn
	w *bufio.Writer
}

func dialLoggedIn(t *testing.T, addr string, l login) *pipeConn {
	tc := dialText(t, addr)
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	return &pipeConn{t: t, textConn: tc, w: bufio.NewWriterSize(tc.c, 1<<16)}
}

// storeAll stores items lo..hi-1 of cache c with noreply, then checks
// with an mn that the connection took them all.
func (pc *pipeConn) storeAll(c, lo, hi int) {
	pc.c.SetDeadline(time.Now().Add(60 * time.Second))
	for i := lo; i < hi; i++ {
		v := warmValue(i)
		fmt.Fprintf(pc.w, "set %s %d %d %d noreply\r\n%s\r\n", warmKey(c, i), warmFlags(i), warmTTL(i), len(v), v)
	}
	pc.w.WriteString("mn\r\n")
	if err := pc.w.Flush(); err != nil {
		pc.t.Fatal(err)
	}
	if got := pc.line(); got != "MN" {
		pc.t.Fatalf("storing cache %d: %q", c, got)
	}
}

// warmItem is an item as read back: gets's fields and mg's TTL.
type warmItem struct {
	flags, ttl int
	cas        string
	value      string
}

// readAll reads items lo..hi-1 of cache c with "mg KEY f c t v",
// pipelined in batches, and returns them; a miss is an item with ttl -2.
func (pc *pipeConn) readAll(c, lo, hi int) []warmItem {
	out := make([]warmItem, 0, hi-lo)
	const batch = 2000
	for start := lo; start < hi; start += batch {
		end := min(start+batch, hi)
		for i := start; i < end; i++ {
			fmt.Fprintf(pc.w, "mg %s f c t v\r\n", warmKey(c, i))
		}
		if err := pc.w.Flush(); err != nil {
			pc.t.Fatal(err)
		}
		pc.c.SetDeadline(time.Now().Add(30 * time.Second))
		for i := start; i < end; i++ {
			line, err := pc.r.ReadString('\n')
			if err != nil {
				pc.t.Fatalf("reading %s: %v", warmKey(c, i), err)
			}
			f := strings.Fields(line)
			if len(f) == 1 && f[0] == "EN" {
				out = append(out, warmItem{ttl: -2})
				continue
			}
			if len(f) != 5 || f[0] != "VA" {
				pc.t.Fatalf("mg %s: %q", warmKey(c, i), line)
			}
			n, _ := strconv.Atoi(f[1])
			it := warmItem{cas: f[3][1:]}
			it.flags, _ = strconv.Atoi(f[2][1:])
			it.ttl, _ = strconv.Atoi(f[4][1:])
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(pc.r, buf); err != nil {
				pc.t.Fatal(err)
			}
			it.value = string(buf[:n])
			out = append(out, it)
		}
	}
	return out
}

// TestWarmRestart stores a million items in three caches of a server
// with --memory-file, stops it with SIGTERM, deletes a fourth cache while
// it is down, and restarts it: every item of the three comes back with
// its value, flags, CAS and remaining TTL, and the fourth cache's items
// are gone. Then a kill -9: the next start is empty, clean and correct,
// and says why.
func TestWarmRestart(t *testing.T) {
	memFile := filepath.Join(memoryFileDir(t), "memory")
	data := t.TempDir()
	port := testserver.FreePort(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	args := []string{"--memory", "512", "--memory-file", memFile, "--overcommit"}
	h := startHiveOn(t, port, httpAddr, data, args...)
	const caches = 3
	var logins [caches]login
	for c := range caches {
		logins[c] = h.createCache(fmt.Sprint("warm", c), 128)
	}
	doomed := h.createCache("doomed", 16)
	per := warmItems / caches
	for c := range caches {
		dialLoggedIn(t, h.Addr, logins[c]).storeAll(c, 0, per)
	}
	dialLoggedIn(t, h.Addr, doomed).storeAll(9, 0, 1000)
	before := make([][]warmItem, caches)
	readAt := time.Now() // TTLs are compared against what was left then
	for c := range caches {
		before[c] = dialLoggedIn(t, h.Addr, logins[c]).readAll(c, 0, per)
		for i, it := range before[c] {
			if it.ttl == -2 || it.value != warmValue(i) || it.flags != warmFlags(i) {
				t.Fatalf("cache %d item %d before the restart: %+v", c, i, it)
			}
		}
	}
	if code, err := h.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v\n%s", code, err, h.Output())
	}
	if !strings.Contains(h.Output(), "warm restart: items kept for the next start") {
		t.Fatalf("no line saying the items were kept:\n%s", h.Output())
	}
	out, err := exec.Command(testserver.MemhiveBinary(t), "cache", "delete", "doomed", "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("deleting a cache while the server is down: %v\n%s", err, out)
	}

	started := time.Now()
	h = startHiveOn(t, port, httpAddr, data, args...)
	first := dialLoggedIn(t, h.Addr, logins[0]).readAll(0, per-1, per)
	ready := time.Since(started)
	restored := regexp.MustCompile(`warm restart: items restored" caches=(\d+) items=(\d+) took=(\S+)`).FindStringSubmatch(h.Output())
	// The caches restored are the three and "default", made at the first
	// start, empty.
	if restored == nil || restored[1] != "4" || restored[2] != strconv.Itoa(caches*per) {
		t.Fatalf("restart: want 4 caches and %d items restored:\n%s", caches*per, h.Output())
	}
	took, err := time.ParseDuration(restored[3])
	if err != nil || took > 2*time.Second {
		t.Fatalf("the restore took %s (%v), more than 2 s", restored[3], err)
	}
	t.Logf("restored %s items of %s caches in %s; the last item served %s after the process started", restored[2], restored[1], took, ready.Round(time.Millisecond))
	if first[0].value != warmValue(per-1) {
		t.Fatalf("the last item after the restart: %+v", first[0])
	}
	// The clock ticks each second: a TTL read may be a second stale.
	down := int(time.Since(readAt).Seconds()) + 2
	for c := range caches {
		after := dialLoggedIn(t, h.Addr, logins[c]).readAll(c, 0, per)
		for i, it := range after {
			was := before[c][i]
			ttlOK := it.ttl == was.ttl || was.ttl > 0 && it.ttl >= was.ttl-down && it.ttl <= was.ttl
			if it.value != was.value || it.flags != was.flags || it.cas != was.cas || !ttlOK {
				t.Fatalf("cache %d item %d: %+v after the restart, %+v before (down %d s)", c, i, it, was, down)
			}
		}
	}
	tc := dialText(t, h.Addr)
	if got := tc.asciiLogin(doomed); got == "STORED" {
		t.Fatal("the deleted cache's credential still logs in")
	}
	if !strings.Contains(h.Output(), "dropped_deleted_caches=1") {
		t.Fatalf("no line counting the deleted cache's dropped items:\n%s", h.Output())
	}

	// A crash: the next start is empty, and says why.
	h.Kill()
	h = startHiveOn(t, port, httpAddr, data, args...)
	if !strings.Contains(h.Output(), `warm restart: starting empty" reason="no metadata file`) {
		t.Fatalf("restart after kill -9: no line saying why it starts empty:\n%s", h.Output())
	}
	pc := dialLoggedIn(t, h.Addr, logins[1])
	if got := pc.readAll(1, 0, 1000); got[0].ttl != -2 || got[999].ttl != -2 {
		t.Fatalf("an item survived a kill -9: %+v", got[0])
	}
	if st := pc.stats(); st["curr_items"] != "0" {
		t.Fatalf("curr_items %s after a kill -9 restart", st["curr_items"])
	}
	pc.storeAll(1, 0, 1000)
	if got := pc.readAll(1, 0, 1000); got[999].value != warmValue(999) {
		t.Fatalf("the emptied cache does not serve: %+v", got[999])
	}
	h.Terminate(10 * time.Second)
}
