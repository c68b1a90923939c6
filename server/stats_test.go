package server

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
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
