package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// The tests in this file replay inputs against Debian's memcached 1.6.18
// and compare its bytes with what a tiny model built on this package's
// parser and encoders predicts. The model is a single-connection cache
// good enough for the commands the inputs use; what matters is that every
// parse decision (error lines, noreply, what is consumed, swallowed or
// closed) shows up in the bytes.

const mcVersion = "1.6.18"

// outcome is what a connection should see: bytes, then maybe a close.
type outcome struct {
	out    []byte
	closed bool
}

func (o outcome) String() string { return fmt.Sprintf("%q closed=%v", o.out, o.closed) }

// expired reports whether memcached stores an item with this exptime as
// already expired: negative, or an absolute time (over 30 days) past.
func expired(exp int64) bool {
	return exp < 0 || (exp > 30*24*3600 && exp <= time.Now().Unix())
}

type modelItem struct {
	flags uint32
	value []byte
}

// asciiModel runs a text-protocol stream the way memcached would.
type asciiModel struct {
	items map[string]modelItem
	out   []byte
	flush int // end of the replies memcached has already sent
}

func (m *asciiModel) run(p *Parser, in []byte) outcome {
	m.items = map[string]modelItem{}
	var r Request
	for len(in) > 0 {
		n, err := p.ParseASCII(in, &r)
		if err != nil {
			if bytes.IndexByte(in, '\n') >= 0 {
				// A storage command waits for its data: memcached sends
				// nothing more meanwhile (conn_nread does not flush).
				return outcome{out: m.out[:m.flush]}
			}
			// memcached waits for a line; what it has queued it sends.
			return outcome{out: m.out}
		}
		in = in[n:]
		switch r.Cmd {
		case CmdError:
			if r.Abort {
				return outcome{out: m.out[:m.flush], closed: true}
			}
			if r.Refused == CmdSet {
				delete(m.items, string(r.Key))
			}
			m.out = append(m.out, r.ErrReply...)
			if r.Swallow > len(in) {
				// memcached does not flush while it swallows.
				return outcome{out: m.out[:m.flush]}
			}
			in = in[r.Swallow:]
		case CmdQuit:
			return outcome{out: m.out, closed: true}
		default:
			m.exec(&r)
		}
		if r.Flush {
			m.flush = len(m.out)
		}
	}
	return outcome{out: m.out}
}

func (m *asciiModel) reply(r *Request, s string) {
	if !r.NoReply {
		m.out = append(m.out, s...)
	}
}

