package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/enginetest"
	"github.com/memhive/memhive/tenancy"
)

// The forwarding tests run nodes in-process on loopback: each its own
// Server and Tenants (the same cache and credentials, by tenancy.Fixed),
// sharing nothing but the membership they are given.

const testSecret = "cluster-secret"

type testNode struct {
	name, addr string
	s          *Server
	ts         *tenancy.Tenants
	owners     *tenancy.Owners
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clusterTenants serves cache 1 ("a") with credentials alice (every
// capability, password "ecila") and reader (none, "redaer").
func clusterTenants(t testing.TB) *tenancy.Tenants {
	t.Helper()
	salt := []byte("0123456789abcdef")
	ts, err := tenancy.Fixed(enginetest.Memory(t, 32),
		[]control.Cache{{ID: 1, Name: "a", LimitBytes: 16 << 20, Enabled: true}},
		[]control.Credential{
			{ID: 1, CacheID: 1, Username: "alice", Caps: control.CapAll, Salt: salt, Hash: control.HashPassword(salt, []byte("ecila"))},
			{ID: 2, CacheID: 1, Username: "reader", Caps: 0, Salt: salt, Hash: control.HashPassword(salt, []byte("redaer"))},
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	return ts
}

// startNode runs a node at addr; with owners nil it does not route.
func startNode(t testing.TB, name, addr string, owners *tenancy.Owners, secret string, timeout time.Duration) *testNode {
	t.Helper()
	n := &testNode{name: name, addr: addr, ts: clusterTenants(t), owners: owners}
	cfg := Config{Listen: addr, Threads: 1}
	if owners != nil {
		cfg.Route = &RouteConfig{Owners: owners, Secret: func() string { return secret }, Timeout: timeout}
	}
	n.s = New(cfg, n.ts)
	errc := make(chan error, 1)
	go func() { errc <- n.s.Run() }()
	select {
	case <-n.s.Ready():
	case err := <-errc:
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *testNode) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.s.Stop(ctx)
}

// twoNodes is the membership of nodes a and b on free addresses, and each
// one's view of it.
func twoNodes(t testing.TB) (members []tenancy.Node, oa, ob *tenancy.Owners) {
	members = []tenancy.Node{{Name: "a", Addr: freeAddr(t)}, {Name: "b", Addr: freeAddr(t)}}
	oa, ob = &tenancy.Owners{}, &tenancy.Owners{}
	oa.Set(members, "a")
	ob.Set(members, "b")
	return members, oa, ob
}

// startCluster runs n routing nodes that know each other.
func startCluster(t testing.TB, n int, timeout time.Duration) []*testNode {
	t.Helper()
	var members []tenancy.Node
	for i := 0; i < n; i++ {
		members = append(members, tenancy.Node{Name: fmt.Sprintf("n%d", i), Addr: freeAddr(t)})
	}
	nodes := make([]*testNode, n)
	for i, m := range members {
		o := &tenancy.Owners{}
		o.Set(members, m.Name)
		nodes[i] = startNode(t, m.Name, m.Addr, o, testSecret, timeout)
	}
	return nodes
}

// keyOwnedBy returns a key of prefix's form that node owns.
func keyOwnedBy(t testing.TB, owners *tenancy.Owners, node, prefix string) string {
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("%s%04d", prefix, i)
		if n, _ := owners.Owner(1, []byte(k)); n.Name == node {
			return k
		}
	}
	t.Fatalf("no key for %s", node)
	return ""
}

// client is a logged-in connection to a node.
type client struct {
	t  testing.TB
	nc net.Conn
}

func dialText(t testing.TB, addr, user, pass string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc}
	if got := c.roundTrip(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", user, len(pass), pass), "\r\n"); got != "STORED\r\n" {
		t.Fatalf("login: %q", got)
	}
	return c
}

func dialBinary(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc}
	c.nc.Write(saslAuth("alice", "ecila"))
	if st := binStatus(t, c.readBinary(codec.OpSASLAuth)); st != 0 {
		t.Fatalf("SASL login: status %#x", st)
	}
	return c
}

// roundTrip sends in and reads until the input read ends with end.
func (c *client) roundTrip(in, end string) string {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(in)); err != nil {
		c.t.Fatal(err)
	}
	return c.readUntil(end)
}

func (c *client) readUntil(end string) string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(got, []byte(end)) {
		n, err := c.nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			c.t.Fatalf("reading for %q: %v after %q", end, err, got)
		}
	}
	return string(got)
}

// readBinary reads replies until one with opcode op has come.
func (c *client) readBinary(op byte) string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 64<<10)
	for {
		for off := 0; off+24 <= len(got); {
			l := 24 + int(binary.BigEndian.Uint32(got[off+8:]))
			if off+l > len(got) {
				break
			}
			if got[off+1] == op {
				return string(got)
			}
			off += l
		}
		n, err := c.nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			c.t.Fatalf("reading binary: %v after %q", err, got)
		}
	}
}

