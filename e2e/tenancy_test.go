package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memcachier/mc/v3"
)

// mcClient is a memcachier/mc client that reports failures at once
// instead of retrying or failing over.
func mcClient(addr string, l login) *mc.Client {
	cfg := mc.DefaultConfig()
	cfg.Retries = 0
	cfg.Failover = false
	cfg.ConnectionTimeout = 2 * time.Second
	return mc.NewMCwithConfig(addr, l.Username, l.Password, cfg)
}

// oneServer returns the only server's entry of a stats answer, and fails
// the test on an error or on any other number of entries: a loop over an
// empty answer would check nothing.
func oneServer(t *testing.T, what string, stats map[string]mc.McStats, err error) mc.McStats {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(stats) != 1 {
		t.Fatalf("%s: %d server entries, want 1: %v", what, len(stats), stats)
	}
	for _, st := range stats {
		if len(st) == 0 {
			t.Fatalf("%s: an empty entry", what)
		}
		return st
	}
	return nil
}

// twoCaches starts a hive whose default cache is shrunk to make room, with
// caches "a" and "b" of mb MiB each.
func twoCaches(t *testing.T, mb int, extra ...string) (*hive, login, login) {
	h := startHive(t, "", extra...)
	h.resize(1, 8)
	return h, h.createCache("a", mb), h.createCache("b", mb)
}

func TestGoSASLClientEveryOperation(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 16)
	c := mcClient(h.Addr, a)
	defer c.Quit()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	cas, err := c.Set("k", "v", 7, 0, 0)
	must("set", err)
	v, flags, gcas, err := c.Get("k")
	if err != nil || v != "v" || flags != 7 || gcas != cas {
		t.Fatalf("get: %q %d %d %v", v, flags, gcas, err)
	}
	if _, err := c.Add("k", "x", 0, 0); !errors.Is(err, mc.ErrKeyExists) {
		t.Fatalf("add existing: %v", err)
	}
	_, err = c.Add("k2", "x", 0, 0)
	must("add", err)
	_, err = c.Replace("k2", "y", 0, 0, 0)
	must("replace", err)
	_, err = c.Append("k2", "z", 0)
	must("append", err)
	_, err = c.Prepend("k2", "w", 0)
	must("prepend", err)
	if v, _, _, _ := c.Get("k2"); v != "wyz" {
		t.Fatalf("after append/prepend: %q", v)
	}
	if _, err := c.Set("k", "new", 0, 0, cas+1000); !errors.Is(err, mc.ErrKeyExists) {
		t.Fatalf("set with a stale CAS: %v", err)
	}
	n, _, err := c.Incr("n", 5, 10, 0, 0)
	must("incr (create)", err)
	if n != 10 {
		t.Fatalf("incr created %d", n)
	}
	if n, _, err = c.Incr("n", 5, 0, 0, 0); err != nil || n != 15 {
		t.Fatalf("incr: %d %v", n, err)
	}
	if n, _, err = c.Decr("n", 20, 0, 0, 0); err != nil || n != 0 {
		t.Fatalf("decr: %d %v", n, err)
	}
	_, err = c.Touch("k", 100)
	must("touch", err)
	if v, _, _, err := c.GAT("k", 200); err != nil || v != "v" {
		t.Fatalf("gat: %q %v", v, err)
	}
	must("delete", c.Del("k2"))
	if _, _, _, err := c.Get("k2"); !errors.Is(err, mc.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	must("noop", c.NoOp())
	if vers, err := c.Version(); err != nil || len(vers) != 1 {
		t.Fatalf("version: %v %v", vers, err)
	}
	stats, err := c.Stats()
	if st := oneServer(t, "stats", stats, err); st["curr_items"] != "2" || st["limit_maxbytes"] != strconv.Itoa(16<<20) {
		t.Fatalf("cache a's stats: curr_items %s limit_maxbytes %s", st["curr_items"], st["limit_maxbytes"])
	}

	// The other cache sees none of it, and its flush does not reach a.
	cb := mcClient(h.Addr, b)
	defer cb.Quit()
	if _, _, _, err := cb.Get("k"); !errors.Is(err, mc.ErrNotFound) {
		t.Fatalf("cache b sees cache a's key: %v", err)
	}
	_, err = cb.Set("k", "b's", 0, 0, 0)
	must("set in b", err)
	bstats, err := cb.Stats()
	if st := oneServer(t, "cache b's stats", bstats, err); st["curr_items"] != "1" || st["cmd_get"] != "1" {
		t.Fatalf("cache b's stats include a's: curr_items %s cmd_get %s", st["curr_items"], st["cmd_get"])
	}
	must("flush b", cb.Flush(0))
	if v, _, _, err := c.Get("k"); err != nil || v != "v" {
		t.Fatalf("b's flush reached a: %q %v", v, err)
	}
	must("flush a", c.Flush(0))
	if _, _, _, err := c.Get("k"); !errors.Is(err, mc.ErrNotFound) {
		t.Fatalf("a's flush: %v", err)
	}
}

