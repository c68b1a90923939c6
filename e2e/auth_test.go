package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Binary opcodes and statuses the raw binary tests use (protocol_binary.h).
const (
	opGet, opSet, opAdd, opReplace, opDelete  = 0x00, 0x01, 0x02, 0x03, 0x04
	opIncr, opDecr, opFlush, opNoop           = 0x05, 0x06, 0x08, 0x0a
	opAppend, opPrepend                       = 0x0e, 0x0f
	opSetQ, opAddQ, opReplaceQ, opDeleteQ     = 0x11, 0x12, 0x13, 0x14
	opIncrQ, opDecrQ, opFlushQ                = 0x15, 0x16, 0x18
	opAppendQ, opPrependQ                     = 0x19, 0x1a
	opTouch, opGAT, opGATQ, opGATK, opGATKQ   = 0x1c, 0x1d, 0x1e, 0x23, 0x24
	opSASLList, opSASLAuth                    = 0x20, 0x21
	stOK, stNotFound, stTooLarge, stNotStored = 0x00, 0x01, 0x03, 0x05
	stAuthError                               = 0x20
)

// binReply is one binary response.
type binReply struct {
	op     byte
	status uint16
	opaque uint32
	cas    uint64
	extras []byte
	key    []byte
	value  []byte
}

// binConn is a raw binary-protocol connection.
type binConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialBinary(t testing.TB, addr string) *binConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &binConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes one request without reading anything.
func (b *binConn) send(op byte, key, extras, value []byte, cas uint64, opaque uint32) {
	b.t.Helper()
	h := make([]byte, 24, 24+len(extras)+len(key)+len(value))
	h[0], h[1] = 0x80, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	binary.BigEndian.PutUint32(h[12:], opaque)
	binary.BigEndian.PutUint64(h[16:], cas)
	h = append(append(append(h, extras...), key...), value...)
	b.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.c.Write(h); err != nil {
		b.t.Fatalf("binary write: %v", err)
	}
}

// recv reads one response.
func (b *binConn) recv() binReply {
	b.t.Helper()
	b.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h := make([]byte, 24)
	if _, err := io.ReadFull(b.r, h); err != nil {
		b.t.Fatalf("binary read: %v", err)
	}
	if h[0] != 0x81 {
		b.t.Fatalf("binary response magic %#x", h[0])
	}
	body := make([]byte, binary.BigEndian.Uint32(h[8:]))
	if _, err := io.ReadFull(b.r, body); err != nil {
		b.t.Fatalf("binary read body: %v", err)
	}
	kl, el := int(binary.BigEndian.Uint16(h[2:])), int(h[4])
	return binReply{
		op: h[1], status: binary.BigEndian.Uint16(h[6:]), opaque: binary.BigEndian.Uint32(h[12:]),
		cas: binary.BigEndian.Uint64(h[16:]), extras: body[:el], key: body[el : el+kl], value: body[el+kl:],
	}
}

// do sends one request and reads its response.
func (b *binConn) do(op byte, key, extras, value []byte, cas uint64) binReply {
	b.t.Helper()
	b.send(op, key, extras, value, cas, 0)
	return b.recv()
}

// auth logs in with SASL PLAIN and returns the status.
func (b *binConn) auth(l login) uint16 {
	b.t.Helper()
	return b.do(opSASLAuth, []byte("PLAIN"), nil, []byte("\x00"+l.Username+"\x00"+l.Password), 0).status
}

// closedByPeer reports whether the server closed the connection within
// limit, discarding whatever it answered first.
func (b *binConn) closedByPeer(limit time.Duration) bool {
	b.c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, b.r)
	return err == nil
}

func storeExtras(flags, exptime uint32) []byte {
	e := make([]byte, 8)
	binary.BigEndian.PutUint32(e, flags)
	binary.BigEndian.PutUint32(e[4:], exptime)
	return e
}