// textScript is a sequence of text and meta requests on key K (replaced
// by a key), answered the same by any memcached: no times in replies.
const textScript = `set K 5 0 3
abc
get K
gets K
append K 0 0 2
de
prepend K 0 0 2
xy
get K
cas K 0 0 1 999
z
add K 0 0 1
q
replace K 7 0 2
hi
replace K 0 0 1 noreply
r
get K
delete K
delete K
incr K 1
set K 0 0 2 noreply
10
incr K 5
decr K 100
incr K notanumber
touch K 100
touch K 100 noreply
gat 0 K
gats 0 K
ms K 2 F9 T0
ok
mg K v f
mg K v c k s O77
mg K q
mg K k q
ma K
ma K D3 v
ma K MD
md K q
mg K v O1
mg K q k
md K
ma K N0 J13 v
ms K 2 MA
!!
mg K v
ms K 1 MX
z
mn
`

// refusedScript stores K, then sends a set and an ms too large for the
// cache: memcached drops K's value where it lives.
const refusedScript = "set K 0 0 1\r\nv\r\nset K 0 0 2000000\r\n" + "\x00" + "\r\nget K\r\nms K 1\r\nw\r\nms K 2000000 T0\r\n" + "\x00" + "\r\nmg K v\r\nmn\r\n"

func scriptFor(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(textScript, "\n", "\r\n"), "K", key)
}

// TestForwardTextSameBytes sends a script of every text and meta command
// on keys another node owns through a node that owns none of them, and
// the same script to a node serving everything itself: the bytes agree.
func TestForwardTextSameBytes(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	for _, owner := range []string{"n1", "n2", "n0"} {
		// A fresh reference each time: CAS values count per stripe.
		ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
		key := keyOwnedBy(t, nodes[0].owners, owner, "key")
		script := scriptFor(key)
		want := dialText(t, ref.addr, "alice", "ecila").roundTrip(script, "MN\r\n")
		got := dialText(t, nodes[0].addr, "alice", "ecila").roundTrip(script, "MN\r\n")
		if got != want {
			t.Errorf("key owned by %s:\n got %q\nwant %q", owner, got, want)
		}
		big := strings.Repeat("x", 2000000)
		refused := strings.ReplaceAll(strings.ReplaceAll(refusedScript, "\x00", big), "K", key)
		want = dialText(t, ref.addr, "alice", "ecila").roundTrip(refused, "MN\r\n")
		got = dialText(t, nodes[0].addr, "alice", "ecila").roundTrip(refused, "MN\r\n")
		if got != want || !strings.HasPrefix(got, "STORED\r\n"+codec.ReplyTooLarge+"END\r\n") {
			t.Errorf("too large, key owned by %s:\n got %q\nwant %q", owner, got, want)
		}
		// A request at a time, as a client waiting for each reply.
		c := dialText(t, nodes[0].addr, "alice", "ecila")
		rc := dialText(t, ref.addr, "alice", "ecila")
		for _, line := range []string{"set " + key + " 0 0 1\r\nv\r\n", "get " + key + "\r\n", "mg " + key + " v\r\n"} {
			if g, w := c.roundTrip(line+"mn\r\n", "MN\r\n"), rc.roundTrip(line+"mn\r\n", "MN\r\n"); g != w {
				t.Errorf("%q: got %q want %q", line, g, w)
			}
		}
	}
	if f := nodes[0].ts.Cache(1).Conns.Snapshot().Forwarded; f == 0 {
		t.Error("forwarded_requests not counted")
	}
}