func TestGoSASLClientRefused(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	extra := h.createCred(a.CacheID, true, true, true)
	refused := func(what string, l login) {
		t.Helper()
		c := mcClient(h.Addr, l)
		defer c.Quit()
		if _, err := c.Set("k", "v", 0, 0, 0); err == nil {
			t.Fatalf("%s: set succeeded", what)
		}
		if _, _, _, err := c.Get("k"); err == nil || errors.Is(err, mc.ErrNotFound) {
			t.Fatalf("%s: get answered %v", what, err)
		}
	}
	wrong := a
	wrong.Password += "x"
	refused("wrong password", wrong)
	unknown := a
	unknown.Username = "NOSUCHUSER"
	refused("unknown user", unknown)

	if st := h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", a.CacheID, extra.ID), nil, nil); st != 200 {
		t.Fatalf("deleting a credential: status %d", st)
	}
	refused("deleted credential", extra)
	if st := h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": false}, nil); st != 200 {
		t.Fatalf("disabling: status %d", st)
	}
	refused("disabled cache", a)
	// The other cache is untouched.
	cb := mcClient(h.Addr, b)
	defer cb.Quit()
	if _, err := cb.Set("k", "v", 0, 0, 0); err != nil {
		t.Fatalf("cache b after a was disabled: %v", err)
	}
	// Re-enabled, the cache works again.
	h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": true}, nil)
	c := mcClient(h.Addr, a)
	defer c.Quit()
	if _, err := c.Set("k", "v", 0, 0, 0); err != nil {
		t.Fatalf("re-enabled cache: %v", err)
	}
}

// runScript runs a python script of testdata with the system python and
// checks its summary line.
func runScript(t *testing.T, script string, args ...string) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, append([]string{path}, args...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", script, strings.Join(args[:2], " "), out)
	m := pylibmcSummary.FindStringSubmatch(string(out))
	if err != nil || m == nil || m[2] != "0" || m[1] == "0" {
		t.Fatalf("%s failed (%v)", script, err)
	}
}

func TestPylibmcSASL(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	runScript(t, "pylibmc_sasl.py", h.Addr, "ok", a.Username, a.Password, b.Username, b.Password)
	extra := h.createCred(b.CacheID, true, true, false)
	h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", b.CacheID, extra.ID), nil, nil)
	runScript(t, "pylibmc_sasl.py", h.Addr, "refused", extra.Username, extra.Password)
	h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": false}, nil)
	runScript(t, "pylibmc_sasl.py", h.Addr, "refused", a.Username, a.Password)
}