func arithExtras(delta, initial uint64, exptime uint32) []byte {
	e := make([]byte, 20)
	binary.BigEndian.PutUint64(e, delta)
	binary.BigEndian.PutUint64(e[8:], initial)
	binary.BigEndian.PutUint32(e[16:], exptime)
	return e
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// snapshot is a key's value, flags and CAS as a full credential reads them
// over the binary protocol ("" and found false when missing).
type snapshot struct {
	found bool
	value string
	flags uint32
	cas   uint64
}

func (b *binConn) snapshot(key string) snapshot {
	b.t.Helper()
	r := b.do(opGet, []byte(key), nil, nil, 0)
	switch r.status {
	case stOK:
		return snapshot{true, string(r.value), binary.BigEndian.Uint32(r.extras), r.cas}
	case stNotFound:
		return snapshot{}
	}
	b.t.Fatalf("get %s: status %#x", key, r.status)
	return snapshot{}
}

// seedKeys stores the keys the capability tests try to change, with a full
// credential, and returns what they hold.
func seedKeys(t *testing.T, full *binConn) map[string]snapshot {
	t.Helper()
	for key, v := range map[string]string{"k": "10", "other": "x", "counter": "5", "t": "ttl"} {
		if r := full.do(opSet, []byte(key), storeExtras(3, 0), []byte(v), 0); r.status != stOK {
			t.Fatalf("seeding %s: status %#x", key, r.status)
		}
	}
	want := map[string]snapshot{}
	for _, key := range []string{"k", "other", "counter", "t", "new", "absent"} {
		want[key] = full.snapshot(key)
	}
	return want
}

// checkSnapshots fails unless every key is exactly as seeded: same value,
// flags and CAS, and the missing ones still missing.
func checkSnapshots(t *testing.T, full *binConn, want map[string]snapshot, after string) {
	t.Helper()
	for key, w := range want {
		if got := full.snapshot(key); got != w {
			t.Fatalf("after %s: %s is %+v, was %+v", after, key, got, w)
		}
	}
}

// TestBinaryCapabilitiesEveryOpcode sends every binary opcode that changes
// a cache, loud and quiet, from a read-only credential, and every flush
// from one without flush; a full credential then finds every key exactly
// as it was: value, flags, CAS and, once the same touches and a delayed
// flush from credentials allowed them have taken effect, still present.
func TestBinaryCapabilitiesEveryOpcode(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	reader := h.createCred(a.CacheID, false, true, false)
	noFlush := h.createCred(a.CacheID, true, false, false)
	full := dialBinary(t, h.Addr)
	if st := full.auth(a); st != stOK {
		t.Fatalf("full credential: SASL status %#x", st)
	}
	want := seedKeys(t, full)
	kCAS := want["k"].cas

	ro := dialBinary(t, h.Addr)
	if st := ro.auth(reader); st != stOK {
		t.Fatalf("read-only credential: SASL status %#x", st)
	}
	type req struct {
		name   string
		op     byte
		key    string
		extras []byte
		value  string
		cas    uint64
	}
	se := storeExtras(9, 1)
	reqs := []req{
		{"SET", opSet, "k", se, "x", 0}, {"SETQ", opSetQ, "k", se, "x", 0},
		{"SET with CAS", opSet, "k", se, "x", kCAS}, {"SETQ with CAS", opSetQ, "k", se, "x", kCAS},
		{"SET new", opSet, "new", se, "x", 0},
		{"ADD", opAdd, "new", se, "x", 0}, {"ADDQ", opAddQ, "new", se, "x", 0},
		{"REPLACE", opReplace, "k", se, "x", 0}, {"REPLACEQ", opReplaceQ, "k", se, "x", 0},
		{"REPLACE with CAS", opReplace, "k", se, "x", kCAS},
		{"APPEND", opAppend, "k", nil, "x", 0}, {"APPENDQ", opAppendQ, "k", nil, "x", 0},
		{"PREPEND", opPrepend, "k", nil, "x", 0}, {"PREPENDQ", opPrependQ, "k", nil, "x", 0},
		{"INCR", opIncr, "counter", arithExtras(1, 0, 0), "", 0}, {"INCRQ", opIncrQ, "counter", arithExtras(1, 0, 0), "", 0},
		{"INCR creating", opIncr, "absent", arithExtras(1, 7, 0), "", 0},
		{"DECR", opDecr, "counter", arithExtras(1, 0, 0), "", 0}, {"DECRQ", opDecrQ, "counter", arithExtras(1, 0, 0), "", 0},
		{"DECR creating", opDecrQ, "absent", arithExtras(1, 7, 0), "", 0},
		{"TOUCH", opTouch, "t", u32(1), "", 0},
		{"GAT", opGAT, "t", u32(1), "", 0}, {"GATQ", opGATQ, "t", u32(1), "", 0},
		{"GATK", opGATK, "t", u32(1), "", 0}, {"GATKQ", opGATKQ, "t", u32(1), "", 0},
		{"DELETE", opDelete, "other", nil, "", 0}, {"DELETEQ", opDeleteQ, "other", nil, "", 0},
		{"DELETE with CAS", opDelete, "k", nil, "", kCAS},
	}
	for i, r := range reqs {
		// Each request is followed by a NOOP, so a quiet command's answer
		// (or its absence) is unambiguous.
		ro.send(r.op, []byte(r.key), r.extras, []byte(r.value), r.cas, uint32(i+1))
		ro.send(opNoop, nil, nil, nil, 0, 0)
		got := ro.recv()
		if got.op == opNoop {
			t.Fatalf("read-only %s: no answer (a quiet success?), want status NOT_STORED (0x05)", r.name)
		}
		if got.op != r.op || got.status != stNotStored || got.opaque != uint32(i+1) {
			t.Fatalf("read-only %s: opcode %#x status %#x opaque %d, want opcode %#x status 0x05", r.name, got.op, got.status, got.opaque, r.op)
		}
		if n := ro.recv(); n.op != opNoop {
			t.Fatalf("read-only %s: a second answer %#x before the NOOP's", r.name, n.op)
		}
	}
	// Reading is allowed.
	if got := ro.do(opGet, []byte("k"), nil, nil, 0); got.status != stOK || string(got.value) != "10" {
		t.Fatalf("read-only GET: status %#x value %q", got.status, got.value)
	}
	// A set too large for any cache: memcached drops the key's old value
	// then; a credential without write must not be able to.
	big := make([]byte, 1536<<10)
	if got := ro.do(opSet, []byte("k"), se, big, 0); got.status != stNotStored && got.status != stTooLarge {
		t.Fatalf("read-only too-large SET: status %#x", got.status)
	}

	// Without flush: FLUSH and FLUSHQ, now or delayed, are refused with an
	// auth error.
	nf := dialBinary(t, h.Addr)
	if st := nf.auth(noFlush); st != stOK {
		t.Fatalf("no-flush credential: SASL status %#x", st)
	}
	for _, f := range []struct {
		name   string
		op     byte
		extras []byte
	}{{"FLUSH", opFlush, nil}, {"FLUSH 0", opFlush, u32(0)}, {"FLUSH 1", opFlush, u32(1)}, {"FLUSHQ", opFlushQ, nil}, {"FLUSHQ 1", opFlushQ, u32(1)}} {
		nf.send(f.op, nil, f.extras, nil, 0, 77)
		nf.send(opNoop, nil, nil, nil, 0, 0)
		got := nf.recv()
		if got.op != f.op || got.status != stAuthError {
			t.Fatalf("no-flush %s: opcode %#x status %#x, want %#x status 0x20", f.name, got.op, got.status, f.op)
		}
		if n := nf.recv(); n.op != opNoop {
			t.Fatalf("no-flush %s: a second answer %#x", f.name, n.op)
		}
	}
	checkSnapshots(t, full, want, "the read-only and no-flush requests")

	// The refused touches asked for a 1 s expiry, and the refused flushes
	// for a delay of 1 s: taken, they would show once the server clock has
	// passed the second after the one they came in. The clock is read after
	// them; then a writer makes the same touches, on keys of their own, and
	// a credential with flush the same delayed flush, in cache b (every
	// cache runs on the one server clock). Those must take effect; once
	// they have, and the clock is a whole tick further still, the refused
	// ones have had all their time, however the ticks fell.
	clock := dialText(t, h.Addr)
	if got := clock.asciiLogin(a); got != "STORED" {
		t.Fatalf("text login: %q", got)
	}
	asked := readServerClock(t, clock)
	var touched []string
	for i, r := range reqs {
		if r.key != "t" {
			continue
		}
		key := "touched-by-writer-" + r.name
		if got := full.do(opSet, []byte(key), storeExtras(3, 0), []byte("ttl"), 0); got.status != stOK {
			t.Fatalf("writer SET %s: status %#x", key, got.status)
		}
		full.send(r.op, []byte(key), r.extras, nil, 0, uint32(100+i))
		full.send(opNoop, nil, nil, nil, 0, 0)
		if got := full.recv(); got.op != r.op || got.status != stOK || got.opaque != uint32(100+i) {
			t.Fatalf("writer %s: opcode %#x status %#x opaque %d, want opcode %#x status 0", r.name, got.op, got.status, got.opaque, r.op)
		}
		if n := full.recv(); n.op != opNoop {
			t.Fatalf("writer %s: a second answer %#x before the NOOP's", r.name, n.op)
		}
		touched = append(touched, key)
	}
	flusher := dialBinary(t, h.Addr)
	if st := flusher.auth(b); st != stOK {
		t.Fatalf("cache b: SASL status %#x", st)
	}
	if got := flusher.do(opSet, []byte("flushed"), storeExtras(0, 0), []byte("x"), 0); got.status != stOK {
		t.Fatalf("cache b SET: status %#x", got.status)
	}
	if got := flusher.do(opFlush, nil, u32(1), nil, 0); got.status != stOK {
		t.Fatalf("cache b FLUSH 1: status %#x", got.status)
	}
	pollUntil(t, 10*time.Second, "the writer's touches to 1 s and cache b's FLUSH 1 to take effect", func() bool {
		for _, key := range touched {
			if full.snapshot(key).found {
				return false
			}
		}
		return !flusher.snapshot("flushed").found
	})
	waitServerClock(t, clock, asked+2)
	checkSnapshots(t, full, want, "the touches' and delayed flushes' time")

	// The capabilities are the credential's, not the connection's: granting
	// write to the reader takes effect on its open connection.
	if st := h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", a.CacheID, reader.ID), map[string]any{"write": true}, nil); st != 200 {
		t.Fatalf("granting write: status %d", st)
	}
	if got := ro.do(opSet, []byte("granted"), se, []byte("y"), 0); got.status != stOK {
		t.Fatalf("SET after write was granted: status %#x", got.status)
	}
	if st := h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", a.CacheID, reader.ID), map[string]any{"write": false}, nil); st != 200 {
		t.Fatalf("revoking write: status %d", st)
	}
	if got := ro.do(opDelete, []byte("granted"), nil, nil, 0); got.status != stNotStored {
		t.Fatalf("DELETE after write was revoked: status %#x", got.status)
	}
}