// TestForwardMultiGetOrder: a multi-get over keys of every node answers
// in the client's order, with one END.
func TestForwardMultiGetOrder(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
	var keys []string
	for i := 0; i < 4; i++ {
		for _, n := range []string{"n2", "n0", "n1"} {
			keys = append(keys, keyOwnedBy(t, nodes[0].owners, n, fmt.Sprintf("m%d_%s_", i, n)))
		}
	}
	var sets strings.Builder
	for i, k := range keys {
		if i%4 == 3 {
			continue // some misses
		}
		fmt.Fprintf(&sets, "set %s %d 0 %d\r\n%s\r\n", k, i, len(k), k)
	}
	sets.WriteString("mn\r\n")
	get := "get " + strings.Join(keys, " ") + " nope\r\ngat 100 " + strings.Join(keys[:5], " ") + "\r\nversion\r\n"
	want := dialText(t, ref.addr, "alice", "ecila").roundTrip(sets.String()+get, Version+"\r\n")
	c := dialText(t, nodes[1].addr, "alice", "ecila")
	got := c.roundTrip(sets.String()+get, Version+"\r\n")
	if got != want {
		t.Fatalf("multi-get:\n got %q\nwant %q", got, want)
	}
	// The values landed on their owners.
	for _, n := range nodes {
		if items := n.ts.Cache(1).Snapshot().CurrItems; items == 0 {
			t.Errorf("node %s holds no item", n.name)
		}
	}
	// A meta command with a base64 key goes where its decoded key lives.
	for _, k := range keys[:3] {
		b64 := base64.StdEncoding.EncodeToString([]byte(k))
		if got := c.roundTrip("mg "+b64+" b v k\r\n", "\r\n"+k+"\r\n"); got != "VA 10 k"+k+"\r\n"+k+"\r\n" {
			t.Fatalf("mg %s b: %q", b64, got)
		}
	}
	// gets through one node, cas through another.
	k := keys[0]
	g := dialText(t, nodes[0].addr, "alice", "ecila").roundTrip("gets "+k+"\r\n", "END\r\n")
	var flags, n int
	var cas uint64
	if _, err := fmt.Sscanf(g, "VALUE "+k+" %d %d %d", &flags, &n, &cas); err != nil {
		t.Fatalf("gets: %q: %v", g, err)
	}
	if got := dialText(t, nodes[2].addr, "alice", "ecila").roundTrip(fmt.Sprintf("cas %s 0 0 1 %d\r\nN\r\n", k, cas), "\r\n"); got != "STORED\r\n" {
		t.Fatalf("cas through another node: %q", got)
	}
	if got := c.roundTrip("get "+k+"\r\n", "END\r\n"); got != "VALUE "+k+" 0 1\r\nN\r\nEND\r\n" {
		t.Fatalf("after cas: %q", got)
	}
}

// TestForwardFlushAllEveryNode: flush_all through one node empties the
// cache on every node before it is answered.
func TestForwardFlushAllEveryNode(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	c := dialText(t, nodes[0].addr, "alice", "ecila")
	var keys []string
	for _, n := range []string{"n0", "n1", "n2"} {
		k := keyOwnedBy(t, nodes[0].owners, n, "f")
		keys = append(keys, k)
		c.roundTrip("set "+k+" 0 0 1\r\nv\r\n", "STORED\r\n")
	}
	for _, flush := range []string{"flush_all\r\n", "flush_all 0\r\n"} {
		if got := dialText(t, nodes[1].addr, "alice", "ecila").roundTrip(flush, "\r\n"); got != "OK\r\n" {
			t.Fatalf("%q: %q", flush, got)
		}
		for _, n := range nodes {
			if items := n.ts.Cache(1).Engine().Stats().CmdFlush; items == 0 {
				t.Fatalf("node %s was not flushed", n.name)
			}
		}
		if got := c.roundTrip("get "+strings.Join(keys, " ")+"\r\n", "END\r\n"); got != "END\r\n" {
			t.Fatalf("after %q: %q", flush, got)
		}
		for _, k := range keys {
			c.roundTrip("set "+k+" 0 0 1\r\nv\r\n", "STORED\r\n")
		}
	}
	// Binary FLUSHQ then NOOP: the NOOP comes once every node flushed.
	b := dialBinary(t, nodes[2].addr)
	b.nc.Write(append(binReq(codec.OpFlushQ, 9, nil, nil, nil), binReq(codec.OpNoop, 10, nil, nil, nil)...))
	if got := b.readBinary(codec.OpNoop); len(got) != 24 {
		t.Fatalf("FLUSHQ, NOOP: %q", got)
	}
	if got := c.roundTrip("get "+strings.Join(keys, " ")+"\r\n", "END\r\n"); got != "END\r\n" {
		t.Fatalf("after FLUSHQ: %q", got)
	}
	// Without the flush capability: refused here, never forwarded.
	r := dialText(t, nodes[0].addr, "reader", "redaer")
	c.roundTrip("set "+keys[1]+" 0 0 1\r\nv\r\n", "STORED\r\n")
	if got := r.roundTrip("flush_all\r\nset "+keys[1]+" 0 0 1\r\nw\r\n", "NOT_STORED\r\n"); got != codec.ReplyFlushDenied+"NOT_STORED\r\n" {
		t.Fatalf("denied: %q", got)
	}
	if got := c.roundTrip("get "+keys[1]+"\r\n", "END\r\n"); got != "VALUE "+keys[1]+" 0 1\r\nv\r\nEND\r\n" {
		t.Fatalf("after denied requests: %q", got)
	}
}