func TestPymemcacheASCIIAuth(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	host, port, _ := strings.Cut(h.Addr, ":")
	runScript(t, "pymemcache_ascii.py", host, port, a.Username, a.Password)

	// The failure paths, over raw sockets.
	bad := a
	bad.Password = "wrong"
	tc := dialText(t, h.Addr)
	if got := tc.asciiLogin(bad); got != "CLIENT_ERROR authentication failure" || !tc.closedByPeer(2*time.Second) {
		t.Fatalf("wrong password: %q, or the connection stayed open", got)
	}
	unknown := a
	unknown.Username = "NOSUCHUSER"
	tc = dialText(t, h.Addr)
	if got := tc.asciiLogin(unknown); got != "CLIENT_ERROR authentication failure" || !tc.closedByPeer(2*time.Second) {
		t.Fatalf("unknown user: %q", got)
	}
	for _, first := range []string{"get k\r\n", "stats\r\n", "version\r\n", "flush_all\r\n", "delete k\r\n"} {
		tc = dialText(t, h.Addr)
		if got := tc.cmd(first); got != "CLIENT_ERROR unauthenticated" || !tc.closedByPeer(2*time.Second) {
			t.Fatalf("%q first: %q", first, got)
		}
	}
	// Logged in to b, a's keys are not there.
	tc = dialText(t, h.Addr)
	tc.asciiLogin(b)
	tc.cmd("set k 0 0 1\r\nb\r\n")
	ta := dialText(t, h.Addr)
	ta.asciiLogin(a)
	if got := ta.cmd("get k\r\n"); got != "END" {
		t.Fatalf("cache a sees b's key: %q", got)
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	h, a, _ := twoCaches(t, 8)
	reader := h.createCred(a.CacheID, false, false, true)
	noFlush := h.createCred(a.CacheID, true, false, false)

	full := dialText(t, h.Addr)
	full.asciiLogin(a)
	full.cmd("set k 0 0 2\r\n10\r\n")
	full.cmd("set other 0 0 1\r\nx\r\n")
	want := map[string]string{"k": "10", "other": "x"}
	checkUnchanged := func(what string) {
		t.Helper()
		for key, v := range want {
			full.cmd("get " + key + "\r\n") // VALUE line
			got := full.line()
			full.line() // END
			if got != v {
				t.Fatalf("after %s: %s = %q, want %q", what, key, got, v)
			}
		}
	}

	ro := dialText(t, h.Addr)
	if got := ro.asciiLogin(reader); got != "STORED" {
		t.Fatalf("reader login: %q", got)
	}
	for _, cmd := range []string{
		"set k 0 0 1\r\nx\r\n", "add new 0 0 1\r\nx\r\n", "replace k 0 0 1\r\nx\r\n",
		"append k 0 0 1\r\nx\r\n", "prepend k 0 0 1\r\nx\r\n", "cas k 0 0 1 1\r\nx\r\n",
		"incr k 1\r\n", "decr k 1\r\n", "touch k 1\r\n", "gat 1 k\r\n", "gats 1 k\r\n",
		"delete k\r\n", "delete other\r\n",
	} {
		if got := ro.cmd(cmd); got != "NOT_STORED" {
			t.Fatalf("reader %q: %q", cmd, got)
		}
	}
	if got := ro.cmd("get k\r\n"); got != "VALUE k 0 2" {
		t.Fatalf("reader cannot read: %q", got)
	}
	ro.line()
	ro.line()
	checkUnchanged("text commands of a reader")

	// The binary protocol, through a SASL client.
	c := mcClient(h.Addr, reader)
	defer c.Quit()
	binOps := map[string]func() error{
		"set":     func() error { _, err := c.Set("k", "x", 0, 0, 0); return err },
		"add":     func() error { _, err := c.Add("new", "x", 0, 0); return err },
		"replace": func() error { _, err := c.Replace("k", "x", 0, 0, 0); return err },
		"append":  func() error { _, err := c.Append("k", "x", 0); return err },
		"prepend": func() error { _, err := c.Prepend("k", "x", 0); return err },
		"incr":    func() error { _, _, err := c.Incr("k", 1, 0, 0, 0); return err },
		"decr":    func() error { _, _, err := c.Decr("k", 1, 0, 0, 0); return err },
		"touch":   func() error { _, err := c.Touch("k", 1); return err },
		"gat":     func() error { _, _, _, err := c.GAT("k", 1); return err },
		"delete":  func() error { return c.Del("other") },
	}
	for name, op := range binOps {
		var mcErr *mc.Error
		if err := op(); !errors.As(err, &mcErr) || mcErr.Status != mc.StatusValueNotStored {
			t.Fatalf("reader binary %s: %v, want not stored", name, err)
		}
	}
	if v, _, _, err := c.Get("k"); err != nil || v != "10" {
		t.Fatalf("reader binary get: %q %v", v, err)
	}
	checkUnchanged("binary commands of a reader")

	// Without flush: text and binary flush_all are refused.
	nf := dialText(t, h.Addr)
	nf.asciiLogin(noFlush)
	if got := nf.cmd("flush_all\r\n"); !strings.HasPrefix(got, "CLIENT_ERROR") || !strings.Contains(got, "flush") {
		t.Fatalf("flush_all without flush: %q", got)
	}
	nfc := mcClient(h.Addr, noFlush)
	defer nfc.Quit()
	if err := nfc.Flush(0); err == nil {
		t.Fatal("binary flush without flush succeeded")
	}
	checkUnchanged("flushes without the flush capability")
	if got := nf.cmd("set w 0 0 1\r\nw\r\n"); got != "STORED" {
		t.Fatalf("write capability without flush: %q", got)
	}
}

func TestRevokedConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	second := h.createCred(a.CacheID, true, true, true)
	connA, connSecond, connB := dialText(t, h.Addr), dialText(t, h.Addr), dialText(t, h.Addr)
	for _, p := range []struct {
		c *textConn
		l login
	}{{connA, a}, {connSecond, second}, {connB, b}} {
		if got := p.c.asciiLogin(p.l); got != "STORED" {
			t.Fatalf("login: %q", got)
		}
	}
	h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", a.CacheID, second.ID), nil, nil)
	if !connSecond.closedByPeer(2 * time.Second) {
		t.Fatal("a deleted credential's connection stayed open")
	}
	if got := connA.cmd("set k 0 0 1\r\nv\r\n"); got != "STORED" {
		t.Fatalf("another credential of the cache: %q", got)
	}
	h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": false}, nil)
	if !connA.closedByPeer(2 * time.Second) {
		t.Fatal("a disabled cache's connection stayed open")
	}
	if got := connB.cmd("set k 0 0 1\r\nv\r\n"); got != "STORED" {
		t.Fatalf("the other cache's connection: %q", got)
	}
	h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d", b.CacheID), nil, nil)
	if !connB.closedByPeer(2 * time.Second) {
		t.Fatal("a deleted cache's connection stayed open")
	}
}