func (m *asciiModel) exec(r *Request) {
	switch r.Cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		if r.ErrReply != nil {
			// conn_release_items: unsent replies are dropped.
			m.out = append(m.out[:m.flush], r.ErrReply...)
			return
		}
		for _, k := range r.Keys {
			if it, ok := m.items[string(k)]; ok {
				m.out = AppendValue(m.out, k, it.flags, it.value, 0, r.Cmd == CmdGets || r.Cmd == CmdGats)
				if (r.Cmd == CmdGat || r.Cmd == CmdGats) && expired(r.Exptime) {
					delete(m.items, string(k))
				}
			}
		}
		m.out = AppendEnd(m.out)
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas:
		it, ok := m.items[string(r.Key)]
		switch {
		case r.Cmd == CmdAdd && ok, r.Cmd == CmdReplace && !ok,
			(r.Cmd == CmdAppend || r.Cmd == CmdPrepend) && !ok:
			m.reply(r, ReplyNotStored)
		case r.Cmd == CmdCas && !ok:
			m.reply(r, ReplyNotFound)
		case r.Cmd == CmdCas:
			m.reply(r, ReplyExists) // the model never hands out CAS values
		case r.Cmd == CmdAppend:
			it.value = append(append([]byte{}, it.value...), r.Value...)
			m.items[string(r.Key)] = it
			m.reply(r, ReplyStored)
		case r.Cmd == CmdPrepend:
			it.value = append(append([]byte{}, r.Value...), it.value...)
			m.items[string(r.Key)] = it
			m.reply(r, ReplyStored)
		default:
			m.items[string(r.Key)] = modelItem{r.Flags, append([]byte{}, r.Value...)}
			m.reply(r, ReplyStored)
			if expired(r.Exptime) {
				delete(m.items, string(r.Key)) // stored already expired
			}
		}
	case CmdTouch:
		if _, ok := m.items[string(r.Key)]; ok {
			m.reply(r, ReplyTouched)
			if expired(r.Exptime) {
				delete(m.items, string(r.Key))
			}
		} else {
			m.reply(r, ReplyNotFound)
		}
	case CmdDelete:
		if _, ok := m.items[string(r.Key)]; ok {
			delete(m.items, string(r.Key))
			m.reply(r, ReplyDeleted)
		} else {
			m.reply(r, ReplyNotFound)
		}
	case CmdIncr, CmdDecr:
		it, ok := m.items[string(r.Key)]
		if !ok {
			m.reply(r, ReplyNotFound)
			return
		}
		v := it.value
		if z := bytes.IndexByte(v, 0); z >= 0 {
			v = v[:z]
		}
		cur, ok := SafeStrtoull(append(append([]byte{}, v...), '\r', '\n'))
		if !ok {
			m.reply(r, ReplyNonNumeric)
			return
		}
		if r.Cmd == CmdIncr {
			cur += r.Delta
		} else if r.Delta > cur {
			cur = 0
		} else {
			cur -= r.Delta
		}
		nv := strconv.AppendUint(nil, cur, 10)
		if len(nv) <= len(it.value) {
			// do_add_delta rewrites in place, padding with spaces.
			nv = append(nv, bytes.Repeat([]byte(" "), len(it.value)-len(nv))...)
		}
		it.value = nv
		m.items[string(r.Key)] = it
		if !r.NoReply {
			m.out = AppendUint(m.out, cur)
		}
	case CmdFlushAll:
		if r.Exptime <= 0 {
			clear(m.items)
		}
		m.reply(r, ReplyOK)
	case CmdVersion:
		m.out = AppendVersion(m.out, mcVersion)
	case CmdVerbosity:
		m.reply(r, ReplyOK)
	default:
		panic(fmt.Sprintf("model cannot run %s", r.Cmd))
	}
}

// exchange sends in on a fresh connection (after emptying the cache) and
// collects what comes back until want's length has arrived and the line
// has been quiet for a moment, or the server closes.
func exchange(t *testing.T, addr string, in []byte, want outcome) outcome {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flush, ack := []byte("flush_all\r\n"), []byte(ReplyOK)
	if in[0] == MagicRequest {
		flush = pkt{op: OpFlush}.bytes()
		ack = AppendBinaryOK(nil, OpFlush, 0, 0)
	}
	c.Write(flush)
	buf := make([]byte, len(ack))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, ack) {
		t.Fatalf("flush: %q %v", buf, err)
	}
	go c.Write(in)
	var got outcome
	buf = make([]byte, 1<<16)
	for {
		// Wait long for what is expected, briefly for anything more.
		wait := 15 * time.Millisecond
		if len(got.out) < len(want.out) || want.closed {
			wait = 2 * time.Second
		}
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		got.out = append(got.out, buf[:n]...)
		if err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				got.closed = true
			}
			return got
		}
	}
}

// asciiDiffCases are whole connection inputs, each replayed on its own.
var asciiDiffCases = func() []string {
	var l []string
	for _, c := range asciiCases {
		if c.in == "" || strings.Contains(c.want, "incomplete") || strings.Contains(c.want, "swallow=2147483647") ||
			strings.Contains(c.want, " stats") || strings.Contains(c.want, " admin") ||
			(strings.HasPrefix(c.in, "m") && !strings.HasPrefix(c.in, "ms ") && c.in != "mx\r\n") {
			continue
		}
		l = append(l, c.in+"version\r\n")
	}
	return append(l,
		"set a 0 0 1\r\n1\r\nincr a 5\r\ndecr a 100\r\nget a\r\n",
		"set a 5 0 2\r\nab\r\nappend a 0 0 1\r\nc\r\nprepend a 0 0 1\r\nz\r\nget a b\r\n",
		"set a 0 0 1 noreply\r\nxy\r\nget a\r\n",
		"set a 0 0 1\r\nx\r\nget a "+k251+"\r\nversion\r\n",
		"get a\r\nset a 0 0 1\r\nx\r\nget a "+k251+"\r\nversion\r\n",
		"set k 0 0 1048576\r\n"+strings.Repeat("z", 1048576)+"\r\nversion\r\n",
		"set k 0 0 1048576 noreply\r\n"+strings.Repeat("z", 1048576)+"\r\nget k\r\n",
		"set k 0 0 1\r\nx\r\nset k 0 0 1048576\r\n"+strings.Repeat("z", 1048576)+"\r\nget k\r\n",
		"get a\r\nversion\r\nGET / HTTP/1.1\r\n",
		"version\r\nquit\r\nversion\r\n",
		"ms k 2\r\nab\r\nversion\r\n",
		"ms k 2 T0\r\nab\r\nversion\r\n",
	)
}()