// TestTextCapabilitiesNoreplyAndTooLarge covers what TestCapabilities does
// not: the noreply forms, cas with the item's real CAS, a too-large set,
// and expiry changes from touch and gat, all from a read-only credential
// over the text protocol; the same touches from a writer, and a delayed
// flush with the flush capability, take effect.
func TestTextCapabilitiesNoreplyAndTooLarge(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	reader := h.createCred(a.CacheID, false, true, true)
	noFlush := h.createCred(a.CacheID, true, false, true)
	full := dialBinary(t, h.Addr)
	full.auth(a)
	want := seedKeys(t, full)
	kCAS := strconv.FormatUint(want["k"].cas, 10)

	ro := dialText(t, h.Addr)
	if got := ro.asciiLogin(reader); got != "STORED" {
		t.Fatalf("reader login: %q", got)
	}
	for _, cmd := range []string{
		"cas k 9 0 1 " + kCAS + "\r\nx\r\n", "touch t 1\r\n", "gat 1 t\r\n", "gats 1 t k\r\n",
		"incr counter 1\r\n", "decr counter 1\r\n", "delete other\r\n", "delete other 0\r\n",
	} {
		if got := ro.cmd(cmd); got != "NOT_STORED" {
			t.Fatalf("reader %q: %q, want NOT_STORED", cmd, got)
		}
	}
	// noreply: memcached suppresses NOT_STORED then; either way nothing
	// may change, and nothing but NOT_STORED may be answered.
	noreply := []string{
		"set k 9 0 1 noreply\r\nx\r\n", "add new 9 0 1 noreply\r\nx\r\n", "replace k 9 0 1 noreply\r\nx\r\n",
		"append k 9 0 1 noreply\r\nx\r\n", "prepend k 9 0 1 noreply\r\nx\r\n",
		"cas k 9 0 1 " + kCAS + " noreply\r\nx\r\n", "incr counter 1 noreply\r\n", "decr counter 1 noreply\r\n",
		"touch t 1 noreply\r\n", "delete other noreply\r\n",
	}
	io.WriteString(ro.c, strings.Join(noreply, "")+"version\r\n")
	for l := ro.line(); !strings.HasPrefix(l, "VERSION "); l = ro.line() {
		if l != "NOT_STORED" {
			t.Fatalf("reader's noreply commands answered %q", l)
		}
	}
	// A set too large for any cache: memcached unlinks the key's old value
	// then; a credential without write must not be able to.
	big := strings.Repeat("z", 1536<<10)
	got := ro.cmd("set k 0 0 " + strconv.Itoa(len(big)) + "\r\n" + big + "\r\n")
	if got != "NOT_STORED" && got != "SERVER_ERROR object too large for cache" {
		t.Fatalf("reader's too-large set: %q", got)
	}
	if got := ro.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Fatalf("after the too-large set: %q", got)
	}

	nf := dialText(t, h.Addr)
	nf.asciiLogin(noFlush)
	for _, cmd := range []string{"flush_all\r\n", "flush_all 0\r\n", "flush_all 1\r\n"} {
		if got := nf.cmd(cmd); !strings.HasPrefix(got, "CLIENT_ERROR") || !strings.Contains(got, "flush") {
			t.Fatalf("no-flush %q: %q", cmd, got)
		}
	}
	io.WriteString(nf.c, "flush_all noreply\r\nflush_all 1 noreply\r\nversion\r\n")
	for l := nf.line(); !strings.HasPrefix(l, "VERSION "); l = nf.line() {
		if !strings.HasPrefix(l, "CLIENT_ERROR") {
			t.Fatalf("no-flush flush_all noreply answered %q", l)
		}
	}
	// A flush_all with a bad delay counts in cmd_flush for memcached (it
	// counts before reading the delay), but not from a credential that
	// may not flush: nothing it refuses is counted.
	if got := nf.cmd("flush_all abc\r\n"); got != "CLIENT_ERROR invalid exptime argument" {
		t.Fatalf("no-flush flush_all abc: %q", got)
	}
	if got := nf.stats()["cmd_flush"]; got != "0" {
		t.Fatalf("cmd_flush after refused flushes: %s, want 0", got)
	}
	checkSnapshots(t, full, want, "the reader's text commands")

	// As in TestBinaryCapabilitiesEveryOpcode: the clock is read after the
	// refused touches and flushes, a writer then makes the same touches on
	// keys of its own and cache b the same delayed flush; once those have
	// taken effect and the clock is a tick further, the refused ones have
	// had all their time.
	w := dialText(t, h.Addr)
	if got := w.asciiLogin(a); got != "STORED" {
		t.Fatalf("writer login: %q", got)
	}
	asked := readServerClock(t, w)
	touches := []struct{ cmd, want string }{
		{"touch touched-1 1\r\n", "TOUCHED"},
		{"gat 1 touched-2\r\n", "VALUE touched-2 3 3"},
		{"gats 1 touched-3\r\n", "VALUE touched-3 3 3 "},
		{"touch touched-4 1 noreply\r\n", ""},
	}
	var touched []string
	for i, to := range touches {
		key := fmt.Sprintf("touched-%d", i+1)
		if got := w.cmd("set " + key + " 3 0 3\r\nttl\r\n"); got != "STORED" {
			t.Fatalf("writer set %s: %q", key, got)
		}
		got := w.cmd(to.cmd + "version\r\n")
		if to.want != "" {
			if !strings.HasPrefix(got, to.want) {
				t.Fatalf("writer %q: %q, want %q", to.cmd, got, to.want)
			}
			if strings.HasPrefix(got, "VALUE ") {
				if v, end := w.line(), w.line(); v != "ttl" || end != "END" {
					t.Fatalf("writer %q: %q %q after %q", to.cmd, v, end, got)
				}
			}
			got = w.line()
		}
		if !strings.HasPrefix(got, "VERSION ") {
			t.Fatalf("writer %q: %q before the version", to.cmd, got)
		}
		touched = append(touched, key)
	}
	flusher := dialText(t, h.Addr)
	if got := flusher.asciiLogin(b); got != "STORED" {
		t.Fatalf("cache b login: %q", got)
	}
	if got := flusher.cmd("set flushed 0 0 1\r\nx\r\n"); got != "STORED" {
		t.Fatalf("cache b set: %q", got)
	}
	if got := flusher.cmd("flush_all 1\r\n"); got != "OK" {
		t.Fatalf("cache b flush_all 1: %q", got)
	}
	pollUntil(t, 10*time.Second, "the writer's touches to 1 s and cache b's flush_all 1 to take effect", func() bool {
		for _, key := range touched {
			if got := w.cmd("get " + key + "\r\n"); got != "END" {
				w.line() // the value
				w.line() // END
				return false
			}
		}
		return flusher.cmd("get flushed\r\n") == "END"
	})
	waitServerClock(t, w, asked+2)
	checkSnapshots(t, full, want, "the touches' and delayed flushes' time")
}

