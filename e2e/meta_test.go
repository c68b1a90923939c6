package e2e

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/QuangTung97/go-memcache/memcache"

	"github.com/memhive/memhive/internal/testserver"
)

// metaStep is one client call and what it returned, CAS values replaced by
// their order of appearance so that two servers' runs compare.
type metaStep struct {
	Call, Type string
	Data       string
	Flags      memcache.MGetFlags
	CAS        int
	Err        string
}

// metaScenario drives a server through the lease (stale-while-revalidate)
// cycle QuangTung97/go-memcache is built for, pipelined: miss and win a
// lease, fill it with the lease's CAS, invalidate, recache, and the races
// in between.
func metaScenario(t *testing.T, addr string) []metaStep {
	t.Helper()
	c, err := memcache.New(addr, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := c.Pipeline()
	defer p.Finish()

	var steps []metaStep
	casOrder := map[uint64]int{}
	ord := func(cas uint64) int {
		if cas == 0 {
			return 0
		}
		if _, ok := casOrder[cas]; !ok {
			casOrder[cas] = len(casOrder) + 1
		}
		return casOrder[cas]
	}
	errString := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	get := func(key string, opts memcache.MGetOptions) memcache.MGetResponse {
		r, err := p.MGet(key, opts)()
		steps = append(steps, metaStep{Call: fmt.Sprintf("mg %s %+v", key, opts), Type: fmt.Sprint(r.Type),
			Data: string(r.Data), Flags: r.Flags, CAS: ord(r.CAS), Err: errString(err)})
		return r
	}
	set := func(key, value string, opts memcache.MSetOptions) {
		r, err := p.MSet(key, []byte(value), opts)()
		steps = append(steps, metaStep{Call: fmt.Sprintf("ms %s %q cas#%d ttl=%d", key, value, ord(opts.CAS), opts.TTL),
			Type: fmt.Sprint(r.Type), Err: errString(err)})
	}
	del := func(key string, opts memcache.MDelOptions) {
		r, err := p.MDel(key, opts)()
		steps = append(steps, metaStep{Call: fmt.Sprintf("md %s cas#%d I=%v ttl=%d", key, ord(opts.CAS), opts.I, opts.TTL),
			Type: fmt.Sprint(r.Type), Err: errString(err)})
	}

	// A miss with N: the first reader wins the lease (W), the next sees
	// that it is taken (Z).
	lease := get("user:1", memcache.MGetOptions{N: 30, CAS: true})
	get("user:1", memcache.MGetOptions{N: 30, CAS: true})
	// The winner fills it with the lease's CAS; a second fill with the
	// same CAS fails.
	set("user:1", "alice", memcache.MSetOptions{CAS: lease.CAS, TTL: 300})
	set("user:1", "mallory", memcache.MSetOptions{CAS: lease.CAS, TTL: 300})
	hit := get("user:1", memcache.MGetOptions{CAS: true})
	// Invalidation marks it stale (X) and the next reader wins (W).
	del("user:1", memcache.MDelOptions{CAS: hit.CAS, I: true, TTL: 30})
	relead := get("user:1", memcache.MGetOptions{N: 30, CAS: true})
	get("user:1", memcache.MGetOptions{N: 30, CAS: true})
	set("user:1", "alice v2", memcache.MSetOptions{CAS: relead.CAS, TTL: 300})
	get("user:1", memcache.MGetOptions{CAS: true})
	// A plain delete, then a miss without N.
	del("user:1", memcache.MDelOptions{})
	get("user:1", memcache.MGetOptions{})
	del("user:1", memcache.MDelOptions{})

	// Many pipelined calls at once, as the library batches them (it
	// cannot send an empty value: it leaves out a length of 0).
	var fns []func() (memcache.MSetResponse, error)
	for i := 0; i < 200; i++ {
		fns = append(fns, p.MSet("k"+strconv.Itoa(i), []byte(strings.Repeat("v", i+1)), memcache.MSetOptions{}))
	}
	for i, fn := range fns {
		r, err := fn()
		if err != nil || r.Type != memcache.MSetResponseTypeHD {
			t.Fatalf("pipelined ms %d: %+v %v", i, r, err)
		}
	}
	var gets []func() (memcache.MGetResponse, error)
	for i := 0; i < 200; i++ {
		gets = append(gets, p.MGet("k"+strconv.Itoa(i), memcache.MGetOptions{}))
	}
	for i, fn := range gets {
		r, err := fn()
		if err != nil || string(r.Data) != strings.Repeat("v", i+1) {
			t.Fatalf("pipelined mg %d: %+v %v", i, r, err)
		}
	}
	if err := p.FlushAll()(); err != nil {
		t.Fatalf("flush_all: %v", err)
	}
	get("k1", memcache.MGetOptions{})
	return steps
}

// TestMetaClientLeases runs a real meta-protocol client
// (github.com/QuangTung97/go-memcache) through leases, invalidation and
// pipelining against memhive and against Debian's memcached, and wants the
// same answers from both.
func TestMetaClientLeases(t *testing.T) {
	hive := testserver.StartMemhive(t)
	mc := testserver.StartMemcached(t)
	got := metaScenario(t, hive.Addr)
	want := metaScenario(t, mc.Addr)
	if !reflect.DeepEqual(got, want) {
		for i := range max(len(got), len(want)) {
			var g, w metaStep
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("step %d:\n memhive:   %+v\n memcached: %+v", i, g, w)
			}
		}
		t.FailNow()
	}
	// The scenario must have seen the lease flags, or it proves nothing.
	var flags memcache.MGetFlags
	for _, s := range got {
		flags |= s.Flags
	}
	if flags != memcache.MGetFlagW|memcache.MGetFlagX|memcache.MGetFlagZ {
		t.Fatalf("the scenario saw flags %b, want W, X and Z", flags)
	}
}