func TestASCIIMatchesMemcached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memcached")
	}
	mc := testserver.StartMemcached(t)
	var p Parser
	for _, in := range asciiDiffCases {
		if strings.HasPrefix(in, "ms ") {
			// Meta commands are answered ERROR on purpose; only check that
			// the data block is swallowed as memcached reads it.
			got := exchange(t, mc.Addr, []byte(in), outcome{out: []byte("ERROR\r\nVERSION 1.6.18\r\n")})
			if !bytes.HasSuffix(got.out, []byte("VERSION "+mcVersion+"\r\n")) || bytes.Count(got.out, []byte("\r\n")) != 2 {
				t.Errorf("%q: memcached answered %q", in, got.out)
			}
			continue
		}
		var m asciiModel
		want := m.run(&p, []byte(in))
		got := exchange(t, mc.Addr, []byte(in), want)
		if !bytes.Equal(got.out, want.out) || got.closed != want.closed {
			t.Errorf("input %.120q\n memcached: %.300s\n     model: %.300s", in, got, want)
		}
	}
}

// diffParams reads CODEC_DIFF_CASES and CODEC_DIFF_SEED, for longer runs
// than the default.
func diffParams(t *testing.T, cases int) (int, uint64) {
	seed := uint64(1)
	if v := os.Getenv("CODEC_DIFF_CASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("CODEC_DIFF_CASES: %v", err)
		}
		cases = n
	}
	if v := os.Getenv("CODEC_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CODEC_DIFF_SEED: %v", err)
		}
		seed = n
	}
	return cases, seed
}

var valueWithCAS = regexp.MustCompile(`(?m)^(VALUE [^ ]+ \d+ \d+) \d+\r$`)

// maskCAS replaces the CAS in "VALUE k f n cas" lines by 0, which is what
// the model, knowing no CAS values, writes.
func maskCAS(b []byte) []byte {
	return valueWithCAS.ReplaceAll(b, []byte("$1 0\r"))
}