// readServerClock is the server clock, memcached's `stats` `time`, as the
// logged-in tc reads it.
func readServerClock(t *testing.T, tc *textConn) int64 {
	t.Helper()
	v, err := strconv.ParseInt(tc.stats()["time"], 10, 64)
	if err != nil {
		t.Fatalf("stats time: %v", err)
	}
	return v
}

// waitServerClock polls the server clock on tc until it reads at least
// until. The clock ticks once a second; a limit of three seconds more than
// the wait is generous even for a loaded machine.
func waitServerClock(t *testing.T, tc *textConn, until int64) {
	t.Helper()
	now := readServerClock(t, tc)
	pollUntil(t, time.Duration(until-now+3)*time.Second, fmt.Sprintf("the server clock to reach %d (it read %d)", until, now), func() bool {
		return readServerClock(t, tc) >= until
	})
}

// pollUntil checks cond every 20 ms until it holds, and fails the test if
// it has not within limit.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRevokedBinaryConnectionsAreClosed: SASL connections end when their
// credential is deleted or their cache disabled, and only those.
func TestRevokedBinaryConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	second := h.createCred(a.CacheID, true, true, true)
	connA, connSecond, connB := dialBinary(t, h.Addr), dialBinary(t, h.Addr), dialBinary(t, h.Addr)
	textA := dialText(t, h.Addr)
	textA.asciiLogin(a)
	for _, p := range []struct {
		c *binConn
		l login
	}{{connA, a}, {connSecond, second}, {connB, b}} {
		if st := p.c.auth(p.l); st != stOK {
			t.Fatalf("SASL: status %#x", st)
		}
	}
	alive := func(what string, c *binConn) {
		t.Helper()
		if r := c.do(opSet, []byte("k"), storeExtras(0, 0), []byte("v"), 0); r.status != stOK {
			t.Fatalf("%s: SET status %#x", what, r.status)
		}
	}
	if st := h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", a.CacheID, second.ID), nil, nil); st != 200 {
		t.Fatalf("deleting a credential: %d", st)
	}
	if !connSecond.closedByPeer(2 * time.Second) {
		t.Fatal("a deleted credential's SASL connection stayed open")
	}
	alive("the cache's other credential after one was deleted", connA)
	alive("another cache's connection after a credential was deleted", connB)

	if st := h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": false}, nil); st != 200 {
		t.Fatalf("disabling: %d", st)
	}
	if !connA.closedByPeer(2 * time.Second) {
		t.Fatal("a disabled cache's SASL connection stayed open")
	}
	if !textA.closedByPeer(2 * time.Second) {
		t.Fatal("a disabled cache's text connection stayed open")
	}
	alive("another cache's connection after a cache was disabled", connB)
	// A new login to the disabled cache fails; a re-enabled one works.
	if st := dialBinary(t, h.Addr).auth(a); st != stAuthError {
		t.Fatalf("SASL to a disabled cache: status %#x, want 0x20", st)
	}
	text := dialText(t, h.Addr)
	if got := text.asciiLogin(a); got != "CLIENT_ERROR authentication failure" || !text.closedByPeer(2*time.Second) {
		t.Fatalf("text login to a disabled cache: %q, or the connection stayed open", got)
	}
	h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", a.CacheID), map[string]any{"enabled": true}, nil)
	again := dialBinary(t, h.Addr)
	if st := again.auth(a); st != stOK {
		t.Fatalf("SASL to a re-enabled cache: status %#x", st)
	}
	alive("a re-enabled cache", again)
	if st := dialBinary(t, h.Addr).auth(second); st != stAuthError {
		t.Fatalf("SASL with a deleted credential: status %#x, want 0x20", st)
	}
}