// binScript is binary requests on key k, quiet ones included, ended by
// a NOOP.
func binScript(k string) []byte {
	key := []byte(k)
	setExtras := []byte{0, 0, 0, 5, 0, 0, 0, 0}
	var b []byte
	b = append(b, binReq(codec.OpSet, 1, setExtras, key, []byte("hello"))...)
	b = append(b, binReq(codec.OpGet, 2, nil, key, nil)...)
	b = append(b, binReq(codec.OpGetK, 3, nil, key, nil)...)
	b = append(b, binReq(codec.OpGetQ, 4, nil, key, nil)...)
	b = append(b, binReq(codec.OpAppendQ, 5, nil, key, []byte("!"))...)
	b = append(b, binReq(codec.OpGetKQ, 6, nil, key, nil)...)
	b = append(b, binReq(codec.OpAdd, 7, setExtras, key, []byte("x"))...)
	b = append(b, binReq(codec.OpDeleteQ, 8, nil, key, nil)...)
	b = append(b, binReq(codec.OpGetQ, 9, nil, key, nil)...)
	b = append(b, binReq(codec.OpGet, 10, nil, key, nil)...)
	b = append(b, binReq(codec.OpGetK, 11, nil, key, nil)...)
	incr := make([]byte, 20)
	binary.BigEndian.PutUint64(incr[0:], 3)
	binary.BigEndian.PutUint64(incr[8:], 40)
	b = append(b, binReq(codec.OpIncrement, 12, incr, key, nil)...)
	b = append(b, binReq(codec.OpIncrement, 13, incr, key, nil)...)
	b = append(b, binReq(codec.OpDecrementQ, 14, incr, key, nil)...)
	b = append(b, binReq(codec.OpTouch, 15, []byte{0, 0, 0, 100}, key, nil)...)
	b = append(b, binReq(codec.OpGAT, 16, []byte{0, 0, 0, 100}, key, nil)...)
	b = append(b, binReq(codec.OpReplaceQ, 17, setExtras, key, []byte("r"))...)
	b = append(b, binReq(codec.OpGet, 18, nil, key, nil)...)
	b = append(b, binReq(codec.OpDelete, 19, nil, key, nil)...)
	b = append(b, binReq(codec.OpDelete, 20, nil, key, nil)...)
	b = append(b, binReq(codec.OpNoop, 21, nil, nil, nil)...)
	return b
}

func TestForwardBinarySameBytes(t *testing.T) {
	nodes := startCluster(t, 2, time.Second)
	for _, owner := range []string{"n1", "n0"} {
		ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
		key := keyOwnedBy(t, nodes[0].owners, owner, "bin")
		rc := dialBinary(t, ref.addr)
		rc.nc.Write(binScript(key))
		want := rc.readBinary(codec.OpNoop)
		c := dialBinary(t, nodes[0].addr)
		c.nc.Write(binScript(key))
		if got := c.readBinary(codec.OpNoop); got != want {
			t.Errorf("key owned by %s:\n got %q\nwant %q", owner, got, want)
		}
	}
}

// TestForwardOwnerDown: requests for an owner that stops, or never
// answers, are answered with misses and server errors within the
// timeout; the connection goes on serving its own keys.
func TestForwardOwnerDown(t *testing.T) {
	const timeout = 150 * time.Millisecond
	// A peer that accepts and reads, and never answers.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			nc, err := mute.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	members := []tenancy.Node{{Name: "a", Addr: freeAddr(t)}, {Name: "b", Addr: freeAddr(t)}, {Name: "mute", Addr: mute.Addr().String()}}
	oa, ob := &tenancy.Owners{}, &tenancy.Owners{}
	oa.Set(members, "a")
	ob.Set(members, "b")
	a := startNode(t, "a", members[0].Addr, oa, testSecret, timeout)
	b := startNode(t, "b", members[1].Addr, ob, testSecret, timeout)
	kA := keyOwnedBy(t, oa, "a", "own")
	kB := keyOwnedBy(t, oa, "b", "gone")
	kM := keyOwnedBy(t, oa, "mute", "mute")
	c := dialText(t, a.addr, "alice", "ecila")
	if got := c.roundTrip("set "+kB+" 0 0 1\r\nv\r\nget "+kB+"\r\n", "END\r\n"); got != "STORED\r\nVALUE "+kB+" 0 1\r\nv\r\nEND\r\n" {
		t.Fatalf("before the stop: %q", got)
	}
	b.stop()
	for _, k := range []string{kB, kM} {
		start := time.Now()
		in := "get " + k + "\r\nset " + k + " 0 0 1\r\nv\r\nset " + k + " 0 0 1 noreply\r\nv\r\nmg " + k + " v\r\nmg " + k + " v q\r\nmd " + k + "\r\nset " + kA + " 0 0 2\r\nok\r\nget " + kA + " " + k + "\r\nmn\r\n"
		want := "END\r\n" + codec.ReplyForwardFailed + "EN\r\n" + codec.ReplyForwardFailed + "STORED\r\nVALUE " + kA + " 0 2\r\nok\r\nEND\r\nMN\r\n"
		if got := c.roundTrip(in, "MN\r\n"); got != want {
			t.Fatalf("owner of %s down:\n got %q\nwant %q", k, got, want)
		}
		if d := time.Since(start); d > timeout+time.Second {
			t.Errorf("owner of %s down: answered after %v", k, d)
		}
	}
	bc := dialBinary(t, a.addr)
	var in []byte
	in = append(in, binReq(codec.OpGet, 1, nil, []byte(kM), nil)...)
	in = append(in, binReq(codec.OpGetQ, 2, nil, []byte(kM), nil)...)
	in = append(in, binReq(codec.OpSetQ, 3, []byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte(kM), []byte("v"))...)
	in = append(in, binReq(codec.OpNoop, 4, nil, nil, nil)...)
	bc.nc.Write(in)
	got := bc.readBinary(codec.OpNoop)
	want := string(codec.AppendBinaryStatus(nil, codec.OpGet, codec.StatusKeyNotFound, 1))
	want = string(codec.AppendBinaryStatus([]byte(want), codec.OpSetQ, codec.StatusTemporaryFailure, 3))
	want = string(codec.AppendBinaryOK([]byte(want), codec.OpNoop, 4, 0))
	if got != want {
		t.Fatalf("binary, owner mute:\n got %q\nwant %q", got, want)
	}
	if e := a.ts.Cache(1).Conns.Snapshot().ForwardErrors; e < 8 {
		t.Errorf("forward_errors %d", e)
	}
	if got := c.roundTrip("stats\r\n", "END\r\n"); !strings.Contains(got, "STAT forward_errors ") || !strings.Contains(got, "STAT forwarded_requests ") || !strings.Contains(got, "STAT handed_over_items 0\r\n") {
		t.Errorf("stats lack the routing counters: %q", got)
	}
}