// randomASCII builds a pipeline of plausible and broken text requests.
func randomASCII(rng *rand.Rand) []byte {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	key := func() string {
		switch rng.IntN(12) {
		case 0:
			return k251
		case 1:
			return k250
		case 2:
			return "k\tt"
		case 3:
			return "noreply"
		default:
			return pick("a", "b", "c", "key", "k1")
		}
	}
	num := func() string {
		return pick("0", "1", "5", "-1", "10", "x", "+3", "4294967297", "-0", "99999999999999999999",
			"2147483648", "18446744073709551615", "noreply", "7x", "007")
	}
	var b strings.Builder
	cmds := 1 + rng.IntN(8)
	for i := 0; i < cmds; i++ {
		sep := pick(" ", " ", " ", "  ")
		eol := pick("\r\n", "\r\n", "\r\n", "\n", "\r\r\n")
		nr := pick("", "", "", " noreply", " x")
		switch rng.IntN(13) {
		case 0, 1:
			c := pick("get", "get", "gets", "gat", "gats", "bget", "GET", "ge")
			b.WriteString(c)
			if c == "gat" || c == "gats" {
				b.WriteString(sep + num())
			}
			for j := rng.IntN(4); j >= 0; j-- {
				if rng.IntN(8) == 0 && i > 0 {
					continue // keep long keys mostly off later multi-gets
				}
				b.WriteString(sep + key())
			}
			b.WriteString(eol)
		case 2, 3, 4:
			c := pick("set", "set", "add", "replace", "append", "prepend", "cas")
			val := pick("", "1", "42", "abc", "a b", "x\r\ny", "18446744073709551615")
			l := len(val)
			if rng.IntN(6) == 0 {
				l += rng.IntN(3) - 1
			}
			lens := strconv.Itoa(l)
			if rng.IntN(10) == 0 {
				lens = num()
			}
			fmt.Fprintf(&b, "%s%s%s%s%s%s%s%s%s", c, sep, key(), sep, num(), sep, pick("0", "0", "-1", "x", "100"), sep, lens)
			if c == "cas" || rng.IntN(10) == 0 {
				b.WriteString(sep + num())
			}
			b.WriteString(nr + eol)
			if rng.IntN(10) != 0 {
				b.WriteString(val + pick("\r\n", "\r\n", "\r\n", "\n", "xx"))
			}
		case 5:
			fmt.Fprintf(&b, "touch%s%s%s%s%s%s", sep, key(), sep, pick("0", "10", "x", "-1"), nr, eol)
		case 6:
			b.WriteString("delete" + sep + key())
			if rng.IntN(2) == 0 {
				b.WriteString(sep + pick("0", "1", "noreply", "x"))
			}
			b.WriteString(nr + eol)
		case 7:
			fmt.Fprintf(&b, "%s%s%s%s%s%s%s", pick("incr", "decr"), sep, key(), sep, num(), nr, eol)
		case 8:
			b.WriteString("flush_all" + pick("", " 0", " -1", " x", " noreply", " 0 noreply", " 0 0 0") + eol)
		case 9:
			b.WriteString(pick("verbosity", "verbosity 1", "verbosity x", "verbosity 1 noreply", "verbosity noreply") + eol)
		case 10:
			b.WriteString(pick("", " ", "x", "ab", "version", "version x", "shutdown", "\x00get a", "mx", "stat", "sets a 0 0 1") + eol)
		case 11:
			b.WriteString(pick("get", "set", "incr", "delete", "touch") + strings.Repeat(" a", rng.IntN(30)) + eol)
		case 12:
			b.WriteString("version" + eol)
		}
	}
	switch rng.IntN(20) {
	case 0:
		b.WriteString("GET / HTTP/1.1\r\n")
	case 1:
		b.WriteString(strings.Repeat("y", 2100))
		return []byte(b.String())
	}
	b.WriteString("version\r\n")
	return []byte(b.String())
}

// TestASCIIRandomMatchesMemcached replays random pipelines.
func TestASCIIRandomMatchesMemcached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memcached")
	}
	mc := testserver.StartMemcached(t)
	var p Parser
	cases, seed := diffParams(t, 600)
	rng := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < cases; i++ {
		in := randomASCII(rng)
		var m asciiModel
		want := m.run(&p, in)
		got := exchange(t, mc.Addr, in, want)
		got.out = maskCAS(got.out)
		if !bytes.Equal(got.out, want.out) || got.closed != want.closed {
			t.Errorf("case %d input %q\n memcached: %.400s\n     model: %.400s", i, in, got, want)
		}
	}
}

// binaryModel runs a binary-protocol stream the way memcached (without
// SASL) would; flush marks what memcached has already written, since an
// error reply without swallow and NOOP flush, and closing drops the rest.
type binaryModel struct {
	items map[string]modelItem
	out   []byte
	flush int
}

func (m *binaryModel) run(p *Parser, in []byte) outcome {
	m.items = map[string]modelItem{}
	var r Request
	for len(in) > 0 {
		n, err := p.ParseBinary(in, &r)
		if err != nil {
			if len(in) >= BinaryHeaderLen {
				// memcached waits for a value without flushing.
				return outcome{out: m.out[:m.flush]}
			}
			return outcome{out: m.out}
		}
		in = in[n:]
		switch r.Cmd {
		case CmdError:
			if r.Abort {
				return outcome{out: m.out[:m.flush], closed: true}
			}
			if r.Refused == CmdSet {
				delete(m.items, string(r.Key))
			}
			m.out = AppendBinaryStatus(m.out, r.Opcode, r.Status, r.Opaque)
			if r.Close {
				return outcome{out: m.out, closed: true}
			}
			if r.Swallow > len(in) {
				return outcome{out: m.out[:m.flush]}
			}
			if r.Flush {
				m.flush = len(m.out)
			}
			in = in[r.Swallow:]
		case CmdQuit:
			if !r.Quiet {
				m.out = AppendBinaryOK(m.out, r.Opcode, r.Opaque, 0)
			}
			return outcome{out: m.out, closed: true}
		default:
			m.exec(&r)
		}
		if r.Flush {
			m.flush = len(m.out)
		}
	}
	return outcome{out: m.out}
}