// TestAuthTimeoutEveryWay: with --auth-timeout 1s, connections that began
// but did not finish logging in are closed after about a second, whatever
// they sent; logged-in idle ones, text and binary, stay.
func TestAuthTimeoutEveryWay(t *testing.T) {
	t.Parallel()
	h := startHive(t, "", "--auth-timeout", "1s")
	def := login{Username: h.printed("MEMCACHIER_USERNAME"), Password: h.printed("MEMCACHIER_PASSWORD")}

	start := time.Now()
	partialLine := dialText(t, h.Addr)
	io.WriteString(partialLine.c, "set "+def.Username)
	partialData := dialText(t, h.Addr)
	io.WriteString(partialData.c, fmt.Sprintf("set %s 0 0 %d\r\n", def.Username, len(def.Password)))
	mechsOnly := dialBinary(t, h.Addr)
	if r := mechsOnly.do(opSASLList, nil, nil, nil, 0); r.status != stOK || string(r.value) != "PLAIN" {
		t.Fatalf("LIST MECHS: status %#x %q", r.status, r.value)
	}
	failed := dialBinary(t, h.Addr)
	bad := def
	bad.Password += "x"
	if st := failed.auth(bad); st != stAuthError {
		t.Fatalf("wrong password over SASL: status %#x", st)
	}
	partialHeader := dialBinary(t, h.Addr)
	partialHeader.c.Write([]byte{0x80, opSASLAuth, 0})
	authedText := dialText(t, h.Addr)
	if got := authedText.asciiLogin(def); got != "STORED" {
		t.Fatalf("text login: %q", got)
	}
	authedBinary := dialBinary(t, h.Addr)
	if st := authedBinary.auth(def); st != stOK {
		t.Fatalf("SASL login: %#x", st)
	}

	var lastClosed time.Time
	for _, c := range []struct {
		name   string
		closed func(time.Duration) bool
	}{
		{"text, half a login line", partialLine.closedByPeer},
		{"text, login line without its data", partialData.closedByPeer},
		{"binary, LIST MECHS only", mechsOnly.closedByPeer},
		{"binary, a failed SASL attempt", failed.closedByPeer},
		{"binary, half a header", partialHeader.closedByPeer},
	} {
		if !c.closed(3500*time.Millisecond - time.Since(start)) {
			t.Fatalf("%s: still open %v after connecting, with --auth-timeout 1s", c.name, time.Since(start))
		}
		if waited := time.Since(start); waited < 800*time.Millisecond {
			t.Fatalf("%s: closed after %v, before --auth-timeout", c.name, waited)
		}
		lastClosed = time.Now()
	}
	// The sweep that closed those (every quarter of --auth-timeout) has
	// had the logged-in ones, opened a moment later, in its reach for a
	// second more, and their --auth-timeout is two seconds past.
	time.Sleep(max(time.Until(start.Add(3*time.Second)), time.Until(lastClosed.Add(time.Second))))
	if got := authedText.cmd("get k\r\n"); got != "END" {
		t.Fatalf("a logged-in idle text connection, 3 s on: %q", got)
	}
	if r := authedBinary.do(opGet, []byte("k"), nil, nil, 0); r.status != stNotFound {
		t.Fatalf("a logged-in idle binary connection, 3 s on: status %#x", r.status)
	}
}

