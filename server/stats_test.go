package server

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/tenancy"
)

// statsOf parses a "stats" (or "stats <sub>") reply from a fresh
// connection into a map.
func statsOf(t *testing.T, s *Server, sub string) map[string]string {
	t.Helper()
	cmd := "stats"
	if sub != "" {
		cmd += " " + sub
	}
	out, _ := feed(s, []byte(cmd+"\r\n"), 0)
	if !strings.HasSuffix(out, "END\r\n") {
		t.Fatalf("%s: %q", cmd, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "END\r\n"), "\r\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "STAT" {
			m[f[1]] = f[2]
		}
	}
	return m
}

// TestStatsCountRefusedCommands checks the counters of commands memcached
// 1.6.18 counts though it refuses or cuts them short; each row's reply and
// counters are memcached's (-o no_lru_crawler,no_lru_maintainer) for the
// same input: a store whose data block does not end in "\r\n" counts in
// cmd_set; a flush_all refused for its delay in cmd_flush; an mg that
// stops at an opaque over 31 bytes counts no get; ma on an item memcached
// keeps in chunks (over 512 KiB) is non-numeric before its CAS is checked.
// (The first item stored in a fresh server has CAS 1.)
func TestStatsCountRefusedCommands(t *testing.T) {
	chunked := append([]byte("1"), bytes.Repeat([]byte(" "), 524228)...) // "ms k" makes a 524,289-byte item in memcached
	whole := chunked[:len(chunked)-1]
	ms := func(v []byte) string { return "ms k " + strconv.Itoa(len(v)) + "\r\n" + string(v) + "\r\n" }
	cases := []struct {
		name, send, reply string
		want              map[string]string
	}{
		{"set bad data chunk", "set k 0 0 1\r\nvv\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
			map[string]string{"cmd_set": "1", "curr_items": "0", "total_items": "0"}},
		{"set bad data chunk noreply", "set k 0 0 1 noreply\r\nvv\r\n", "ERROR\r\n",
			map[string]string{"cmd_set": "1", "curr_items": "0"}},
		{"append bad data chunk", "set k 0 0 1\r\nv\r\nappend k 0 0 1\r\nvv\r\n", "STORED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\n",
			map[string]string{"cmd_set": "2", "curr_items": "1", "total_items": "1"}},
		{"ms bad data chunk", "ms k 2\r\nabXY\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
			map[string]string{"cmd_set": "1", "curr_items": "0"}},
		{"flush_all bad delay", "flush_all soon\r\n", "CLIENT_ERROR invalid exptime argument\r\n",
			map[string]string{"cmd_flush": "1"}},
		{"flush_all bad delay noreply", "flush_all soon noreply\r\n", "",
			map[string]string{"cmd_flush": "1"}},
		{"mg opaque of 31 bytes", "set k 0 0 1\r\nv\r\nmg k v O" + strings.Repeat("o", 31) + "\r\n",
			"STORED\r\nVA 1 O" + strings.Repeat("o", 31) + "\r\nv\r\n",
			map[string]string{"cmd_get": "1", "get_hits": "1"}},
		{"mg opaque of 32 bytes", "set k 0 0 1\r\nv\r\nmg k v O" + strings.Repeat("o", 32) + "\r\n",
			"STORED\r\nCLIENT_ERROR opaque token too long\r\n",
			map[string]string{"cmd_get": "0", "get_hits": "0", "get_misses": "0"}},
		{"mg T opaque too long", "set k 0 0 1\r\nv\r\nmg k v T0 O" + strings.Repeat("o", 33) + "\r\n",
			"STORED\r\nCLIENT_ERROR opaque token too long\r\n",
			map[string]string{"cmd_get": "0", "get_hits": "0", "cmd_touch": "0", "touch_hits": "0"}},
		{"ma chunked item, stale cas", ms(chunked) + "ma k C999\r\n",
			"HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
			map[string]string{"incr_hits": "0", "incr_misses": "0"}},
		{"ma chunked item, its cas", ms(chunked) + "ma k C1\r\n",
			"HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
			map[string]string{"incr_hits": "0"}},
		{"ma largest whole item, stale cas", ms(whole) + "ma k C999\r\n", "HD\r\nEX\r\n",
			map[string]string{"incr_hits": "0"}},
		{"ma largest whole item, its cas", ms(whole) + "ma k C1\r\n", "HD\r\nHD\r\n",
			map[string]string{"incr_hits": "1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t)
			if got, _ := feed(s, []byte(c.send), 0); got != c.reply {
				t.Fatalf("reply %q, want %q", got, c.reply)
			}
			st := statsOf(t, s, "")
			for k, v := range c.want {
				if st[k] != v {
					t.Errorf("%s %s, want %s", k, st[k], v)
				}
			}
		})
	}
}

