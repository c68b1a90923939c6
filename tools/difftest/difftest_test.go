package difftest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// TestDifferential replays generated traffic against Debian's memcached and
// memhive and fails at the first reply that differs.
//
//	DIFF_SEED=n          replay the run of seed n (default: a fresh seed)
//	DIFF_REQUESTS=n      number of requests (default 100,000; 10,000 with -short)
//	DIFF_AGAINST=memcached  compare memcached with a second memcached, which
//	                     validates the harness itself
func TestDifferential(t *testing.T) {
	against := envAgainst(t, "DIFF_AGAINST")
	differential(t, "TestDifferential", Options{}, func() pair {
		// Neither server frees dead items in the background (see
		// anchors.go); -t 2 is also what the anchors' keys assume.
		p := pair{ref: testserver.StartMemcached(t, memcachedArgs...)}
		name := "memhive"
		if against == "memcached" {
			name = "memcached-2"
			p.others = []*testserver.Server{testserver.StartMemcached(t, memcachedArgs...)}
		} else {
			p.others = []*testserver.Server{testserver.StartMemhive(t, memhiveArgs...)}
		}
		p.a, p.b = Target{Name: "memcached", Addr: p.ref.Addr}, Target{Name: name, Addr: p.others[0].Addr}
		return p
	})
}

// memcachedArgs and memhiveArgs are the reference memcached's and
// memhive's settings in a differential run: neither frees dead items in
// the background (see anchors.go); -t 2 is also what the anchors' keys
// assume.
var (
	memcachedArgs = []string{"-m", "1024", "-t", "2", "-o", "no_lru_crawler,no_lru_maintainer"}
	memhiveArgs   = []string{"--memory", "1024", "--threads", "2", "--crawl-interval", "0"}
)

// pair is the two sides of a differential run: a is the reference
// memcached (ref), b the server compared with it, served by others (one
// process, or the nodes of a cluster, b's the first).
type pair struct {
	a, b   Target
	ref    *testserver.Server
	others []*testserver.Server
	// report, when set, describes b's state after a run (a cluster's
	// forwarding counters), for the summary and any mismatch.
	report func() string
}

// stop stops every process of the pair.
func (p pair) stop() {
	p.ref.Stop()
	for _, s := range p.others {
		s.Stop()
	}
}

// died describes the processes of p that are no longer running, with
// their output.
func (p pair) died() string {
	msg := ""
	check := func(name string, s *testserver.Server) {
		if s.Exited() {
			out := s.Output()
			if len(out) > 4000 {
				out = "..." + out[len(out)-4000:]
			}
			msg += fmt.Sprintf("\n%s exited; its output:\n%s", name, out)
		}
	}
	check(p.a.Name, p.ref)
	for i, s := range p.others {
		name := p.b.Name
		if len(p.others) > 1 {
			name = fmt.Sprintf("%s (process %d of %d)", p.b.Name, i+1, len(p.others))
		}
		check(name, s)
	}
	return msg
}

