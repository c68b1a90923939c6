package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var k251 = strings.Repeat("k", 251)
var k250 = strings.Repeat("k", 250)

// asciiCases are parse expectations. Where a behaviour is surprising, it is
// what memcached 1.6.18 does (checked against it by TestASCIIMatchesMemcached).
var asciiCases = []struct {
	in, want string
}{
	// Retrieval.
	{"get k\r\n", `n=7 get keys=["k"] flush`},
	{"get k\n", `n=6 get keys=["k"] flush`},
	{"get a b  c\r\n", `n=12 get keys=["a" "b" "c"] flush`},
	{"gets a b\r\n", `n=10 gets keys=["a" "b"] flush`},
	{"gat 10 a b\r\n", `n=12 gat keys=["a" "b"] exp=10 flush`},
	{"gats -1 a\r\n", `n=11 gats keys=["a"] exp=-1 flush`},
	{"gat 10\r\n", `n=8 gat exp=10 flush`},
	{"gat x k\r\n", `n=9 error reply="CLIENT_ERROR invalid exptime argument\r\n"`},
	{"gat 4294967306 k\r\n", `n=18 gat keys=["k"] exp=10 flush`},
	{"bget k\r\n", `n=8 get keys=["k"] flush`},
	{"get\r\n", `n=5 error reply="ERROR\r\n"`},
	{"get \r\n", `n=6 error reply="ERROR\r\n"`},
	{"gets\r\n", `n=6 error reply="ERROR\r\n"`},
	{"gat\r\n", `n=5 error reply="ERROR\r\n"`},
	{"getx k\r\n", `n=8 error reply="ERROR\r\n"`},
	{"get " + k250 + "\r\n", `n=256 get keys=["` + k250 + `"] flush`},
	{"get a " + k251 + " b\r\n", `n=261 get keys=["a"] reply="CLIENT_ERROR bad command line format\r\n"`},
	{"get " + k251 + "\r\n", `n=257 get reply="CLIENT_ERROR bad command line format\r\n"`},
	{"get a\tb\r\n", `n=9 get keys=["a\tb"] flush`},
	{"get a\x00 b\r\n", `n=10 get keys=["a"] flush`},
	{"get a\r\r\n", `n=8 get keys=["a\r"] flush`},
	{"get 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25\r\n",
		`n=71 get keys=["1" "2" "3" "4" "5" "6" "7" "8" "9" "10" "11" "12" "13" "14" "15" "16" "17" "18" "19" "20" "21" "22" "23" "24" "25"] flush`},

	// Storage.
	{"set k 1 2 3\r\nabc\r\n", `n=18 set key="k" value="abc" flags=1 exp=2`},
	{"set k 0 0 0\r\n\r\n", `n=15 set key="k" value=""`},
	{"set k 0 0 3 noreply\r\nabc\r\n", `n=26 set key="k" value="abc" noreply`},
	{"set k 0 0 3 junk\r\nabc\r\n", `n=23 set key="k" value="abc"`},
	{"add k 0 0 1\r\nx\r\n", `n=16 add key="k" value="x"`},
	{"replace k 0 0 1\r\nx\r\n", `n=20 replace key="k" value="x"`},
	{"append k 0 0 1\r\nx\r\n", `n=19 append key="k" value="x"`},
	{"prepend k 0 0 1\r\nx\r\n", `n=20 prepend key="k" value="x"`},
	{"cas k 0 0 1 99\r\nx\r\n", `n=19 cas key="k" value="x" cas=99`},
	{"cas k 0 0 1 99 noreply\r\nx\r\n", `n=27 cas key="k" value="x" cas=99 noreply`},
	{"cas k 0 0 1\r\nx\r\n", `n=13 error reply="ERROR\r\n"`},
	{"cas k 0 0 1 noreply\r\nx\r\n", `n=21 error noreply`},
	{"set k 0 0 1\n\x00\r\n", `n=15 set key="k" value="\x00"`},
	{"set k 0 0 2\r\na\nb\r\n", `n=17 error key="k" value="a\n" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"set k 0 0 1\r\nxy\r\n", `n=16 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"set k 0 0 1 noreply\r\nxy\r\n", `n=24 error key="k" value="x" noreply baddata`},
	// Every storage command's bad data block counts in cmd_set (BadData).
	{"add k 0 0 1\r\nxy\r\n", `n=16 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"replace k 0 0 1\r\nxy\r\n", `n=20 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"append k 0 0 1\r\nxy\r\n", `n=19 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"prepend k 0 0 1\r\nxy\r\n", `n=20 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"cas k 0 0 1 9\r\nxy\r\n", `n=18 error key="k" value="x" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"set k 5 0 3\r\nabc\n\n", `n=18 error key="k" value="abc" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"set k 0 0\r\n", `n=11 error reply="ERROR\r\n"`},
	{"set k 0 0 1 2 3\r\n", `n=17 error reply="ERROR\r\n"`},
	{"set " + k251 + " 0 0 1\r\nx\r\n", `n=263 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set " + k251 + " 0 0 1 noreply\r\nx\r\n", `n=271 error noreply`},
	{"set k 0 0 -1\r\n", `n=14 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k -1 0 1\r\n", `n=14 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k 7x 0 1\r\n", `n=14 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k 0 x 1\r\n", `n=13 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k 0 0 noreply\r\n", `n=19 error noreply`},
	{"set k 0 0 2147483646\r\n", `n=22 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k 0 0 2147483645\r\n", `n=22 error key="k" reply="SERVER_ERROR object too large for cache\r\n" swallow=2147483647 refused=set`},
	{"set k 0 0 1048576\r\n", `n=19 error key="k" reply="SERVER_ERROR object too large for cache\r\n" swallow=1048578 refused=set`},
	{"cas k 0 0 1048576 1 noreply\r\n", `n=29 error key="k" noreply swallow=1048578 refused=cas`},
	{"set k 0 0 4294967297\r\nx\r\n", `n=25 set key="k" value="x"`},
	{"set k 4294967297 0 1\r\nx\r\n", `n=25 set key="k" value="x" flags=1`},
	{"set k 18446744073709551615 0 1\r\nx\r\n", `n=35 set key="k" value="x" flags=4294967295`},
	{"set k -9223372036854775809 0 1\r\nx\r\n", `n=35 set key="k" value="x" flags=4294967295`},
	{"set k 18446744073709551616 0 1\r\nx\r\n", `n=32 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k -0 +5 1\r\nx\r\n", `n=18 set key="k" value="x" exp=5`},
	{"set k 1\t2 0 1\r\nx\r\n", `n=18 set key="k" value="x" flags=1`},
	{"set k \t7 -2147483649 1\r\nx\r\n", `n=27 set key="k" value="x" flags=7 exp=2147483647`},
	{"set k 0 9223372036854775808 1\r\nx\r\n", `n=31 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"set k 0 0 1\r\r\nx\r\n", `n=17 set key="k" value="x"`},
	{"set k 0 0 1\r\nx", `incomplete n=0`},
	{"set k 0 0 1\r\nx\r", `incomplete n=0`},

	// touch, delete, incr, decr.
	{"touch k 10\r\n", `n=12 touch key="k" exp=10`},
	{"touch k 10 noreply\r\n", `n=20 touch key="k" exp=10 noreply`},
	{"touch k noreply\r\n", `n=17 error noreply`},
	{"touch k x\r\n", `n=11 error reply="CLIENT_ERROR invalid exptime argument\r\n"`},
	{"touch k\r\n", `n=9 error reply="ERROR\r\n"`},
	{"touch " + k251 + " 1\r\n", `n=261 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"delete k\r\n", `n=10 delete key="k"`},
	{"delete k 0\r\n", `n=12 delete key="k"`},
	{"delete k noreply\r\n", `n=18 delete key="k" noreply`},
	{"delete k 0 noreply\r\n", `n=20 delete key="k" noreply`},
	{"delete k 1\r\n", `n=12 error reply="CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"`},
	{"delete k x noreply\r\n", `n=20 error noreply`},
	{"delete k noreply x\r\n", `n=20 error reply="CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"`},
	{"delete k 0 0 0\r\n", `n=16 error reply="ERROR\r\n"`},
	{"delete\r\n", `n=8 error reply="ERROR\r\n"`},
	{"delete " + k251 + " noreply\r\n", `n=268 error noreply`},
	{"incr k 5\r\n", `n=10 incr key="k" delta=5`},
	{"decr k 18446744073709551615 noreply\r\n", `n=37 decr key="k" delta=18446744073709551615 noreply`},
	{"incr k 1 2\r\n", `n=12 incr key="k" delta=1`},
	{"incr k -1\r\n", `n=11 error reply="CLIENT_ERROR invalid numeric delta argument\r\n"`},
	{"incr k noreply\r\n", `n=16 error noreply`},
	{"incr k\r\n", `n=8 error reply="ERROR\r\n"`},
	{"incr " + k251 + " 1\r\n", `n=260 error reply="CLIENT_ERROR bad command line format\r\n"`},

	// Other commands.
	{"flush_all\r\n", `n=11 flush_all`},
	{"flush_all 10\r\n", `n=14 flush_all exp=10`},
	{"flush_all noreply\r\n", `n=19 flush_all noreply`},
	{"flush_all 10 noreply\r\n", `n=22 flush_all exp=10 noreply`},
	{"flush_all 10 x\r\n", `n=16 flush_all exp=10`},
	{"flush_all -5\r\n", `n=14 flush_all exp=-5`},
	{"flush_all x\r\n", `n=13 error reply="CLIENT_ERROR invalid exptime argument\r\n" badflush`},
	{"flush_all noreply noreply\r\n", `n=27 error noreply badflush`},
	{"flush_all soon noreply\r\n", `n=24 error noreply badflush`},
	{"flush_all 10 noreply x\r\n", `n=24 error reply="ERROR\r\n"`},
	{"flush_all 1 2 3\r\n", `n=17 error reply="ERROR\r\n"`},
	{"version\r\n", `n=9 version`},
	{"version foo\r\n", `n=13 version`},
	{"quit\r\n", `n=6 quit flush`},
	{"quit now\r\n", `n=10 quit flush`},
	{"stats\r\n", `n=7 stats`},
	{"stats items\r\n", `n=13 stats keys=["items"]`},
	{"stats detail on\r\n", `n=17 stats keys=["detail" "on"]`},
	{"verbosity 1\r\n", `n=13 verbosity delta=1`},
	{"verbosity 1 noreply\r\n", `n=21 verbosity delta=1 noreply`},
	{"verbosity 1 x\r\n", `n=15 verbosity delta=1`},
	{"verbosity x\r\n", `n=13 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"verbosity noreply\r\n", `n=19 error noreply`},
	{"verbosity\r\n", `n=11 error reply="ERROR\r\n"`},
	{"shutdown\r\n", `n=10 error reply="ERROR: shutdown not enabled\r\n"`},
	{"slabs reassign 1 2\r\n", `n=20 admin key="slabs" keys=["reassign" "1" "2"]`},
	{"lru_crawler metadump all\r\n", `n=26 admin key="lru_crawler" keys=["metadump" "all"]`},
	{"cache_memlimit\r\n", `n=16 error reply="ERROR\r\n"`},
	{"lru\r\n", `n=5 error reply="ERROR\r\n"`},

	{"mn\r\n", `n=4 mn flush`},
	{"mg k v\r\n", `n=8 mg key="k"`},
	{"ms k 2\r\nab\r\n", `n=12 ms key="k" value="ab"`},
	{"ms k 2 T10 F5\r\nab\r\n", `n=19 ms key="k" value="ab" flags=5 exp=10`},
	{"ms k 2 q\r\nabXY", `n=14 error key="k" value="ab" reply="CLIENT_ERROR bad data chunk\r\n" baddata`},
	{"ms k\r\n", `n=6 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"ms k x\r\n", `n=8 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"ms " + k251 + " 2\r\n", `n=258 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"ms k 2 Z\r\nab\r\n", `n=10 error key="k" reply="CLIENT_ERROR invalid flag\r\n" swallow=4`},
	{"ms k 2 MX\r\nab\r\n", `n=11 error key="k" reply="CLIENT_ERROR invalid mode for ms M token\r\n" swallow=4`},
	{"md k q\r\n", `n=8 md key="k" noreply`},
	{"md k k k\r\n", `n=10 error key="k" reply="CLIENT_ERROR invalid or duplicate flag\r\n"`},
	{"ma k D5 J7 N0\r\n", `n=15 ma key="k" delta=5 initial=7`},
	{"ma k\r\n", `n=6 ma key="k" delta=1`},
	{"ma k MX\r\n", `n=9 error key="k" delta=1 reply="CLIENT_ERROR invalid mode for ma M token\r\n"`},
	{"mg k Tx\r\n", `n=9 error key="k" reply="CLIENT_ERROR bad token in command line format\r\n"`},
	{"mg k Fx\r\n", `n=9 error key="k" reply="CLIENT_ERROR bad command line format\r\n"`},
	{"mg a2V5 b v\r\n", `n=13 mg key="key"`},
	{"mg a2V b\r\n", `n=10 error reply="CLIENT_ERROR error decoding key\r\n"`},
	{"mg k\r\n", `n=6 mg key="k"`},
	{"mg\r\n", `n=4 error reply="ERROR\r\n"`},
	{"me k\r\n", `n=6 me key="k"`},
	{"me\r\n", `n=4 error reply="CLIENT_ERROR bad command line format\r\n"`},
	{"mz k\r\n", `n=6 error reply="ERROR\r\n"`},
	{"mx\r\n", `n=4 error reply="ERROR\r\n"`},

	// Junk.
	{"\r\n", `n=2 error reply="ERROR\r\n"`},
	{"\n", `n=1 error reply="ERROR\r\n"`},
	{"   \r\n", `n=5 error reply="ERROR\r\n"`},
	{"a\r\n", `n=3 error reply="ERROR\r\n"`},
	{"x\r\r\n", `n=4 error reply="ERROR\r\n"`},
	{"\x00get k\r\n", `n=8 error reply="ERROR\r\n"`},
	{"GET k\r\n", `n=7 error reply="ERROR\r\n"`},
	{"GET / HTTP/1.1\r\n", `n=16 error close abort`},
	{"foo HTTP/1.0\r\n", `n=14 error close abort`},
	{"gx HTTP/1.0\r\n", `n=13 error reply="ERROR\r\n"`},
	{"", `incomplete n=0`},
	{"get k", `incomplete n=0`},
	{"get k\r", `incomplete n=0`},
	{strings.Repeat("x", 2048), `incomplete n=0`},
	{strings.Repeat("x", 2049), `n=2049 error close abort`},
	{"get " + strings.Repeat("x", 3000), `incomplete n=0`},
	{strings.Repeat(" ", 100) + "gets " + strings.Repeat("x", 3000), `incomplete n=0`},
	{strings.Repeat(" ", 101) + "get " + strings.Repeat("x", 3000), `n=3105 error close abort`},
	{"gat 1 " + strings.Repeat("x", 3000), `n=3006 error close abort`},
	{"set " + strings.Repeat("k", 16378) + "\r\n", `n=16384 error reply="ERROR\r\n"`},
	{"set " + strings.Repeat("k", 16379) + "\r\n", `n=16385 error close abort`},
}

func TestParseASCII(t *testing.T) {
	var p Parser
	var r Request
	for _, c := range asciiCases {
		n, err := p.ParseASCII([]byte(c.in), &r)
		if got := describe(n, err, &r); got != c.want {
			t.Errorf("ParseASCII(%.60q)\n got: %s\nwant: %s", c.in, got, c.want)
		}
		checkInvariants(t, []byte(c.in), n, err, &r)
	}
}

func TestParseASCIIGetKeyIsFirstKey(t *testing.T) {
	var p Parser
	var r Request
	if _, err := p.ParseASCII([]byte("gets a b\r\n"), &r); err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != "a" {
		t.Fatalf("Key = %q, want Keys[0]", r.Key)
	}
}

// TestParseASCIIMaxItemSize pins the boundary: key + value must be less
// than the limit (MemCachier: "must still be less than 1MB").
func TestParseASCIIMaxItemSize(t *testing.T) {
	p := Parser{MaxItemSize: 10}
	var r Request
	for _, c := range []struct{ in, want string }{
		{"set k 0 0 8\r\n12345678\r\n", `n=23 set key="k" value="12345678"`},
		{"set k 0 0 9\r\n", `n=13 error key="k" reply="SERVER_ERROR object too large for cache\r\n" swallow=11 refused=set`},
		{"set kk 0 0 8 noreply\r\n", `n=22 error key="kk" noreply swallow=10 refused=set`},
		{"ms k 8 T0\r\n12345678\r\n", `n=21 ms key="k" value="12345678"`},
		{"ms k 9 T0\r\n", `n=11 error key="k" reply="SERVER_ERROR object too large for cache\r\n" swallow=11 refused=ms`},
	} {
		n, err := p.ParseASCII([]byte(c.in), &r)
		if got := describe(n, err, &r); got != c.want {
			t.Errorf("ParseASCII(%q)\n got: %s\nwant: %s", c.in, got, c.want)
		}
	}
}

// validASCII are complete requests that must parse without error.
var validASCII = []string{
	"get k\r\n", "get a b c\n", "gets a b\r\n", "gat 10 a\r\n", "gats 0 a b\r\n",
	"set k 1 2 3\r\nabc\r\n", "set k 0 0 3 noreply\r\nabc\r\n", "add k 0 0 1\r\nx\r\n",
	"replace k 0 0 1\r\nx\r\n", "append k 0 0 0\r\n\r\n", "prepend k 0 0 2\r\n\r\n\r\n",
	"cas k 0 0 1 5\r\nx\r\n", "touch k 1\r\n", "delete k\r\n", "delete k 0 noreply\r\n",
	"incr k 1\r\n", "decr k 1 noreply\r\n", "flush_all\r\n", "flush_all 5 noreply\r\n",
	"stats\r\n", "stats slabs\r\n", "version\r\n", "verbosity 1\r\n", "quit\r\n",
	"get " + strings.Repeat("abcdefgh ", 400) + "\r\n",
	"set k 0 0 10\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
}

// TestASCIIPrefixesIncomplete checks that every strict prefix of a valid
// request is ErrIncomplete, and that the request parses the same with more
// bytes after it.
func TestASCIIPrefixesIncomplete(t *testing.T) {
	var p Parser
	var r, full Request
	for _, in := range validASCII {
		b := []byte(in)
		n, err := p.ParseASCII(b, &full)
		if err != nil || n != len(b) || full.Cmd == CmdError {
			t.Fatalf("ParseASCII(%.40q) = %s", in, describe(n, err, &full))
		}
		for i := 0; i < len(b); i++ {
			n, err := p.ParseASCII(b[:i], &r)
			if !errors.Is(err, ErrIncomplete) || n != 0 {
				t.Fatalf("ParseASCII(prefix %d of %.40q) = %s", i, in, describe(n, err, &r))
			}
		}
		more := append(append([]byte{}, b...), "get x\r\n"...)
		n, err = p.ParseASCII(more, &r)
		if err != nil || n != len(b) || !sameRequest(&r, &full) {
			t.Fatalf("ParseASCII(%.40q + more) = %s, want %s", in, describe(n, err, &r), describe(len(b), nil, &full))
		}
	}
}

// TestASCIIPipeline parses a stream request after request.
func TestASCIIPipeline(t *testing.T) {
	var p Parser
	var r Request
	stream := []byte(strings.Join(validASCII, "") + "set k 0 0 1 noreply\r\nxy\r\nget k\r\nset k 0 0 4000000\r\n")
	var got []string
	for len(stream) > 0 {
		n, err := p.ParseASCII(stream, &r)
		if err != nil {
			t.Fatalf("ParseASCII: %v at %.40q", err, stream)
		}
		got = append(got, r.Cmd.String())
		stream = stream[n:]
		if r.Swallow > 0 {
			break
		}
	}
	want := "get get gets gat gats set set add replace append prepend cas touch delete delete incr decr flush_all flush_all stats stats version verbosity quit get set error error get error"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("commands:\n got %s\nwant %s", g, want)
	}
}

// checkInvariants asserts what must hold for any parse result.
func checkInvariants(t testing.TB, buf []byte, n int, err error, r *Request) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatalf("unexpected error %v for %.60q", err, buf)
	}
	if n < 0 || n > len(buf) {
		t.Fatalf("n = %d out of [0,%d] for %.60q", n, len(buf), buf)
	}
	if (n == 0) != (err != nil) {
		t.Fatalf("n = %d with err %v for %.60q", n, err, buf)
	}
	if err != nil {
		return
	}
	if r.Swallow < 0 {
		t.Fatalf("negative swallow for %.60q", buf)
	}
	if r.Cmd == CmdNone {
		t.Fatalf("CmdNone for %.60q", buf)
	}
	check := func(k []byte) {
		if len(k) == 0 || len(k) > MaxKeyLen {
			t.Fatalf("bad key length %d for %.60q", len(k), buf)
		}
		// A binary-protocol key, or a meta key sent base64-encoded
		// (b) and held decoded, may hold any byte.
		if !r.Binary && (r.meta == nil || !r.meta.Base64) && (bytes.IndexByte(k, ' ') >= 0 || bytes.IndexByte(k, '\n') >= 0 || bytes.IndexByte(k, 0) >= 0) {
			t.Fatalf("key %q holds a separator, for %.60q", k, buf)
		}
	}
	switch r.Cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		if r.Binary {
			check(r.Key)
			break
		}
		for _, k := range r.Keys {
			check(k)
		}
		if len(r.Keys) > 0 && &r.Key[0] != &r.Keys[0][0] {
			t.Fatalf("Key is not Keys[0] for %.60q", buf)
		}
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas, CmdTouch, CmdDelete, CmdIncr, CmdDecr:
		check(r.Key)
	case CmdError:
		if r.Refused != CmdNone {
			check(r.Key)
		}
	}
}