// TestPeerWrongSecret: a peer with the wrong secret is refused, and a
// node that has it wrong gets only failures.
func TestPeerWrongSecret(t *testing.T) {
	members, oa, ob := twoNodes(t)
	a := startNode(t, "a", members[0].Addr, oa, "wrong", 200*time.Millisecond)
	b := startNode(t, "b", members[1].Addr, ob, testSecret, 200*time.Millisecond)

	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write(codec.AppendPeerHello(nil, "guess"))
	nc.Write(codec.AppendPeerRequest(nil, 1, 1, codec.PeerText, []byte("get x\r\n")))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a wrong secret was answered (%d bytes)", n)
	}
	if e := b.s.stats.Snapshot().AuthErrors; e == 0 {
		t.Error("the wrong secret was not counted as an auth error")
	}
	kB := keyOwnedBy(t, oa, "b", "k")
	if got := dialText(t, a.addr, "alice", "ecila").roundTrip("set "+kB+" 0 0 1\r\nv\r\nget "+kB+"\r\n", "END\r\n"); got != codec.ReplyForwardFailed+"END\r\n" {
		t.Fatalf("through a node with the wrong secret: %q", got)
	}
}

// TestForwardPipelineOrder pipelines many requests alternating between
// owned and forwarded keys, in one write and cut into small writes: the
// replies come in request order.
func TestForwardPipelineOrder(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
	var in strings.Builder
	for i := 0; i < 600; i++ {
		k := fmt.Sprintf("p%d", i%37)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&in, "set %s 0 0 %d\r\n%d\r\n", k, len(fmt.Sprint(i)), i)
		case 1:
			fmt.Fprintf(&in, "get %s p%d\r\n", k, (i+3)%37)
		case 2:
			fmt.Fprintf(&in, "incr %s 1\r\n", k)
		case 3:
			fmt.Fprintf(&in, "mg %s v k\r\nmn\r\n", k)
		case 4:
			fmt.Fprintf(&in, "delete p%d\r\n", (i*7)%37)
		}
	}
	in.WriteString("version\r\n")
	want := dialText(t, ref.addr, "alice", "ecila").roundTrip(in.String(), "VERSION "+Version+"\r\n")
	c := dialText(t, nodes[2].addr, "alice", "ecila")
	if got := c.roundTrip(in.String(), "VERSION "+Version+"\r\n"); got != want {
		t.Fatalf("pipelined in one write: differs at %d", firstDiffAt(got, want))
	}
	// Again, in pieces of 7 bytes with the replies read meanwhile.
	c2 := dialText(t, nodes[1].addr, "alice", "ecila")
	want = dialText(t, ref.addr, "alice", "ecila").roundTrip(in.String(), "VERSION "+Version+"\r\n")
	done := make(chan string, 1)
	go func() { done <- c2.readUntil("VERSION " + Version + "\r\n") }()
	s := in.String()
	for i := 0; i < len(s); i += 7 {
		c2.nc.Write([]byte(s[i:min(i+7, len(s))]))
	}
	if got := <-done; got != want {
		t.Fatalf("pipelined in pieces: differs at %d", firstDiffAt(got, want))
	}
}