// differential is a differential run of test (its name, for the replay
// line) on the servers start starts, with base's options as well: it
// replays DIFF_SEED's traffic (or a fresh seed's), and on a mismatch
// replays it again on fresh servers with a marker after every request to
// name the request whose reply differs.
func differential(t *testing.T, test string, base Options, start func() pair) {
	seed := envSeed(t, "DIFF_SEED")
	requests := envRequests(t, "DIFF_REQUESTS")
	replay := fmt.Sprintf("replay with DIFF_SEED=%d go test ./tools/difftest/ -run '^%s$'", seed, test)
	// The seed goes out first, to stderr as well: if the package runs out
	// of time, go test prints only a panic, and t.Logf output may be lost.
	fmt.Fprintf(os.Stderr, "difftest: seed %d, %d requests (%s)\n", seed, requests, replay)
	t.Logf("difftest: seed %d, %d requests (%s)", seed, requests, replay)
	// The run's own limit stays well inside go test's -timeout, so a slow
	// run stops cleanly with a summary instead of losing its seed.
	budget := func() time.Duration {
		d := 15 * time.Minute
		if dl, ok := t.Deadline(); ok {
			left := time.Until(dl)
			d = min(d, left-max(left/5, 30*time.Second))
		}
		return d
	}
	maxDur := budget()
	if maxDur < 10*time.Second {
		t.Fatalf("difftest seed %d: only %v left before the test deadline", seed, maxDur)
	}

	p := start()
	now := time.Now()
	opts := base
	opts.Seed, opts.Requests, opts.Now, opts.Logf, opts.MaxDuration = seed, requests, now, t.Logf, maxDur
	opts.CheckState = os.Getenv("DIFF_CHECK_STATE") != ""
	sum, err := Run(p.a, p.b, opts)
	gone := p.died()
	state := ""
	if p.report != nil && gone == "" {
		state = p.report()
		t.Logf("difftest: %s", state)
		state = "\n" + state
	}
	p.stop()
	if err == nil {
		t.Logf("difftest: seed %d: %d requests in %d batches (%d MB per server) identical in %v",
			seed, sum.Requests, sum.Batches, sum.Bytes>>20, sum.Elapsed.Round(time.Millisecond))
		if sum.Stopped != "" {
			t.Logf("difftest: %s", sum.Stopped)
			fmt.Fprintf(os.Stderr, "difftest: seed %d: %s\n", seed, sum.Stopped)
		}
		t.Logf("difftest: requests per kind: %s", sum.KindCounts())
		return
	}
	var m *Mismatch
	if !errors.As(err, &m) {
		t.Fatalf("difftest seed %d: %v%s\nseed %d: %s", seed, err, gone, seed, replay)
	}
	msg := err.Error() + gone + state
	if m.FirstRequest != m.LastRequest && gone == "" {
		// Replay the same traffic on fresh servers with a marker after
		// every request, to name the request whose reply differs.
		p := start()
		opts := base
		opts.Seed, opts.Requests, opts.Now, opts.Markers, opts.MaxBatches = seed, requests, now, true, m.Batch+1
		opts.MaxDuration = max(budget(), time.Second)
		_, err2 := Run(p.a, p.b, opts)
		p.stop()
		var m2 *Mismatch
		switch {
		case errors.As(err2, &m2):
			msg += "\nreplayed with a marker after each request:\n" + err2.Error()
		case err2 != nil:
			msg += "\nreplay with markers failed: " + err2.Error()
		default:
			msg += "\n(replayed with a marker after each request: no difference, so it depends on pipelining)"
		}
	}
	t.Fatalf("%s\nseed %d: %s", msg, seed, replay)
}

// TestGeneratorDeterministic checks that a seed always yields the same
// traffic, which replaying a failure relies on.
func TestGeneratorDeterministic(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g1, g2 := NewGenerator(42, now), NewGenerator(42, now)
	s1, s2 := newSide(Target{}), newSide(Target{})
	for i := 0; i < 2000; i++ {
		b1, b2 := g1.Next(), g2.Next()
		p1, p2 := s1.build(b1, false), s2.build(b2, false)
		if string(p1.buf) != string(p2.buf) || b1.Slot != b2.Slot || len(b1.cuts) != len(b2.cuts) {
			t.Fatalf("batch %d differs between two generators of the same seed", i)
		}
	}
}

