package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// writer stores items through an authenticated text connection.
type writer struct {
	t   *testing.T
	tc  *textConn
	rng *rand.Rand
	buf []byte
}

func newWriter(t *testing.T, addr string, l login, seed int64) *writer {
	tc := dialText(t, addr)
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	return &writer{t: t, tc: tc, rng: rand.New(rand.NewSource(seed)), buf: make([]byte, 64<<10)}
}

// fill stores items named prefix0.. until about total bytes of values were
// written, with sizes from 100 bytes to 60 KB (size 0), or of a fixed size;
// replies are read in batches so the connection is pipelined. It returns
// the number of items written.
func (w *writer) fill(prefix string, total, size int) int {
	w.t.Helper()
	bw := bufio.NewWriterSize(w.tc.c, 256<<10)
	n, written, pending := 0, 0, 0
	drain := func() {
		bw.Flush()
		for ; pending > 0; pending-- {
			if got := w.tc.line(); got != "STORED" {
				w.t.Fatalf("set: %q", got)
			}
		}
	}
	for written < total {
		sz := size
		if sz == 0 {
			sz = 100 + w.rng.Intn(60000)
		}
		fmt.Fprintf(bw, "set %s%d 0 0 %d\r\n", prefix, n, sz)
		bw.Write(w.buf[:sz])
		bw.WriteString("\r\n")
		written += sz
		n++
		if pending++; pending == 64 {
			drain()
		}
	}
	drain()
	return n
}

// present returns which of prefix0..prefix(n-1) the cache holds.
func (w *writer) present(prefix string, n int) map[int]bool {
	w.t.Helper()
	out := map[int]bool{}
	for i := 0; i < n; i++ {
		l := w.tc.cmd(fmt.Sprintf("get %s%d\r\n", prefix, i))
		if strings.HasPrefix(l, "VALUE ") {
			f := strings.Fields(l)
			size, _ := strconv.Atoi(f[3])
			w.tc.r.Discard(size + 2)
			l = w.tc.line()
			out[i] = true
		}
		if l != "END" {
			w.t.Fatalf("get %s%d: %q", prefix, i, l)
		}
	}
	return out
}

func (w *writer) stat(name string) int64 {
	v, err := strconv.ParseInt(w.tc.stats()[name], 10, 64)
	if err != nil {
		w.t.Fatalf("stat %s: %v", name, err)
	}
	return v
}

func TestCacheLimitsUnderPressure(t *testing.T) {
	t.Parallel()
	const memoryMiB = 64
	h := startHive(t, "", "--memory", strconv.Itoa(memoryMiB))
	h.resize(1, 8)
	la, lb := h.createCache("a", 8), h.createCache("b", 16)
	a, b := newWriter(t, h.Addr, la, 1), newWriter(t, h.Addr, lb, 2)

	// a holds 2 MiB, well under its limit, while b is written five times
	// its limit: a loses nothing, b evicts its own items and stays in its
	// limit.
	aKeys := a.fill("keep", 2<<20, 10000)
	b.fill("b", 80<<20, 0)
	if got := len(a.present("keep", aKeys)); got != aKeys {
		t.Fatalf("cache a lost %d of %d items while cache b was under pressure", aKeys-got, aKeys)
	}
	if ev := a.stat("evictions"); ev != 0 {
		t.Fatalf("cache a counted %d evictions", ev)
	}
	if ev := b.stat("evictions"); ev == 0 {
		t.Fatal("cache b, written 5x its limit, evicted nothing")
	}
	if bytes, limit := b.stat("bytes"), b.stat("limit_maxbytes"); bytes > limit || limit != 16<<20 {
		t.Fatalf("cache b holds %d bytes, limit %d", bytes, limit)
	}
	bItems, bEvictions := b.stat("curr_items"), b.stat("evictions")

	// Now a is under pressure: it evicts its own items only.
	aFill := a.fill("a", 40<<20, 0)
	if ev := a.stat("evictions"); ev == 0 {
		t.Fatal("cache a, written 5x its limit, evicted nothing")
	}
	if bytes, limit := a.stat("bytes"), a.stat("limit_maxbytes"); bytes > limit || limit != 8<<20 {
		t.Fatalf("cache a holds %d bytes, limit %d", bytes, limit)
	}
	if items, ev := b.stat("curr_items"), b.stat("evictions"); items != bItems || ev != bEvictions {
		t.Fatalf("cache a's pressure changed cache b: items %d -> %d, evictions %d -> %d", bItems, items, bEvictions, ev)
	}
	rss, err := h.RSS()
	if err != nil {
		t.Fatal(err)
	}
	if rss > (memoryMiB+48)<<20 {
		t.Fatalf("RSS %d MiB with --memory %d", rss>>20, memoryMiB)
	}

	// A live resize up keeps every item.
	kept := a.present("a", aFill)
	h.resize(la.CacheID, 24)
	after := a.present("a", aFill)
	for i := range kept {
		if !after[i] {
			t.Fatalf("growing cache a lost item a%d (%d of %d kept)", i, len(after), len(kept))
		}
	}
	if limit := a.stat("limit_maxbytes"); limit != 24<<20 {
		t.Fatalf("limit after growing: %d", limit)
	}
	// Room the old limit did not have: 10 MiB of one size class fits in
	// the 16 MiB added, whatever the other classes hold.
	a.fill("grown", 10<<20, 10000)
	if got := len(a.present("a", aFill)); got != len(kept) {
		t.Fatalf("filling the new room evicted %d old items", len(kept)-got)
	}

	// A live resize down evicts to the new limit.
	evBefore := a.stat("evictions")
	h.resize(la.CacheID, 4)
	deadline := time.Now().Add(5 * time.Second)
	for a.stat("bytes") > 4<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("cache a holds %d bytes 5 s after shrinking to 4 MiB", a.stat("bytes"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.stat("evictions") <= evBefore || a.stat("limit_maxbytes") != 4<<20 {
		t.Fatalf("shrinking: evictions %d (before %d), limit %d", a.stat("evictions"), evBefore, a.stat("limit_maxbytes"))
	}
	a.fill("small", 16<<20, 0)
	if bytes := a.stat("bytes"); bytes > 4<<20 {
		t.Fatalf("after shrinking and refilling: %d bytes", bytes)
	}
	if items := b.stat("curr_items"); items != bItems {
		t.Fatalf("resizing cache a changed cache b's items: %d -> %d", bItems, items)
	}
}

// hammer writes about total bytes of values of random sizes (100 B to
// 60 KB) into a cache over its own connection, pipelined; it returns the
// first unexpected reply or error. It is safe to run in a goroutine.
func hammer(addr string, l login, prefix string, total int, seed int64) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "set %s 0 0 %d\r\n%s\r\n", l.Username, len(l.Password), l.Password)
	if line, err := r.ReadString('\n'); err != nil || line != "STORED\r\n" {
		return fmt.Errorf("login: %q %v", line, err)
	}
	rng := rand.New(rand.NewSource(seed))
	buf := make([]byte, 60100)
	bw := bufio.NewWriterSize(c, 256<<10)
	pending := 0
	drain := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		for ; pending > 0; pending-- {
			if line, err := r.ReadString('\n'); err != nil || line != "STORED\r\n" {
				return fmt.Errorf("set: %q %v", line, err)
			}
		}
		return nil
	}
	for i, written := 0, 0; written < total; i++ {
		sz := 100 + rng.Intn(60000)
		fmt.Fprintf(bw, "set %s%d 0 0 %d\r\n", prefix, i, sz)
		bw.Write(buf[:sz])
		bw.WriteString("\r\n")
		written += sz
		if pending++; pending == 32 {
			if err := drain(); err != nil {
				return err
			}
		}
	}
	return drain()
}