// TestStatsArePerCache: one cache's traffic, connections and flushes show
// in its own stats only.
func TestStatsArePerCache(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8)
	ta := dialText(t, h.Addr)
	ta.asciiLogin(a)
	extra := []*textConn{dialText(t, h.Addr), dialText(t, h.Addr)}
	for _, c := range extra {
		c.asciiLogin(a)
	}
	tb := dialText(t, h.Addr)
	tb.asciiLogin(b)
	before := tb.stats()

	scriptedWorkload(t, ta)
	sa, sb := ta.stats(), tb.stats()
	for name, want := range scriptedCounts {
		if _, ok := sa[name]; !ok {
			continue // counted by the analytics API only
		}
		if sa[name] != strconv.FormatUint(want, 10) {
			t.Errorf("cache a: %s = %s, want %d", name, sa[name], want)
		}
		if sb[name] != before[name] {
			t.Errorf("cache a's workload changed cache b's %s: %s -> %s", name, before[name], sb[name])
		}
	}
	for _, name := range []string{"curr_items", "total_items", "cmd_get", "cmd_set", "get_hits", "bytes", "cmd_flush"} {
		if sb[name] != "0" {
			t.Errorf("cache b's %s = %s, want 0", name, sb[name])
		}
	}
	if sa["limit_maxbytes"] != strconv.Itoa(8<<20) || sb["limit_maxbytes"] != strconv.Itoa(8<<20) {
		t.Errorf("limit_maxbytes: a %s b %s, want %d", sa["limit_maxbytes"], sb["limit_maxbytes"], 8<<20)
	}
	ca, _ := strconv.Atoi(sa["curr_connections"])
	cb, _ := strconv.Atoi(sb["curr_connections"])
	if ca-cb != 2 {
		t.Errorf("curr_connections: a %d (3 logged in), b %d (1 logged in)", ca, cb)
	}
	if sa["total_connections"] != "3" || sb["total_connections"] != "1" {
		t.Errorf("total_connections: a %s (3 logged in), b %s (1)", sa["total_connections"], sb["total_connections"])
	}
	// The stats groups too: b sees none of a's items, slabs or
	// connections.
	if l := statsGroup(t, tb, "items"); len(l) != 0 {
		t.Errorf("cache b's stats items, with no items of its own: %q", l)
	}
	if l := statsGroup(t, tb, "slabs"); !slices.Contains(l, "STAT active_slabs 0") {
		t.Errorf("cache b's stats slabs, with no items of its own: %q", l)
	}
	if l := statsGroup(t, ta, "items"); !slices.ContainsFunc(l, func(s string) bool { return strings.HasSuffix(s, ":number 10") }) {
		t.Errorf("cache a's stats items: %q", l)
	}
	if l := statsGroup(t, tb, "settings"); !slices.Contains(l, fmt.Sprintf("STAT maxbytes %d", 8<<20)) {
		t.Errorf("cache b's stats settings: %q", l)
	}
	countConns := func(l []string) int {
		n := 0
		for _, s := range l {
			// The asking connection is conn_parse_cmd, idle ones
			// conn_read (memcached's names): count every one listed
			// but the listener.
			if strings.Contains(s, ":state conn_") && !strings.HasSuffix(s, ":state conn_listening") {
				n++
			}
		}
		return n
	}
	if na, nb := countConns(statsGroup(t, ta, "conns")), countConns(statsGroup(t, tb, "conns")); na != 3 || nb != 1 {
		t.Errorf("stats conns: a lists %d connections (3 logged in), b %d (1)", na, nb)
	}

	extra[0].c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for ta.stats()["curr_connections"] != strconv.Itoa(ca-1) {
		if time.Now().After(deadline) {
			t.Fatalf("after closing one of a's connections: curr_connections %s, want %d", ta.stats()["curr_connections"], ca-1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := tb.stats()["curr_connections"]; got != strconv.Itoa(cb) {
		t.Errorf("closing one of a's connections changed b's curr_connections: %d -> %s", cb, got)
	}
	if t.Failed() {
		t.Logf("cache a:\n%v\ncache b:\n%v", sa, sb)
	}
}

// statsGroup returns the lines of "stats GROUP" before END.
func statsGroup(t *testing.T, tc *textConn, group string) []string {
	t.Helper()
	var l []string
	for s := tc.cmd("stats " + group + "\r\n"); s != "END"; s = tc.line() {
		if !strings.HasPrefix(s, "STAT ") {
			t.Fatalf("stats %s: %q", group, s)
		}
		l = append(l, s)
	}
	return l
}

// TestPasswordsAreNeverLogged: at the highest verbosity, neither a right
// nor a wrong password, over SASL or the text login, nor one the admin API
// made, reaches the server's output (the default cache's password, printed
// once at first start, is the one exception the contract makes).
func TestPasswordsAreNeverLogged(t *testing.T) {
	t.Parallel()
	// Debug level and JSON logs, and a throttle that the failures below
	// trip, so that every log path runs.
	h, a, _ := twoCaches(t, 8, "-v", "2", "--log-format", "json", "--auth-fail-limit", "2")
	wrong := a
	wrong.Password = "WRONGPASSWORDMARKER1234"
	unknown := login{Username: "NOSUCHUSERMARKER", Password: "UNKNOWNUSERPASSWORDMARKER"}
	tc := dialText(t, h.Addr)
	if got := tc.asciiLogin(a); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	tc.cmd("set SECRETKEYMARKER 0 0 1\r\nv\r\n")
	tc.cmd("get SECRETKEYMARKER\r\n")
	cred := h.createCred(a.CacheID, true, true, true)
	if st := dialBinary(t, h.Addr).auth(cred); st != 0 {
		t.Fatalf("SASL login: status %#x", st)
	}
	// The failures last: the throttle then refuses this address.
	for _, l := range []login{wrong, unknown, a} {
		dialText(t, h.Addr).asciiLogin(l)
		dialBinary(t, h.Addr).auth(l)
	}
	// A wrong admin token, on every kind of path.
	for _, path := range []string{"/admin/v1/caches", "/metrics", "/admin/v1/caches/1/credentials"} {
		req, _ := http.NewRequest("GET", "http://"+h.http+path, nil)
		req.Header.Set("Authorization", "Bearer WRONGTOKENMARKER")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("%s with a wrong admin token: status %d, want 401", path, resp.StatusCode)
			}
		}
	}
	// Whatever the server logged for the requests above, it wrote before
	// it answered them; a log line it writes after all of them, once
	// arrived, shows the output has caught up.
	marker := logMarker(t, h, a.Username)
	out := h.Output()
	// The output's start is serve's own banner with the default cache's
	// credential, printed once to stdout on purpose; the logs follow it.
	if !strings.Contains(out, "refusing logins from an address") || !strings.Contains(out, `"addr":"127.0.0.1"`) {
		t.Fatalf("the throttle did not log for 127.0.0.1; output:\n%s", out)
	}
	for _, p := range []string{a.Password, wrong.Password, unknown.Password, cred.Password, h.token, "WRONGTOKENMARKER", "SECRETKEYMARKER", marker} {
		if strings.Contains(out, p) {
			t.Fatalf("the server's output holds a secret or key %q:\n%s", p, out)
		}
	}
}