func (m *binaryModel) fail(r *Request, status uint16) {
	m.out = AppendBinaryStatus(m.out, r.Opcode, status, r.Opaque)
	m.flush = len(m.out)
}

func (m *binaryModel) ok(r *Request) {
	if !r.Quiet {
		m.out = AppendBinaryOK(m.out, r.Opcode, r.Opaque, 0)
	}
}

func (m *binaryModel) exec(r *Request) {
	key := string(r.Key)
	it, hit := m.items[key]
	switch r.Cmd {
	case CmdGet, CmdGat, CmdTouch:
		if !hit {
			switch {
			case r.Quiet:
			case r.WithKey:
				m.out = AppendBinaryMiss(m.out, r.Opcode, r.Opaque, r.Key)
			default:
				m.fail(r, StatusKeyNotFound)
			}
			return
		}
		var k, v []byte
		if r.WithKey {
			k = r.Key
		}
		if r.Cmd != CmdTouch {
			v = it.value
		}
		m.out = AppendBinaryGet(m.out, r.Opcode, r.Opaque, 0, it.flags, k, v)
		if r.Cmd != CmdGet && expired(r.Exptime) {
			delete(m.items, key)
		}
	case CmdSet, CmdAdd, CmdReplace:
		switch {
		case r.CAS != 0 && !hit:
			m.fail(r, StatusKeyNotFound)
		case r.CAS != 0:
			m.fail(r, StatusKeyExists) // the model knows no CAS values
		case r.Cmd == CmdAdd && hit:
			m.fail(r, StatusKeyExists)
		case r.Cmd == CmdReplace && !hit:
			m.fail(r, StatusKeyNotFound)
		default:
			m.items[key] = modelItem{r.Flags, append([]byte{}, r.Value...)}
			if expired(r.Exptime) {
				delete(m.items, key)
			}
			m.ok(r)
		}
	case CmdAppend, CmdPrepend:
		if !hit {
			m.fail(r, StatusNotStored)
			return
		}
		if r.Cmd == CmdAppend {
			it.value = append(append([]byte{}, it.value...), r.Value...)
		} else {
			it.value = append(append([]byte{}, r.Value...), it.value...)
		}
		m.items[key] = it
		m.ok(r)
	case CmdDelete:
		if !hit {
			m.fail(r, StatusKeyNotFound)
			return
		}
		if r.CAS != 0 {
			m.fail(r, StatusKeyExists)
			return
		}
		delete(m.items, key)
		m.ok(r)
	case CmdIncr, CmdDecr:
		var v uint64
		switch {
		case !hit && r.Exptime == 0xffffffff:
			m.fail(r, StatusKeyNotFound)
			return
		case !hit:
			v = r.Initial
		default:
			cur, ok := SafeStrtoull(append(append([]byte{}, it.value...), '\r', '\n'))
			if !ok {
				m.fail(r, StatusNonNumeric)
				return
			}
			if r.Cmd == CmdIncr {
				v = cur + r.Delta
			} else if r.Delta < cur {
				v = cur - r.Delta
			}
		}
		nv := strconv.AppendUint(nil, v, 10)
		if hit && len(nv) <= len(it.value) {
			nv = append(nv, bytes.Repeat([]byte(" "), len(it.value)-len(nv))...)
		}
		m.items[key] = modelItem{it.flags, nv}
		if !hit && expired(r.Exptime) {
			delete(m.items, key)
		}
		if !r.Quiet {
			m.out = AppendBinaryCounter(m.out, r.Opcode, r.Opaque, 0, v)
		}
	case CmdFlushAll:
		// A delay flushes later; an absolute time in the past flushes
		// nothing (memcached sets oldest_live to 0).
		if r.Exptime == 0 {
			clear(m.items)
		}
		m.ok(r)
	case CmdNoop:
		m.out = AppendBinaryOK(m.out, r.Opcode, r.Opaque, 0)
	case CmdVersion:
		m.out = AppendBinaryValue(m.out, r.Opcode, StatusOK, r.Opaque, 0, []byte(mcVersion))
	default:
		panic(fmt.Sprintf("model cannot run %s", r.Cmd))
	}
}