func firstDiffAt(a, b string) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// forwardBench runs get requests for key on node a through a connection
// state of its own (woken like a TLS connection's), waiting for each
// reply: the whole forwarding path, both nodes and their goroutines.
func forwardBench(b *testing.B, a *testNode, key string, depth int) {
	cs := newConn()
	cs.fd = 1
	cs.stats = &tenancy.ConnShard{}
	a.s.bind(cs, a.ts.Cache(1), nil)
	cs.wakeCh = make(chan struct{}, 1)
	var in []byte
	for i := 0; i < depth; i++ {
		in = append(in, "get "+key+"\r\n"...)
	}
	want := strings.Repeat("VALUE "+key+" 0 100\r\n"+strings.Repeat("x", 100)+"\r\nEND\r\n", depth)
	run := func() {
		cs.proto = protoASCII
		a.s.process(cs, in)
		for {
			cs.settle()
			if cs.queue.n == 0 {
				break
			}
			<-cs.wakeCh
		}
		if string(cs.out) != want {
			b.Fatalf("got %q", cs.out)
		}
		cs.resetOut()
	}
	run()
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*depth), "ns/get")
}

// BenchmarkForwardedGet: a get of a key another node owns, forwarded and
// answered, against one the node owns, at pipeline depths 1 and 16.
func BenchmarkForwardedGet(b *testing.B) {
	nodes := startCluster(b, 2, time.Second)
	a := nodes[0]
	c := dialText(b, a.addr, "alice", "ecila")
	for _, owner := range []string{"n1", "n0"} {
		key := keyOwnedBy(b, a.owners, owner, "bench")
		c.roundTrip("set "+key+" 0 0 100\r\n"+strings.Repeat("x", 100)+"\r\n", "\r\n")
		name := "forwarded"
		if owner == "n0" {
			name = "owned"
		}
		for _, depth := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/pipeline=%d", name, depth), func(b *testing.B) { forwardBench(b, a, key, depth) })
		}
	}
}

// TestPeerFramesRunHere: a peer's frames run on this node whatever it
// thinks of their keys' owners (a request is forwarded at most once),
// one reply frame each, empty for noreply; a cache this node does not
// serve answers the protocol's server error.
func TestPeerFramesRunHere(t *testing.T) {
	owners := &tenancy.Owners{}
	owners.Set([]tenancy.Node{{Name: "self", Addr: "127.0.0.1:1"}, {Name: "other", Addr: "127.0.0.1:2"}}, "self")
	s := New(Config{Listen: "127.0.0.1:0", Route: &RouteConfig{Owners: owners, Secret: func() string { return testSecret }}}, clusterTenants(t))
	k := keyOwnedBy(t, owners, "other", "elsewhere")
	var in []byte
	in = codec.AppendPeerHello(in, testSecret)
	in = codec.AppendPeerRequest(in, 1, 1, codec.PeerText, []byte("set "+k+" 0 0 1\r\nv\r\n"))
	in = codec.AppendPeerRequest(in, 2, 1, codec.PeerText, []byte("set "+k+" 0 0 1 noreply\r\nw\r\n"))
	in = codec.AppendPeerRequest(in, 3, 1, codec.PeerText, []byte("get "+k+"\r\n"))
	in = codec.AppendPeerRequest(in, 4, 99, codec.PeerText, []byte("get "+k+"\r\n"))
	in = codec.AppendPeerRequest(in, 5, 99, codec.PeerBinary, binReq(codec.OpGet, 7, nil, []byte(k), nil))
	in = codec.AppendPeerRequest(in, 6, 1, codec.PeerBinary, binReq(codec.OpGetQ, 8, nil, []byte(k), nil))
	// Cut anywhere, the same frames.
	for _, chunk := range []int{len(in), 1, 5, 13} {
		cs := newConn()
		cs.stats = s.stats.Shard(0)
		var buf, out []byte
		for i := 0; i < len(in); i += chunk {
			buf = append(buf, in[i:min(i+chunk, len(in))]...)
			n, closed := s.process(cs, buf)
			if closed {
				t.Fatalf("chunk %d: closed", chunk)
			}
			buf = append(buf[:0], buf[n:]...)
			out = append(out, cs.out...)
			cs.out = cs.out[:0]
		}
		var want []byte
		for i, body := range []string{
			"STORED\r\n", "", "VALUE " + k + " 0 1\r\nw\r\nEND\r\n", codec.ReplyUnknownCache,
			string(codec.AppendBinaryError(nil, codec.OpGet, codec.StatusTemporaryFailure, 7, binaryUnknownCache)),
			"",
		} {
			want = append(codec.AppendPeerReplyHeader(want, uint32(i+1), len(body)), body...)
		}
		// The GETQ hit answers its value.
		want = want[:len(want)-codec.PeerReplyHeaderLen]
		hit := codec.AppendBinaryGet(nil, codec.OpGetQ, 8, 0, 0, nil, []byte("w"))
		if len(out) > len(want)+24 {
			copy(hit[16:24], out[len(want)+codec.PeerReplyHeaderLen+16:]) // its CAS
		}
		want = append(codec.AppendPeerReplyHeader(want, 6, len(hit)), hit...)
		if !bytes.Equal(out, want) || cs.queue.n != 0 {
			t.Fatalf("chunk %d:\n got %q\nwant %q", chunk, out, want)
		}
	}
}