// markerAddr is a loopback address no test connection but logMarker's
// comes from, so the throttle counts its failures on their own.
const markerAddr = "127.0.0.2"

// logMarker makes h log a line after everything the test has sent so far,
// and waits until that line has reached h.Output(): failed SASL logins as
// user from markerAddr until the throttle refuses that address, which the
// server logs once (the throttle must be on, --auth-fail-limit above 0).
// It returns the wrong password it sent, which no log may hold either.
func logMarker(t *testing.T, h *hive, user string) string {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(markerAddr)}}
	c, err := d.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatalf("dialing from %s: %v", markerAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	bc := &binConn{t: t, c: c, r: bufio.NewReader(c)}
	const password = "MARKER-WRONG-PASSWORD"
	for i := 0; ; i++ {
		r := bc.do(opSASLAuth, []byte("PLAIN"), nil, []byte("\x00"+user+"\x00"+password), 0)
		if r.status != stAuthError {
			t.Fatalf("a wrong password from %s: status %#x", markerAddr, r.status)
		}
		if strings.HasPrefix(string(r.value), "Too many authentication failures") {
			break
		}
		if i == 100000 {
			t.Fatalf("%d failed logins from %s and no throttle", i, markerAddr)
		}
	}
	pollUntil(t, 10*time.Second, "the throttle's log line for "+markerAddr, func() bool {
		for _, l := range strings.Split(h.Output(), "\n") {
			if strings.Contains(l, "refusing logins from an address") && strings.Contains(l, markerAddr) {
				return true
			}
		}
		return false
	})
	return password
}