// TestStatsSlabsCommandCounters checks that "stats slabs" lists the
// per-class command counters in the class of the item concerned, and a
// class that counted something, as memcached does.
func TestStatsSlabsCommandCounters(t *testing.T) {
	s := newTestServer(t)
	in := "set a 0 0 1\r\n1\r\nget a\r\nincr a 1\r\ndecr a 1\r\ntouch a 0\r\ngets a\r\n" +
		"set c 0 0 1\r\nx\r\ngets c\r\ncas c 0 0 1 1\r\ny\r\ndelete c\r\n"
	feed(s, []byte(in), 0)
	st := statsOf(t, s, "slabs")
	want := map[string]string{
		"get_hits": "3", "cmd_set": "3", "incr_hits": "1", "decr_hits": "1", "touch_hits": "1",
		"delete_hits": "1", "cas_badval": "1", "cas_hits": "0",
	}
	var class string
	for k := range st {
		if strings.HasSuffix(k, ":get_hits") {
			if class != "" {
				t.Fatalf("get_hits in two classes: %s and %s", class, k)
			}
			class = strings.TrimSuffix(k, "get_hits")
		}
	}
	if class == "" {
		t.Fatalf("no class lists get_hits: %v", st)
	}
	for f, v := range want {
		if st[class+f] != v {
			t.Errorf("%s%s = %q, want %s", class, f, st[class+f], v)
		}
	}
}