// zeroBinaryCAS clears the CAS of every response header in b: the model
// does not know memcached's CAS values.
func zeroBinaryCAS(b []byte) []byte {
	b = append([]byte{}, b...)
	for i := 0; i+BinaryHeaderLen <= len(b); {
		clear(b[i+16 : i+24])
		i += BinaryHeaderLen + int(binary.BigEndian.Uint32(b[i+8:]))
	}
	return b
}

func binaryDiffCases() [][]byte {
	var l [][]byte
	for _, c := range binaryCases {
		op := c.in[1]
		if strings.Contains(c.want, "incomplete") || strings.Contains(c.want, "16 KiB") ||
			op == OpStat || op == OpSASLListMechs || op == OpSASLAuth || op == OpSASLStep ||
			strings.Contains(c.want, "too large") || strings.HasSuffix(c.name, "GiB") || c.in[0] != MagicRequest {
			continue
		}
		l = append(l, append(append([]byte{}, c.in...), pkt{op: OpVersion, opaque: 1}.bytes()...))
	}
	cat := func(ps ...pkt) []byte {
		var b []byte
		for _, p := range ps {
			b = append(b, p.bytes()...)
		}
		return b
	}
	ext8 := be32(7) + be32(0)
	l = append(l,
		cat(pkt{op: OpSet, key: "a", ext: ext8, val: "1"}, pkt{op: OpGetK, key: "a", opaque: 2},
			pkt{op: OpIncrement, key: "a", ext: be64(5) + be64(0) + be32(0)}, pkt{op: OpGet, key: "a"},
			pkt{op: OpDecrementQ, key: "a", ext: be64(100) + be64(0) + be32(0)}, pkt{op: OpGetQ, key: "a"},
			pkt{op: OpGetQ, key: "b"}, pkt{op: OpGetKQ, key: "b"}, pkt{op: OpNoop}),
		cat(pkt{op: OpAppend, key: "a", val: "x"}, pkt{op: OpAddQ, key: "a", ext: ext8, val: "v"},
			pkt{op: OpAddQ, key: "a", ext: ext8, val: "w"}, pkt{op: OpPrependQ, key: "a", val: "<"},
			pkt{op: OpGATK, key: "a", ext: be32(0)}, pkt{op: OpTouch, key: "a", ext: be32(0)},
			pkt{op: OpDeleteQ, key: "a"}, pkt{op: OpDeleteQ, key: "a"}, pkt{op: OpVersion}),
		cat(pkt{op: OpSet, key: "a", ext: ext8, val: "v"}, pkt{op: OpSet, key: "a", ext: ext8, bodylen: 9 + 1048576}),
		append(cat(pkt{op: OpSet, key: "a", ext: ext8, val: "v"}, pkt{op: OpSet, key: "a", ext: ext8, bodylen: 9 + 1048576}),
			append(make([]byte, 1048576), cat(pkt{op: OpGet, key: "a"})...)...),
		cat(pkt{op: OpIncrementQ, key: "c", ext: be64(1) + be64(41) + be32(0)}, pkt{op: OpGet, key: "c"},
			pkt{op: OpFlushQ}, pkt{op: OpGet, key: "c"}, pkt{op: OpQuit}, pkt{op: OpVersion}),
		cat(pkt{op: OpVersion}, pkt{op: OpGetQ, key: "zz"}, pkt{magic: 0x81, op: OpVersion}),
		cat(pkt{op: OpVersion}, pkt{op: OpNoop}, pkt{op: 0x50, key: "ab"}, pkt{op: OpVersion}, pkt{op: OpVersion}),
	)
	return l
}