// TestAuthTimeoutCountsFromLogout: a connection that a SASL command logged
// out (LIST MECHS ends a login, as in memcached -S) gets a whole
// --auth-timeout from then to log in again, however old it is, and is
// closed when it does not.
func TestAuthTimeoutCountsFromLogout(t *testing.T) {
	t.Parallel()
	h := startHive(t, "", "--auth-timeout", "1s")
	def := login{Username: h.printed("MEMCACHIER_USERNAME"), Password: h.printed("MEMCACHIER_PASSWORD")}
	again, stays := dialBinary(t, h.Addr), dialBinary(t, h.Addr)
	for _, b := range []*binConn{again, stays} {
		if st := b.auth(def); st != stOK {
			t.Fatalf("SASL login: %#x", st)
		}
	}
	time.Sleep(1500 * time.Millisecond) // both are now older than the timeout
	// Taken before the logouts are sent: the server logs a connection
	// out when it runs LIST MECHS, a little after this and before the
	// reply arrives, so its deadline is at least a second after this
	// (taken after the replies, the close came 995 ms after it once).
	loggedOut := time.Now()
	for _, b := range []*binConn{again, stays} {
		if r := b.do(opSASLList, nil, nil, nil, 0); r.status != stOK || string(r.value) != "PLAIN" {
			t.Fatalf("LIST MECHS: status %#x %q", r.status, r.value)
		}
	}
	time.Sleep(300 * time.Millisecond) // several OnTick checks, still within the timeout
	// Cyrus refuses a check right after a success until an AUTH fails:
	// a failed AUTH first, then the right one.
	bad := def
	bad.Password += "x"
	if st := again.auth(bad); st != stAuthError {
		t.Fatalf("wrong password after the logout: %#x (the connection was closed too early?)", st)
	}
	if st := again.auth(def); st != stOK {
		t.Fatalf("logging in again %v after the logout: %#x", time.Since(loggedOut), st)
	}
	if !stays.closedByPeer(3 * time.Second) {
		t.Fatal("a connection logged out by LIST MECHS was not closed after --auth-timeout")
	}
	if gone := time.Since(loggedOut); gone < time.Second {
		t.Fatalf("the logged-out connection was closed %v after the logout, before the 1 s timeout", gone)
	}
	if again.closedByPeer(500 * time.Millisecond) {
		t.Fatal("the connection that logged in again was closed")
	}
}