// TestCacheLimitsConcurrentPressure: two caches written at once, from
// several connections each, far past their limits, stay within them the
// whole time and evict only their own items; a third, small and well
// under its limit, loses nothing meanwhile.
func TestCacheLimitsConcurrentPressure(t *testing.T) {
	t.Parallel()
	const memoryMiB = 64
	h := startHive(t, "", "--memory", strconv.Itoa(memoryMiB))
	h.resize(1, 8)
	lx, ly, lk := h.createCache("x", 8), h.createCache("y", 16), h.createCache("keep", 4)
	keep := newWriter(t, h.Addr, lk, 7)
	// One size class: a cache of a few pages cannot hold items of
	// many sizes (each size class takes whole 1 MiB pages).
	kept := keep.fill("k", 2<<20, 10000)
	if ev := keep.stat("evictions"); ev != 0 {
		t.Fatalf("cache keep evicted %d items filling 2 MiB of its 4", ev)
	}
	x, y := newWriter(t, h.Addr, lx, 8), newWriter(t, h.Addr, ly, 9)

	// 36 of 64 MiB are given out: 29 more are refused, with a reason, and
	// nothing is made; 28 fit.
	req, _ := http.NewRequest("POST", "http://"+h.http+"/admin/v1/caches", strings.NewReader(`{"name":"toobig","memory_limit_mb":29}`))
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(body), "memory") {
		t.Fatalf("a cache past --memory: status %d %s, want 409 saying why", resp.StatusCode, body)
	}
	var caches []struct{ Name string }
	h.admin("GET", "/admin/v1/caches", nil, &caches)
	if len(caches) != 4 {
		t.Fatalf("after a refused creation: %d caches, want 4", len(caches))
	}
	fits := h.createCache("fits", 28)
	h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d", fits.CacheID), nil, nil)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- hammer(h.Addr, lx, fmt.Sprintf("x%d-", i), 12<<20, int64(i)) }()
		go func() { defer wg.Done(); errs <- hammer(h.Addr, ly, fmt.Sprintf("y%d-", i), 24<<20, int64(100+i)) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Sample the limits while the writes go on.
	samples := 0
	for sampling := true; sampling; samples++ {
		select {
		case <-done:
			sampling = false
		case <-time.After(20 * time.Millisecond):
		}
		for _, w := range []*writer{x, y} {
			if bytes, limit := w.stat("bytes"), w.stat("limit_maxbytes"); bytes > limit {
				t.Fatalf("during the writes: a cache holds %d bytes over its limit %d", bytes, limit)
			}
		}
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("hammering: %v", err)
		}
	}
	for name, w := range map[string]*writer{"x": x, "y": y} {
		if ev := w.stat("evictions"); ev == 0 {
			t.Errorf("cache %s, written 6x its limit, evicted nothing", name)
		}
		if bytes, limit := w.stat("bytes"), w.stat("limit_maxbytes"); bytes > limit {
			t.Errorf("cache %s holds %d bytes, limit %d", name, bytes, limit)
		}
	}
	if got := len(keep.present("k", kept)); got != kept {
		t.Fatalf("cache keep lost %d of %d items while the others were under pressure", kept-got, kept)
	}
	if ev := keep.stat("evictions"); ev != 0 {
		t.Fatalf("cache keep counted %d evictions", ev)
	}
	rss, err := h.RSS()
	if err != nil {
		t.Fatal(err)
	}
	if rss > (memoryMiB+48)<<20 {
		t.Fatalf("RSS %d MiB with --memory %d", rss>>20, memoryMiB)
	}
	t.Logf("%d samples of the limits during the writes; RSS %d MiB", samples, rss>>20)
}