func TestBinaryMatchesMemcached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memcached")
	}
	mc := testserver.StartMemcached(t)
	var p Parser
	for _, in := range binaryDiffCases() {
		var m binaryModel
		want := m.run(&p, in)
		got := exchange(t, mc.Addr, in, want)
		got.out = zeroBinaryCAS(got.out)
		if !bytes.Equal(got.out, want.out) || got.closed != want.closed {
			t.Errorf("input %x\n memcached: %x closed=%v\n     model: %x closed=%v", in, got.out, got.closed, want.out, want.closed)
		}
	}
}

// randomBinary builds a pipeline of plausible and broken binary requests.
func randomBinary(rng *rand.Rand) []byte {
	ops := []byte{OpGet, OpGetQ, OpGetK, OpGetKQ, OpSet, OpSetQ, OpAdd, OpAddQ, OpReplace, OpReplaceQ,
		OpAppend, OpAppendQ, OpPrepend, OpPrependQ, OpDelete, OpDeleteQ, OpIncrement, OpIncrementQ,
		OpDecrement, OpDecrementQ, OpTouch, OpGAT, OpGATQ, OpGATK, OpGATKQ, OpNoop, OpVersion,
		OpFlushQ, OpVerbosity, 0x30, 0x3d, 0x7f}
	var b []byte
	for i := rng.IntN(8); i >= 0; i-- {
		p := pkt{op: ops[rng.IntN(len(ops))], opaque: rng.Uint32()}
		p.key = []string{"a", "b", "c", "", k250, k251}[rng.IntN(6)]
		if p.key == k251 && rng.IntN(3) > 0 {
			p.key = "a"
		}
		switch p.op {
		case OpSet, OpSetQ, OpAdd, OpAddQ, OpReplace, OpReplaceQ:
			p.ext = be32(rng.Uint32()) + be32(0)
			p.val = []string{"", "1", "12", "abc", "18446744073709551615"}[rng.IntN(5)]
		case OpAppend, OpAppendQ, OpPrepend, OpPrependQ:
			p.val = []string{"", "1", "x"}[rng.IntN(3)]
		case OpIncrement, OpIncrementQ, OpDecrement, OpDecrementQ:
			exp := uint32(0)
			if rng.IntN(2) == 0 {
				exp = 0xffffffff
			}
			p.ext = be64(uint64(rng.IntN(20))) + be64(uint64(rng.IntN(20))) + be32(exp)
		case OpTouch, OpGAT, OpGATQ, OpGATK, OpGATKQ:
			p.ext = be32(0)
		case OpNoop, OpVersion, OpFlushQ:
			p.key = ""
		case 0x30, 0x3d, 0x7f, OpVerbosity:
			p.val = []string{"", "xyz"}[rng.IntN(2)]
		}
		switch rng.IntN(12) {
		case 0:
			p.ext = []string{"", "1234", "12345678"}[rng.IntN(3)]
		case 1:
			p.val += "!"
		case 2:
			p.bodylen = max(len(p.key)+len(p.ext)+len(p.val)-1, -1)
		}
		if p.op == OpFlushQ && len(p.ext) == 4 {
			// A past absolute flush time would undo the flush that
			// isolates test cases: memcached resets oldest_live to 0.
			p.ext = be32(0)
		}
		b = append(b, p.bytes()...)
	}
	return append(b, pkt{op: OpVersion, opaque: 99}.bytes()...)
}

func TestBinaryRandomMatchesMemcached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memcached")
	}
	mc := testserver.StartMemcached(t)
	var p Parser
	cases, seed := diffParams(t, 400)
	rng := rand.New(rand.NewPCG(seed, 3))
	for i := 0; i < cases; i++ {
		in := randomBinary(rng)
		var m binaryModel
		want := m.run(&p, in)
		got := exchange(t, mc.Addr, in, want)
		got.out = zeroBinaryCAS(got.out)
		if !bytes.Equal(got.out, want.out) || got.closed != want.closed {
			t.Errorf("case %d input %x\n memcached: %x closed=%v\n     model: %x closed=%v", i, in, got.out, got.closed, want.out, want.closed)
		}
	}
}