// TestMetaAuthAndCapabilities: meta commands need the same login as the
// text protocol, count in the classic counters, and without write change
// nothing.
func TestMetaAuthAndCapabilities(t *testing.T) {
	h, a, _ := twoCaches(t, 8)
	// Before logging in, a meta command is refused and the connection
	// closed.
	pre := dialText(t, h.Addr)
	if got := pre.cmd("mg k v\r\n"); got != "CLIENT_ERROR unauthenticated" {
		t.Fatalf("mg before login: %q", got)
	}
	if !pre.closedByPeer(2 * time.Second) {
		t.Fatal("connection left open after an unauthenticated mg")
	}

	c := dialText(t, h.Addr)
	if got := c.asciiLogin(a); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	before := c.stats()
	for _, step := range []struct{ send, want string }{
		{"ms m1 5 T0 F7\r\nhello\r\n", "HD"},
		{"mg m1 v f k\r\n", "VA 5 f7 km1"},
		{"", "hello"}, // the value line after its header
		{"mg nope v\r\n", "EN"},
		{"ma cnt N0 J5 v\r\n", "VA 1"},
		{"", "5"},
		{"md m1 q\r\nmn\r\n", "MN"},
	} {
		var got string
		if step.send == "" {
			got = c.line()
		} else {
			got = c.cmd(step.send)
		}
		if got != step.want {
			t.Fatalf("%q: got %q, want %q", step.send, got, step.want)
		}
	}
	after := c.stats()
	for stat, delta := range map[string]int{"cmd_get": 2, "get_hits": 1, "get_misses": 1, "cmd_set": 1, "delete_hits": 1} {
		b, _ := strconv.Atoi(before[stat])
		a, _ := strconv.Atoi(after[stat])
		if a-b != delta {
			t.Errorf("%s went from %d to %d, want +%d", stat, b, a, delta)
		}
	}

	ro := h.createCred(a.CacheID, false, false, false)
	r := dialText(t, h.Addr)
	if got := r.asciiLogin(ro); got != "STORED" {
		t.Fatalf("read-only login: %q", got)
	}
	for _, cmd := range []string{"ms cnt 1 O1\r\n9\r\n", "md cnt O2\r\n", "ma cnt O3\r\n", "mg cnt T100 O4\r\n", "mg new N30 O5\r\n"} {
		if got := r.cmd(cmd); !strings.HasPrefix(got, "NS O") {
			t.Fatalf("read-only %q: %q", cmd, got)
		}
	}
	if got := r.cmd("mg cnt v t\r\n"); got != "VA 1 t-1" {
		t.Fatalf("after refused changes, cnt: %q", got)
	}
	if got := r.line(); got != "5" {
		t.Fatalf("after refused changes, cnt's value: %q", got)
	}
	if got := r.cmd("mg new\r\n"); got != "EN" {
		t.Fatalf("a refused mg N created the item: %q", got)
	}
}