// TestStatsConnsStates checks the states "stats conns" shows: the asking
// connection conn_parse_cmd, one that has sent requests conn_read, and one
// that has sent nothing yet conn_new_cmd, as memcached shows them.
func TestStatsConnsStates(t *testing.T) {
	s := newTestServer(t)
	silent := s.open(20, nil, nil)
	used := s.open(21, nil, nil)
	asker := s.open(22, nil, nil)
	defer s.closeConn(silent)
	defer s.closeConn(used)
	defer s.closeConn(asker)
	in := []byte("version\r\n")
	n, _ := s.process(used, in)
	used.keepRest(in[n:]) // as OnTraffic ends every read
	used.out = used.out[:0]
	in = []byte("stats conns\r\n")
	s.process(asker, in)
	out := string(asker.out)
	for _, want := range []string{"STAT 20:state conn_new_cmd\r\n", "STAT 21:state conn_read\r\n", "STAT 22:state conn_parse_cmd\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestStatsWithoutCrawler checks what stats say of a cache whose crawler
// is off (--crawl-interval 0, as memcached -o no_lru_crawler): settings'
// lru_crawler is no and the crawler's own fields are left out, as
// memcached leaves them; dead items stay counted in curr_items until a
// command meets them.
func TestStatsWithoutCrawler(t *testing.T) {
	s := newTestServer(t) // its memory has no crawler
	if st := statsOf(t, s, "settings"); st["lru_crawler"] != "no" {
		t.Errorf("lru_crawler %q, want no", st["lru_crawler"])
	}
	feed(s, []byte("set a 0 -1 1\r\n1\r\nset b 0 0 1\r\n1\r\n"), 0)
	st := statsOf(t, s, "")
	for _, f := range []string{"lru_crawler_running", "lru_crawler_starts"} {
		if v, ok := st[f]; ok {
			t.Errorf("%s %s listed without a crawler", f, v)
		}
	}
	if st["curr_items"] != "2" || st["get_expired"] != "0" {
		t.Errorf("curr_items %s get_expired %s, want 2 and 0", st["curr_items"], st["get_expired"])
	}
	feed(s, []byte("get a\r\n"), 0)
	if st := statsOf(t, s, ""); st["curr_items"] != "1" || st["get_expired"] != "1" || st["reclaimed"] != "0" {
		t.Errorf("after get: curr_items %s get_expired %s reclaimed %s, want 1, 1, 0", st["curr_items"], st["get_expired"], st["reclaimed"])
	}
}

// TestStatsFollowTheTable checks memcached's "stats", over text and
// binary, and the analytics API's stats of a cache (Tenants.CacheStats,
// which history samples store too) against engine.StatTable: each lists
// every field the table declares for it, "stats" in the table's order,
// with the value the table reads, and nothing else.
func TestStatsFollowTheTable(t *testing.T) {
	for _, crawl := range []time.Duration{-1, time.Hour} {
		t.Run("crawl "+crawl.String(), func(t *testing.T) {
			clk := engine.NewClock(time.Hour)
			t.Cleanup(clk.Stop)
			mem, err := engine.NewMemory(engine.Config{MemoryBytes: 16 << 20, Clock: clk, CrawlInterval: crawl})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { mem.Close() })
			eng, err := mem.NewEngine(engine.CacheConfig{LimitBytes: 16 << 20})
			if err != nil {
				t.Fatal(err)
			}
			s := New(Config{Listen: "127.0.0.1:0", MaxConns: 77, Threads: 3}, tenancy.ForEngine(eng))
			feed(s, []byte("set a 0 0 1\r\n1\r\nget a\r\nget b\r\nincr a 1\r\ndecr a 1\r\nincr z 1\r\ndecr z 1\r\n"+
				"touch a 0\r\ntouch z 0\r\ngets a\r\ncas a 0 0 1 1\r\ny\r\ncas q 0 0 1 1\r\ny\r\ndelete a\r\ndelete a\r\n"+
				"set big 0 0 2000000\r\nset b 0 0 1\r\nb\r\nflush_all 100\r\n"), 0)
			// Counters the request path above does not reach.
			sh := s.tenants.LocalCache().Conns.Shard(3)
			sh.BytesRead.Add(101)
			sh.BytesWritten.Add(202)
			sh.AuthCmds.Add(3)
			sh.AuthErrors.Add(2)
			sh.MetaCmds.Add(6)
			s.stats.RejectedConns.Add(5)

			// The connections that ask, open before the snapshot is read.
			textConn, binConn := testConn(s), testConn(s)
			ask := func(cs *conn, in []byte) string {
				s.process(cs, in)
				return string(cs.out)
			}

			snap := s.tenants.LocalCache().Snapshot()
			snap.Process = s.processStats()
			var want [][2]string
			for i := range engine.StatTable {
				if st := &engine.StatTable[i]; st.Shows(engine.InStats, &snap) {
					want = append(want, [2]string{st.Name, st.Format(&snap)})
				}
			}
			out := ask(textConn, []byte("stats\r\n"))
			var text [][2]string
			for _, l := range strings.Split(strings.TrimSuffix(out, "END\r\n"), "\r\n") {
				if f := strings.SplitN(l, " ", 3); len(f) == 3 && f[0] == "STAT" {
					text = append(text, [2]string{f[1], f[2]})
				}
			}
			bout := ask(binConn, binReq(codec.OpStat, 1, nil, nil, nil))
			var bin [][2]string
			for b := []byte(bout); len(b) >= 24; {
				keyLen, extLen := int(binary.BigEndian.Uint16(b[2:])), int(b[4])
				body := int(binary.BigEndian.Uint32(b[8:]))
				if keyLen > 0 {
					bin = append(bin, [2]string{string(b[24+extLen : 24+extLen+keyLen]), string(b[24+extLen+keyLen : 24+body])})
				}
				b = b[24+body:]
			}
			// Changing as the test runs: the process's clock and CPU time.
			moving := map[string]bool{"uptime": true, "rusage_user": true, "rusage_system": true}
			for _, got := range []struct {
				name  string
				pairs [][2]string
			}{{"text", text}, {"binary", bin}} {
				if len(got.pairs) != len(want) {
					t.Errorf("%s stats: %d fields, the table declares %d", got.name, len(got.pairs), len(want))
				}
				for i := range min(len(got.pairs), len(want)) {
					g, w := got.pairs[i], want[i]
					if g[0] != w[0] || (g[1] != w[1] && !moving[w[0]]) {
						t.Errorf("%s stats, field %d: %s %s, want %s %s", got.name, i, g[0], g[1], w[0], w[1])
					}
				}
			}
			if snap.CmdSet == 0 || snap.Conns.AuthCmds == 0 || snap.Process.RejectedConns != 5 {
				t.Errorf("the workload left counters at zero: %+v", snap)
			}

			api, ok := s.tenants.CacheStats(1)
			if !ok {
				t.Fatal("no stats of the cache")
			}
			n := 0
			for _, st := range engine.StatTable {
				v, ok := api[st.Name]
				if !st.Shows(engine.InAPI, &snap) {
					if ok {
						t.Errorf("API stats have %s, which the table does not declare for them", st.Name)
					}
					continue
				}
				n++
				if !ok || v != st.Value(&snap) {
					t.Errorf("API stats: %s = %d (present %v), want %d", st.Name, v, ok, st.Value(&snap))
				}
			}
			if len(api) != n {
				t.Errorf("API stats have %d fields, the table declares %d", len(api), n)
			}
		})
	}
}