// TestForwardThenQuit: a quit after forwarded requests closes the
// connection once their replies are written.
func TestForwardThenQuit(t *testing.T) {
	nodes := startCluster(t, 2, time.Second)
	k := keyOwnedBy(t, nodes[0].owners, "n1", "q")
	c := dialText(t, nodes[0].addr, "alice", "ecila")
	c.nc.Write([]byte("set " + k + " 0 0 1\r\nv\r\nget " + k + "\r\nquit\r\nget " + k + "\r\n"))
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if want := "STORED\r\nVALUE " + k + " 0 1\r\nv\r\nEND\r\n"; string(got) != want {
		t.Fatalf("got %q, want %q and a close", got, want)
	}
	b := dialBinary(t, nodes[0].addr)
	var in []byte
	in = append(in, binReq(codec.OpGet, 1, nil, []byte(k), nil)...)
	in = append(in, binReq(codec.OpQuit, 2, nil, nil, nil)...)
	b.nc.Write(in)
	if got := b.readBinary(codec.OpQuit); binStatus(t, got) != 0 || len(got) != 24+4+1+24 {
		t.Fatalf("GET, QUIT: %q", got)
	}
}

// TestPeerLeftIsForgotten: once a node has left the membership and cannot
// be reached, the pool of connections to it goes.
func TestPeerLeftIsForgotten(t *testing.T) {
	members, oa, ob := twoNodes(t)
	a := startNode(t, "a", members[0].Addr, oa, testSecret, 200*time.Millisecond)
	b := startNode(t, "b", members[1].Addr, ob, testSecret, 200*time.Millisecond)
	kB := keyOwnedBy(t, oa, "b", "k")
	c := dialText(t, a.addr, "alice", "ecila")
	if got := c.roundTrip("set "+kB+" 0 0 1\r\nv\r\n", "\r\n"); got != "STORED\r\n" {
		t.Fatalf("set: %q", got)
	}
	b.stop()
	oa.Set(members[:1], "a")
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.s.peers.mu.RLock()
		n := len(a.s.peers.m)
		a.s.peers.mu.RUnlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool of a node that left is still there")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Its keys are this node's now.
	if got := c.roundTrip("set "+kB+" 0 0 1\r\nw\r\nget "+kB+"\r\n", "END\r\n"); got != "STORED\r\nVALUE "+kB+" 0 1\r\nw\r\nEND\r\n" {
		t.Fatalf("after the leave: %q", got)
	}
}