func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	h := startHive(t, "", "--auth-timeout", "1s")
	def := login{Username: h.printed("MEMCACHIER_USERNAME"), Password: h.printed("MEMCACHIER_PASSWORD")}
	opened := time.Now() // before any of the three connections
	idleText := dialText(t, h.Addr)
	idleBinary := dialText(t, h.Addr)
	idleBinary.c.Write([]byte{0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // NOOP: auth error, still unauthenticated
	authed := dialText(t, h.Addr)
	if got := authed.asciiLogin(def); got != "STORED" {
		t.Fatalf("login with the printed credential: %q", got)
	}
	if !idleText.closedByPeer(5 * time.Second) {
		t.Fatal("an unauthenticated text connection stayed open past --auth-timeout")
	}
	// The server counts the timeout from when it accepted the connection,
	// which is after the dial began.
	if waited := time.Since(opened); waited < time.Second {
		t.Fatalf("closed %v after it was opened, before the 1 s timeout", waited)
	}
	reply := make([]byte, 24)
	idleBinary.c.SetReadDeadline(time.Now().Add(4 * time.Second))
	if _, err := io.ReadFull(idleBinary.r, reply); err != nil || reply[7] != 0x20 {
		t.Fatalf("binary before auth: %x %v", reply, err)
	}
	io.ReadFull(idleBinary.r, make([]byte, binary.BigEndian.Uint32(reply[8:12])))
	if !idleBinary.closedByPeer(5 * time.Second) {
		t.Fatal("an unauthenticated binary connection stayed open past --auth-timeout")
	}
	// The authenticated connection, idle as long as the ones just closed
	// and then twice the timeout, is still served.
	if d := time.Until(opened.Add(2 * time.Second)); d > 0 {
		time.Sleep(d)
	}
	if got := authed.cmd("get k\r\n"); got != "END" {
		t.Fatalf("an authenticated idle connection was closed: %q", got)
	}
}

// TestGoSASLClientCASAndStats covers the rest of memcachier/mc's API: the
// CAS forms of every command, DelCAS, StatsWithKey and StatsReset, which
// must reach only the client's own cache.
func TestGoSASLClientCASAndStats(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 16)
	c, cb := mcClient(h.Addr, a), mcClient(h.Addr, b)
	defer c.Quit()
	defer cb.Quit()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	stale := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, mc.ErrKeyExists) {
			t.Fatalf("%s with a stale CAS: %v, want key exists", what, err)
		}
	}
	cas, err := c.Set("k", "v", 0, 0, 0)
	must("set", err)
	_, err = c.Set("k", "x", 0, 0, cas+1)
	stale("set", err)
	cas, err = c.Set("k", "v1", 0, 0, cas)
	must("set with CAS", err)
	_, err = c.Replace("k", "x", 0, 0, cas+1)
	stale("replace", err)
	cas, err = c.Replace("k", "v2", 0, 0, cas)
	must("replace with CAS", err)
	_, err = c.Append("k", "x", cas+1)
	stale("append", err)
	cas, err = c.Append("k", "a", cas)
	must("append with CAS", err)
	_, err = c.Prepend("k", "x", cas+1)
	stale("prepend", err)
	cas, err = c.Prepend("k", "p", cas)
	must("prepend with CAS", err)
	if v, _, gcas, err := c.Get("k"); err != nil || v != "pv2a" || gcas != cas {
		t.Fatalf("after the CAS writes: %q cas %d (want %d) %v", v, gcas, cas, err)
	}
	if _, cas, err = c.Incr("n", 1, 5, 0, 0); err != nil {
		t.Fatalf("incr creating: %v", err)
	}
	_, _, err = c.Incr("n", 1, 0, 0, cas+1)
	stale("incr", err)
	n, cas, err := c.Incr("n", 1, 0, 0, cas)
	if err != nil || n != 6 {
		t.Fatalf("incr with CAS: %d %v", n, err)
	}
	_, _, err = c.Decr("n", 1, 0, 0, cas+1)
	stale("decr", err)
	if n, _, err = c.Decr("n", 6, 0, 0, cas); err != nil || n != 0 {
		t.Fatalf("decr with CAS: %d %v", n, err)
	}
	_, _, gcas, _ := c.Get("k")
	stale("delete", c.DelCAS("k", gcas+1))
	must("delete with CAS", c.DelCAS("k", gcas))
	if _, _, _, err := c.Get("k"); !errors.Is(err, mc.ErrNotFound) {
		t.Fatalf("after DelCAS: %v", err)
	}
	// A delayed flush empties the cache later. memcached takes the delay
	// minus one second, on a clock that ticks once a second: a delay of 3
	// flushes at the second tick from now, more than 1 s and at most 2 s
	// later, so the item is certainly there just after the flush.
	_, err = c.Set("f", "v", 0, 0, 0)
	must("set", err)
	flushed := time.Now()
	must("flush in 3 s", c.Flush(3))
	if _, _, _, err := c.Get("f"); err != nil {
		t.Fatalf("a delayed flush emptied the cache at once: %v", err)
	}
	_, err = cb.Set("bk", "v", 0, 0, 0)
	must("set in b", err)
	for deadline := flushed.Add(6 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, _, _, err := c.Get("f")
		if errors.Is(err, mc.ErrNotFound) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("%v after a flush delayed by 3 s: %v", time.Since(flushed), err)
		}
	}
	if waited := time.Since(flushed); waited < 900*time.Millisecond {
		t.Fatalf("a flush delayed by 3 s emptied the cache after %v", waited)
	}
	if v, _, _, err := cb.Get("bk"); err != nil || v != "v" {
		t.Fatalf("a's delayed flush reached b: %q %v", v, err)
	}

	// Stats groups and reset are per cache.
	for _, group := range []string{"items", "slabs", "settings"} {
		st, err := c.StatsWithKey(group)
		oneServer(t, "stats "+group, st, err)
	}
	// Cache b holds one item ("bk"): its stats items count exactly that,
	// none of a's.
	items, err := cb.StatsWithKey("items")
	counted, classes := 0, 0
	for name, v := range oneServer(t, "cache b's stats items", items, err) {
		if strings.HasSuffix(name, ":number") {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("cache b's stats items: %s %q", name, v)
			}
			counted += n
			classes++
		}
	}
	if classes == 0 || counted != 1 {
		t.Fatalf("cache b's stats items count %d items in %d classes, want its 1 item", counted, classes)
	}
	before, err := c.Stats()
	ab := oneServer(t, "a's stats before b's reset", before, err)
	must("stats reset in b", cb.StatsReset())
	after, err := c.Stats()
	if aa := oneServer(t, "a's stats after b's reset", after, err); aa["cmd_get"] != ab["cmd_get"] || aa["cmd_get"] == "0" || aa["cmd_set"] == "0" {
		t.Fatalf("b's stats reset changed a's counters: cmd_get %s -> %s, cmd_set %s", ab["cmd_get"], aa["cmd_get"], aa["cmd_set"])
	}
	bst, err := cb.Stats()
	if st := oneServer(t, "b's stats after its reset", bst, err); st["cmd_get"] != "0" || st["cmd_set"] != "0" || st["curr_items"] != "1" {
		t.Fatalf("b after its stats reset: cmd_get %s cmd_set %s curr_items %s", st["cmd_get"], st["cmd_set"], st["curr_items"])
	}
	must("stats reset in a", c.StatsReset())
	ast, err := c.Stats()
	// The reset itself is no get: zero, as memcached counts.
	if st := oneServer(t, "a's stats after its reset", ast, err); st["cmd_get"] != "0" || st["cmd_set"] != "0" {
		t.Fatalf("a after its stats reset: cmd_get %s cmd_set %s", st["cmd_get"], st["cmd_set"])
	}
}