// TestTextItem checks reply framing, which must never split a data block.
func TestTextItem(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"STORED\r\n", 8},
		{"STORED\r", 0},
		{"VALUE k 0 5\r\nab\r\nc\r\nEND\r\n", 20},
		{"VALUE k 0 5\r\nab\r\n", 0},
		{"VALUE k 0 5 9\r\nhello\r\n", 22},
	} {
		if got := textItem([]byte(tc.in)); got != tc.want {
			t.Errorf("textItem(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestNormaliseStats checks that the counters the traffic determines keep
// their values, the others read "*", and per-class lines fold into field
// lists and sums.
func TestNormaliseStats(t *testing.T) {
	s := newSide(Target{})
	var out []byte
	for _, l := range []string{
		"STAT pid 1\r\n", "STAT touch_hits 7\r\n", "STAT get_expired 2\r\n", "STAT curr_items 5\r\n",
		"STAT items:1:number 3\r\n", "STAT items:1:evicted 1\r\n", "STAT items:4:number 2\r\n", "STAT items:4:evicted 2\r\n",
		"STAT gomaxprocs 8\r\n", "END\r\n",
	} {
		out = append(out, s.normText([]byte(l))...)
	}
	want := "STAT pid *\r\nSTAT touch_hits 7\r\nSTAT get_expired 2\r\nSTAT curr_items 5\r\n" +
		"STAT fields-of-each-items-class number,evicted\r\n" +
		"STAT sum-over-classes:evicted 3\r\nSTAT sum-over-classes:number 5\r\nEND\r\n"
	if string(out) != want {
		t.Errorf("normalised stats:\n%q\nwant\n%q", out, want)
	}
	if got := string(s.normText([]byte("END\r\n"))); got != "END\r\n" {
		t.Errorf("END after a finished stats reply: %q", got)
	}
	out = nil
	for _, l := range []string{
		"STAT 1:chunk_size 96\r\n", "STAT 1:get_hits 4\r\n", "STAT 7:chunk_size 384\r\n", "STAT 7:get_hits 1\r\n",
		"STAT active_slabs 2\r\n", "END\r\n",
	} {
		out = append(out, s.normText([]byte(l))...)
	}
	want = "STAT active_slabs *\r\nSTAT fields-of-each-class chunk_size,get_hits\r\nSTAT sum-over-classes:get_hits 5\r\nEND\r\n"
	if string(out) != want {
		t.Errorf("normalised stats slabs:\n%q\nwant\n%q", out, want)
	}
	// A node of a cluster: its own work and items by name only; what
	// every node does alike keeps its value.
	s.perNode = true
	out = nil
	for _, l := range []string{
		"STAT get_hits 7\r\n", "STAT curr_items 5\r\n", "STAT cmd_flush 2\r\n", "STAT limit_maxbytes 64\r\n",
		"STAT items:1:number 3\r\n", "STAT items:1:evicted 0\r\n", "END\r\n",
	} {
		out = append(out, s.normText([]byte(l))...)
	}
	want = "STAT get_hits *\r\nSTAT curr_items *\r\nSTAT cmd_flush 2\r\nSTAT limit_maxbytes 64\r\n" +
		"STAT fields-of-each-items-class number,evicted\r\n" +
		"STAT sum-over-classes:evicted 0\r\nSTAT sum-over-classes:number *\r\nEND\r\n"
	if string(out) != want {
		t.Errorf("normalised per-node stats:\n%q\nwant\n%q", out, want)
	}
	// stats conns: a connection between wake-ups, or still finishing the
	// write of replies already read, is idle.
	s.perNode = false
	out = nil
	for _, l := range []string{
		"STAT 5:state conn_listening\r\n", "STAT 7:state conn_mwrite\r\n", "STAT 8:state conn_parse_cmd\r\n",
		"STAT 9:state conn_new_cmd\r\n", "STAT 10:state conn_read\r\n", "END\r\n",
	} {
		out = append(out, s.normText([]byte(l))...)
	}
	want = "STAT fields-of-each-class state\r\n" +
		"STAT connection-states conn_listening,conn_parse_cmd,conn_read,conn_read,conn_read\r\nEND\r\n"
	if string(out) != want {
		t.Errorf("normalised stats conns:\n%q\nwant\n%q", out, want)
	}
}

// TestClockTolerance checks the ±2 s rule for meta t, l and me's exp, la.
func TestClockTolerance(t *testing.T) {
	a, b := newSide(Target{}), newSide(Target{})
	ra := string(a.normText([]byte("HD t99 l3 t-1\r\n")))
	rb := string(b.normText([]byte("HD t100 l3 t-1\r\n")))
	if ra != "HD t~ l~ t-1\r\n" || ra != rb {
		t.Fatalf("normalised %q and %q", ra, rb)
	}
	if d := clockDiff(a.clocks, b.clocks); d != "" {
		t.Errorf("1 s apart: %s", d)
	}
	if d := clockDiff([]int64{99}, []int64{101}); d != "" {
		t.Errorf("2 s apart: %s", d)
	}
	if d := clockDiff([]int64{99}, []int64{102}); d == "" {
		t.Error("3 s apart passed")
	}
	if d := clockDiff([]int64{99}, nil); d == "" {
		t.Error("a missing value passed")
	}
}

// TestNormalise checks that only CAS values, stats values and the version
// are rewritten.
func TestNormalise(t *testing.T) {
	s := newSide(Target{})
	for _, tc := range []struct{ in, want string }{
		{"VALUE k 1 2 77\r\nab\r\n", "VALUE k 1 2 cas#1\r\nab\r\n"},
		{"VALUE k 1 2 78\r\nab\r\n", "VALUE k 1 2 cas#2\r\nab\r\n"},
		{"VALUE k 1 2 77\r\nab\r\n", "VALUE k 1 2 cas#1\r\nab\r\n"},
		{"VALUE j 1 2 78\r\nab\r\n", "VALUE j 1 2 cas#1\r\nab\r\n"},
		{"VALUE k 1 2\r\nab\r\n", "VALUE k 1 2\r\nab\r\n"},
		{"STAT pid 1234\r\n", "STAT pid *\r\n"},
		{"VERSION 1.6.18\r\n", "VERSION *\r\n"},
		{"CLIENT_ERROR bad data chunk\r\n", "CLIENT_ERROR bad data chunk\r\n"},
	} {
		if got := string(s.normText([]byte(tc.in))); got != tc.want {
			t.Errorf("normText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if s.last["k"] != 77 || s.prev["k"] != 78 {
		t.Errorf("CAS history of k: last %d prev %d, want 77 and 78", s.last["k"], s.prev["k"])
	}
}

// TestDetectsDifference runs the harness against two memcached processes
// that differ (the second one without CAS support, -C): it must report a
// mismatch that names the seed and a request.
func TestDetectsDifference(t *testing.T) {
	if os.Getenv("DIFF_SEED") != "" || os.Getenv("DIFF_AGAINST") == "memhive" {
		t.Skip("only with the default traffic")
	}
	ref := testserver.StartMemcached(t, "-m", "64", "-t", "2")
	other := testserver.StartMemcached(t, "-m", "64", "-t", "2", "-C")
	_, err := Run(Target{Name: "memcached", Addr: ref.Addr}, Target{Name: "memcached-C", Addr: other.Addr},
		Options{Seed: 7, Requests: 20000})
	var m *Mismatch
	if !errors.As(err, &m) {
		t.Fatalf("want a mismatch between memcached and memcached -C, got %v", err)
	}
	if msg := m.Error(); !strings.Contains(msg, "DIFF_SEED=7") || !strings.Contains(msg, "memcached-C reply") {
		t.Errorf("mismatch message lacks the seed or the replies:\n%s", msg)
	}
	t.Logf("found as expected: %.300s", m.Error())
}

// TestTrace prints, without any server, every generated request up to
// DIFF_TRACE_UPTO (a request index) whose bytes contain DIFF_TRACE_KEY, for
// seed DIFF_SEED: the history of a key behind a mismatch. Run it with -v.
func TestTrace(t *testing.T) {
	key := os.Getenv("DIFF_TRACE_KEY")
	if key == "" {
		t.Skip("set DIFF_TRACE_KEY (and DIFF_SEED, DIFF_TRACE_UPTO)")
	}
	seed, err := strconv.ParseInt(os.Getenv("DIFF_SEED"), 10, 64)
	if err != nil {
		t.Fatalf("DIFF_SEED: %v", err)
	}
	upto, err := strconv.Atoi(os.Getenv("DIFF_TRACE_UPTO"))
	if err != nil {
		t.Fatalf("DIFF_TRACE_UPTO: %v", err)
	}
	g := NewGenerator(seed, time.Now())
	s := newSide(Target{})
	for {
		b := g.Next()
		p := s.build(b, false)
		for i, r := range b.Requests {
			if r.Index > upto {
				return
			}
			rb := p.buf[p.reqs[i][0]:p.reqs[i][1]]
			if !strings.Contains(string(rb), key) {
				continue
			}
			d := quote(rb, 300)
			if b.Binary {
				d = "\n" + indent(dumpBinary(rb, 0x80), "    ")
			}
			t.Logf("batch %d (epoch %d, connection %d) request %d [%s]: %s", b.Index, b.Epoch, b.Slot, r.Index, r.Kind, d)
		}
	}
}

// TestMurmur3 checks the hash that places the anchors' item locks against
// MurmurHash3_x86_32's published values (seed 0).
func TestMurmur3(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"", 0}, {"hello", 0x248bfa47}, {"The quick brown fox jumps over the lazy dog", 0x2e4ff723},
		{"a", 0x3c2569b2}, {"ab", 0x9bbfd75f}, {"abc", 0xb3dd93fa},
	} {
		if got := murmur3([]byte(tc.in)); got != tc.want {
			t.Errorf("murmur3(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// TestAnchors checks that each anchor's item falls in its own memcached
// slab class and that no anchor shares an item lock with a generated key.
func TestAnchors(t *testing.T) {
	g := NewGenerator(1, time.Now())
	if len(g.anchors) != len(mcClassSizes) {
		t.Fatalf("%d anchors for %d classes", len(g.anchors), len(mcClassSizes))
	}
	locks := map[uint32]bool{murmur3([]byte(statsProbe)) % mcItemLocks: true}
	for _, k := range g.keys {
		locks[murmur3([]byte(k))%mcItemLocks] = true
	}
	for i, a := range g.anchors {
		size, prev := mcItemSize(len(a.key), a.n), 0
		if i > 0 {
			prev = mcClassSizes[i-1]
		}
		if size <= prev || size > mcClassSizes[i] {
			t.Errorf("anchor %s: item of %d bytes, not in class %d (%d..%d]", a.key, size, i+1, prev, mcClassSizes[i])
		}
		if locks[murmur3([]byte(a.key))%mcItemLocks] {
			t.Errorf("anchor %s shares an item lock with a generated key", a.key)
		}
	}
}

// envSeed is the seed the variable name gives, or a fresh one.
func envSeed(t *testing.T, name string) int64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return time.Now().UnixNano()
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// envRequests is the number of requests the variable name asks for:
// 100,000 by default, 10,000 with -short.
func envRequests(t *testing.T, name string) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		if testing.Short() {
			return 10000
		}
		return 100000
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// envAgainst is the server the variable name puts against the reference
// memcached: "" (memhive) or "memcached", which validates the harness.
func envAgainst(t *testing.T, name string) string {
	t.Helper()
	against := os.Getenv(name)
	if against != "" && against != "memcached" && against != "memhive" {
		t.Fatalf("%s=%q: want memcached or memhive", name, against)
	}
	return against
}