// TestForwardRefusedSetDropsStale: a set refused as too large drops the
// key's old value, as memcached does (Server.refused), on the node that
// owns the key, not on the node the client talks to: there the stale value
// would outlive the failed write. Text, meta and binary, each through a
// node that does not own the key, answer as a node serving everything.
// (Found by TestDifferentialCluster, seed 1: a too-large binary SET of a
// key another node owned left its old value readable.)
func TestForwardRefusedSetDropsStale(t *testing.T) {
	nodes := startCluster(t, 2, time.Second)
	ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
	key := keyOwnedBy(t, nodes[0].owners, "n1", "big")
	big := strings.Repeat("v", 2<<20)
	text := fmt.Sprintf("set %s 0 0 3\r\nold\r\nset %s 0 0 %d\r\n%s\r\nget %s\r\n", key, key, len(big), big, key) +
		fmt.Sprintf("set %s 0 0 3\r\nold\r\nms %s %d T0\r\n%s\r\nmg %s v\r\nmn\r\n", key, key, len(big), big, key)
	want := dialText(t, ref.addr, "alice", "ecila").roundTrip(text, "MN\r\n")
	got := dialText(t, nodes[0].addr, "alice", "ecila").roundTrip(text, "MN\r\n")
	if got != want {
		t.Errorf("text and meta:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(want, "cache\r\nEND\r\n") || !strings.HasSuffix(want, "cache\r\nEN\r\nMN\r\n") {
		t.Errorf("the reference kept the old value: %q", want)
	}

	bin := binSet(key, "old")
	bin = append(bin, binReq(codec.OpSet, 7, make([]byte, 8), []byte(key), []byte(big))...)
	bin = append(bin, binReq(codec.OpGet, 8, nil, []byte(key), nil)...)
	bin = append(bin, binReq(codec.OpNoop, 9, nil, nil, nil)...)
	rc := dialBinary(t, ref.addr)
	rc.nc.Write(bin)
	wantBin := rc.readBinary(codec.OpNoop)
	c := dialBinary(t, nodes[0].addr)
	c.nc.Write(bin)
	if gotBin := c.readBinary(codec.OpNoop); gotBin != wantBin {
		t.Errorf("binary:\n got %q\nwant %q", gotBin, wantBin)
	}
	if items := nodes[1].ts.Cache(1).Snapshot().CurrItems; items != 0 {
		t.Errorf("the owner holds %d items after the refused sets, want 0", items)
	}

	// Without write capability a refused set drops nothing, here or on
	// the owner: a read-only credential must not delete a key by sending
	// one too large.
	alice := dialText(t, nodes[0].addr, "alice", "ecila")
	if got := alice.roundTrip(fmt.Sprintf("set %s 0 0 3\r\nold\r\n", key), "\r\n"); got != "STORED\r\n" {
		t.Fatalf("set: %q", got)
	}
	reader := dialText(t, nodes[0].addr, "reader", "redaer")
	reader.roundTrip(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\nmn\r\n", key, len(big), big), "MN\r\n")
	if got := alice.roundTrip("get "+key+"\r\n", "END\r\n"); got != "VALUE "+key+" 0 3\r\nold\r\nEND\r\n" {
		t.Errorf("a read-only credential's refused set dropped the owner's value: get answers %q", got)
	}
}

// TestForwardGatTouchesBeforeError: a gat or gats whose keys end in one
// too long answers only the error, as memcached does, but memcached has
// touched the keys before it: so must their owners. Here the touch
// expires them (-1); a node that owns none of the keys answers as a node
// serving everything. (Found by TestDifferentialCluster, seed
// 1796310173678518498: a gats with a long key left a key alive on its
// owner that memcached had expired.)
func TestForwardGatTouchesBeforeError(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
	k1 := keyOwnedBy(t, nodes[0].owners, "n1", "gt")
	k2 := keyOwnedBy(t, nodes[0].owners, "n2", "gt")
	k0 := keyOwnedBy(t, nodes[0].owners, "n0", "gt")
	long := strings.Repeat("L", 251)
	var script strings.Builder
	for _, k := range []string{k1, k2, k0} {
		fmt.Fprintf(&script, "set %s 0 0 1\r\nv\r\n", k)
	}
	fmt.Fprintf(&script, "gats -1 %s %s %s %s\r\nget %s %s %s\r\n", k1, k0, k2, long, k1, k2, k0)
	fmt.Fprintf(&script, "set %s 0 0 1\r\nv\r\ngat -1 %s %s\r\nget %s\r\nmn\r\n", k1, k1, long, k1)
	want := dialText(t, ref.addr, "alice", "ecila").roundTrip(script.String(), "MN\r\n")
	if strings.Contains(want, "VALUE") {
		t.Fatalf("the reference kept touched keys alive: %q", want)
	}
	got := dialText(t, nodes[0].addr, "alice", "ecila").roundTrip(script.String(), "MN\r\n")
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestForwardGetLooksUpBeforeError: a get or gets whose keys end in one
// too long answers only the error, but memcached has looked up the keys
// before it, marking hits fetched (mg h says so later): so must their
// owners, and the reply must be what a node serving everything answers.
// (Found by TestDifferentialCluster, seed 1796321519779437762: mg h
// answered h0 for a key memcached had fetched in such a get.)
func TestForwardGetLooksUpBeforeError(t *testing.T) {
	nodes := startCluster(t, 3, time.Second)
	ref := startNode(t, "ref", freeAddr(t), nil, "", 0)
	k1 := keyOwnedBy(t, nodes[0].owners, "n1", "gl")
	k2 := keyOwnedBy(t, nodes[0].owners, "n2", "gl")
	k0 := keyOwnedBy(t, nodes[0].owners, "n0", "gl")
	long := strings.Repeat("L", 251)
	var script strings.Builder
	for _, k := range []string{k1, k2, k0} {
		fmt.Fprintf(&script, "set %s 0 0 1\r\nv\r\n", k)
	}
	fmt.Fprintf(&script, "get %s %s %s\r\ngets %s %s\r\n", k1, long, k2, k2, long)
	for _, k := range []string{k1, k2, k0} {
		fmt.Fprintf(&script, "mg %s h\r\n", k)
	}
	script.WriteString("mn\r\n")
	want := dialText(t, ref.addr, "alice", "ecila").roundTrip(script.String(), "MN\r\n")
	if !strings.Contains(want, "HD h1\r\nHD h1\r\nHD h0\r\n") {
		t.Fatalf("the reference did not mark the keys before the long one fetched: %q", want)
	}
	got := dialText(t, nodes[0].addr, "alice", "ecila").roundTrip(script.String(), "MN\r\n")
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
