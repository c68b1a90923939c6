package server

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/tenancy"
)

// stat is one "STAT name value" pair.
type stat struct {
	name  string
	value string
}

type statList []stat

func (l *statList) str(name, v string)      { *l = append(*l, stat{name, v}) }
func (l *statList) u(name string, v uint64) { l.str(name, strconv.FormatUint(v, 10)) }
func (l *statList) i(name string, v int64)  { l.str(name, strconv.FormatInt(v, 10)) }

func rusage() (user, sys string) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return "0.000000", "0.000000"
	}
	f := func(tv syscall.Timeval) string {
		return strconv.FormatInt(tv.Sec, 10) + "." + pad6(tv.Usec)
	}
	return f(ru.Utime), f(ru.Stime)
}

func pad6(us int64) string {
	s := strconv.FormatInt(us, 10)
	for len(s) < 6 {
		s = "0" + s
	}
	return s
}

// generalStats lists memcached's "stats" fields, in memcached's order, with
// memhive's values: the rows of engine.StatTable that "stats" shows.
func (s *Server) generalStats(tn *tenancy.Cache) statList {
	snap := tn.Snapshot()
	snap.Process = s.processStats()
	var l statList
	for i := range engine.StatTable {
		if st := &engine.StatTable[i]; st.Shows(engine.InStats, &snap) {
			l.str(st.Name, st.Format(&snap))
		}
	}
	return l
}

// processStats are the process's fields of "stats", the same for every
// cache.
func (s *Server) processStats() engine.ProcessStats {
	user, sys := rusage()
	return engine.ProcessStats{
		PID:           uint64(os.Getpid()),
		Uptime:        uint64(time.Since(s.started).Seconds()),
		Version:       Version,
		RusageUser:    user,
		RusageSystem:  sys,
		MaxConns:      uint64(s.cfg.MaxConns),
		Threads:       uint64(s.cfg.Threads),
		RejectedConns: s.stats.RejectedConns.Load(),
	}
}

// settingsStats lists "stats settings": memcached's names for the
// settings memhive has.
func (s *Server) settingsStats(tn *tenancy.Cache) statList {
	var l statList
	l.u("maxbytes", uint64(tn.Engine().LimitBytes()))
	l.i("maxconns", int64(s.cfg.MaxConns))
	host, port := splitListen(s.cfg.Listen)
	l.str("tcpport", port)
	l.u("udpport", 0)
	l.str("inter", host)
	l.i("verbosity", int64(s.verbosity.Load()))
	l.u("oldest", 0)
	l.str("evictions", "on")
	l.str("domain_socket", "NULL")
	l.str("umask", "700")
	l.str("shutdown_command", "no")
	l.str("growth_factor", strconv.FormatFloat(tn.Engine().GrowthFactor(), 'f', 2, 64))
	l.i("chunk_size", 48)
	l.i("num_threads", int64(s.cfg.Threads))
	l.i("num_threads_per_udp", int64(s.cfg.Threads))
	l.str("stat_key_prefix", ":")
	l.str("detail_enabled", "no")
	l.i("reqs_per_event", 20)
	l.str("cas_enabled", "yes")
	l.i("tcp_backlog", 1024)
	l.str("binding_protocol", "auto-negotiate")
	l.str("auth_enabled_sasl", yesNo(!s.tenants.Local()))
	l.str("auth_enabled_ascii", yesNo(!s.tenants.Local()))
	l.i("item_size_max", int64(tn.Engine().MaxItemSize()))
	l.str("maxconns_fast", "yes")
	l.i("hashpower_init", 0)
	l.str("slab_reassign", "yes")
	l.i("slab_automove", 1)
	// memhive has no page mover driven by a window of samples, and its
	// items are never chunked: the automover's tunables read as
	// memcached's defaults, the chunk limit as the item limit.
	l.str("slab_automove_ratio", "0.80")
	l.i("slab_automove_window", 30)
	l.i("slab_chunk_max", int64(tn.Engine().MaxItemSize()))
	l.i("slab_page_size", int64(tn.Engine().PageSize()))
	l.str("lru_crawler", yesNo(tn.Engine().Crawling()))
	l.i("lru_crawler_sleep", 0)
	l.i("lru_crawler_tocrawl", 0)
	l.i("tail_repair_time", 0)
	l.str("flush_enabled", "yes")
	l.str("dump_enabled", "no")
	l.str("hash_algorithm", "farmhash")
	// One LRU per class, like memcached's compat mode (-o
	// no_lru_segmented): no hot, warm or temporary LRU.
	l.str("lru_maintainer_thread", "no")
	l.str("lru_segmented", "no")
	l.i("hot_lru_pct", 0)
	l.i("warm_lru_pct", 0)
	l.str("hot_max_factor", "0.00")
	l.str("warm_max_factor", "0.00")
	l.str("temp_lru", "no")
	l.i("temporary_ttl", 0)
	l.i("idle_timeout", 0)
	// Fields of machinery memhive does not have (the logger, the read
	// buffer pool, extstore, TLS through memcached's options, NAPI, a
	// memory file in memcached's format) with memcached's values when it
	// does not use them, so that tools reading them find them.
	l.i("watcher_logbuf_size", 262144)
	l.i("worker_logbuf_size", 65536)
	l.i("read_buf_mem_limit", 0)
	l.str("track_sizes", "no")
	l.str("inline_ascii_response", "no")
	l.i("ext_item_size", 512)
	l.i("ext_item_age", 4294967295)
	l.i("ext_low_ttl", 0)
	l.i("ext_recache_rate", 2000)
	l.i("ext_wbuf_size", 4194304)
	l.i("ext_compact_under", 0)
	l.i("ext_drop_under", 0)
	l.i("ext_max_sleep", 1000000)
	l.str("ext_max_frag", "0.80")
	l.str("slab_automove_freeratio", "0.010")
	l.str("ext_drop_unread", "no")
	l.str("ssl_enabled", "no")
	l.str("ssl_chain_cert", "(null)")
	l.str("ssl_key", "(null)")
	l.i("ssl_verify_mode", 0)
	l.i("ssl_keyformat", 1)
	l.str("ssl_ciphers", "NULL")
	l.str("ssl_ca_cert", "NULL")
	l.i("ssl_wbuf_size", 16384)
	l.str("ssl_session_cache", "no")
	l.str("ssl_kernel_tls", "no")
	l.str("ssl_min_version", "tlsv1.2")
	l.str("num_napi_ids", "(null)")
	l.str("memory_file", "(null)")
	l.i("gomaxprocs", int64(runtime.GOMAXPROCS(0)))
	return l
}

func splitListen(addr string) (host, port string) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:]
		}
	}
	return addr, "0"
}

// itemsStats and slabsStats describe the size classes, with memcached's
// field names in memcached's order. "stats items" lists the classes
// holding items, "stats slabs" those holding pages, as memcached does.
// memhive keeps no LRU (segments age whole), so, as in memcached's compat
// mode, every item counts as cold, and the hot and warm fields are 0.
func (s *Server) itemsStats(tn *tenancy.Cache) statList {
	var l statList
	now := s.clock.Now()
	for _, c := range tn.Engine().SlabStats() {
		if c.Items == 0 {
			continue
		}
		p := "items:" + strconv.Itoa(c.ID+1) + ":"
		age := uint64(0)
		if c.OldestAtime != 0 && now > c.OldestAtime {
			age = uint64(now - c.OldestAtime)
		}
		l.u(p+"number", uint64(c.Items))
		l.u(p+"number_hot", 0)
		l.u(p+"number_warm", 0)
		l.u(p+"number_cold", uint64(c.Items))
		l.u(p+"age_hot", 0)
		l.u(p+"age_warm", 0)
		l.u(p+"age", age)
		// memhive does not keep the sizes its items asked for: the
		// chunks of their classes stand in for them.
		l.u(p+"mem_requested", uint64(c.UsedChunks)*uint64(c.ChunkSize))
		l.u(p+"evicted", c.Evicted)
		l.u(p+"evicted_nonzero", c.EvictedNonzero)
		l.u(p+"evicted_time", 0)
		l.u(p+"outofmemory", c.OutOfMemory)
		l.u(p+"tailrepairs", 0)
		// memcached's reclaimed counts what its LRU maintainer reclaims
		// from LRU tails; memhive has none (its crawler's reclaims are
		// crawler_reclaimed, as memcached's crawler's are).
		l.u(p+"reclaimed", 0)
		l.u(p+"expired_unfetched", c.ExpiredUnfetch)
		l.u(p+"evicted_unfetched", c.EvictedUnfetch)
		l.u(p+"evicted_active", 0)
		l.u(p+"crawler_reclaimed", c.CrawlerReclaims)
		l.u(p+"crawler_items_checked", 0)
		l.u(p+"lrutail_reflocked", 0)
		l.u(p+"moves_to_cold", 0)
		l.u(p+"moves_to_warm", 0)
		l.u(p+"moves_within_lru", 0)
		l.u(p+"direct_reclaims", 0)
		l.u(p+"hits_to_hot", 0)
		l.u(p+"hits_to_warm", 0)
		l.u(p+"hits_to_cold", 0)
		l.u(p+"hits_to_temp", 0)
	}
	return l
}

func (s *Server) slabsStats(tn *tenancy.Cache) statList {
	var l statList
	active := 0
	var total uint64
	for _, c := range tn.Engine().SlabStats() {
		// memcached lists the classes holding pages. It allocates an
		// item before it runs a storage command, so a class whose
		// commands counted something always has one; memhive allocates
		// only what it stores, and lists such a class too, so that the
		// per-class counters add up to the cache's.
		counted := c.SetCmds | c.GetHits | c.TouchHits | c.DeleteHits | c.CasHits | c.CasBadval | c.IncrHits | c.DecrHits
		if c.Pages == 0 && counted == 0 {
			continue
		}
		if c.Pages > 0 {
			active++ // memcached's active_slabs: classes holding pages
		}
		total += uint64(c.Pages) * uint64(tn.Engine().PageSize())
		p := strconv.Itoa(c.ID+1) + ":"
		l.u(p+"chunk_size", uint64(c.ChunkSize))
		l.u(p+"chunks_per_page", uint64(c.ChunksPerPage))
		l.u(p+"total_pages", uint64(c.Pages))
		l.u(p+"total_chunks", uint64(c.Pages*c.ChunksPerPage))
		l.u(p+"used_chunks", uint64(c.UsedChunks))
		l.u(p+"free_chunks", uint64(c.FreeChunks))
		l.u(p+"free_chunks_end", 0)
		l.u(p+"get_hits", c.GetHits)
		l.u(p+"cmd_set", c.SetCmds)
		l.u(p+"delete_hits", c.DeleteHits)
		l.u(p+"incr_hits", c.IncrHits)
		l.u(p+"decr_hits", c.DecrHits)
		l.u(p+"cas_hits", c.CasHits)
		l.u(p+"cas_badval", c.CasBadval)
		l.u(p+"touch_hits", c.TouchHits)
	}
	l.u("active_slabs", uint64(active))
	l.u("total_malloced", total)
	return l
}

// statsFor returns the stats a subcommand names, or false if it names
// none. "" is the general list.
func (s *Server) statsFor(cs *conn, tn *tenancy.Cache, sub string) (statList, bool) {
	switch sub {
	case "":
		return s.generalStats(tn), true
	case "settings":
		return s.settingsStats(tn), true
	case "items":
		return s.itemsStats(tn), true
	case "slabs":
		return s.slabsStats(tn), true
	case "sizes":
		// memcached's size histogram is off unless enabled at start.
		return statList{{"sizes_status", "disabled"}}, true
	case "conns":
		return s.connsStats(cs, tn), true
	}
	return nil, false
}

func appendStats(out []byte, l statList) []byte {
	for _, st := range l {
		out = append(out, "STAT "...)
		out = append(out, st.name...)
		out = append(out, ' ')
		out = append(out, st.value...)
		out = append(out, "\r\n"...)
	}
	return append(out, codec.ReplyEnd...)
}

// asciiStats answers "stats [sub ...]" as memcached's process_stat does;
// only the first argument selects, further ones are ignored.
func (s *Server) asciiStats(cs *conn, out []byte, args [][]byte) []byte {
	tn := cs.tenant
	sub := ""
	if len(args) > 0 {
		sub = string(args[0])
	}
	switch sub {
	case "reset":
		if !cs.caps().CanWrite() {
			return append(out, codec.ReplyStatsResetDenied...)
		}
		s.resetStats(tn)
		return append(out, codec.ReplyReset...)
	case "detail":
		if len(args) < 2 {
			return append(out, codec.ReplyStatsDetailUsage...)
		}
		switch string(args[1]) {
		case "on", "off":
			return append(out, codec.ReplyOK...)
		case "dump":
			return append(out, codec.ReplyEnd...) // no per-prefix stats are kept
		}
		return append(out, codec.ReplyStatsDetailUsage...)
	case "cachedump":
		return append(out, codec.ReplyCachedumpDenied...)
	}
	l, ok := s.statsFor(cs, tn, sub)
	if !ok {
		return append(out, codec.ReplyError...)
	}
	return appendStats(out, l)
}

// binaryStats answers STAT: one packet per stat, then an empty one.
func (s *Server) binaryStats(cs *conn, out []byte, r *codec.Request) []byte {
	tn := cs.tenant
	sub := string(r.Key)
	if sub == "conns" {
		sub = "-" // memcached lists connections only over text
	}
	if strings.HasPrefix(sub, "reset") {
		if !cs.caps().CanWrite() {
			return codec.AppendBinaryError(out, r.Opcode, codec.StatusAuthError, r.Opaque, codec.BinaryStatsResetDenied)
		}
		s.resetStats(tn)
		return codec.AppendBinaryStat(out, r.Opaque, nil, nil)
	}
	l, ok := s.statsFor(cs, tn, sub)
	if !ok {
		return codec.AppendBinaryStatus(out, r.Opcode, codec.StatusKeyNotFound, r.Opaque)
	}
	for _, st := range l {
		out = codec.AppendBinaryStat(out, r.Opaque, []byte(st.name), []byte(st.value))
	}
	return codec.AppendBinaryStat(out, r.Opaque, nil, nil)
}

// resetStats is "stats reset": every counter goes back to zero; gauges
// (items, bytes, connections) are kept.
func (s *Server) resetStats(tn *tenancy.Cache) {
	tn.Engine().ResetStats()
	tn.Conns.Reset()
}

// connsStats lists the listener and every open connection as memcached's
// "stats conns" does, in order of file descriptor. File descriptors number
// the connections; the listener is shown as 0. The asking connection is
// parsing its command (conn_parse_cmd); the others wait for a request,
// which memcached shows as conn_read, or, for a connection that has sent
// nothing yet, as the state it accepts it in, conn_new_cmd.
func (s *Server) connsStats(self *conn, tn *tenancy.Cache) statList {
	now := s.clock.Now()
	var l statList
	l.str("0:addr", "tcp:"+s.cfg.Listen)
	l.str("0:state", "conn_listening")
	l.u("0:secs_since_last_cmd", 0)
	var conns []*conn
	s.conns.Range(func(_, v any) bool {
		if c := v.(*conn); c.sharedTenant.Load() == tn {
			conns = append(conns, c) // another cache's connections are not this one's business
		}
		return true
	})
	sort.Slice(conns, func(i, j int) bool { return conns[i].fd < conns[j].fd })
	for _, c := range conns {
		p := strconv.Itoa(c.fd) + ":"
		l.str(p+"addr", "tcp:"+c.remote)
		l.str(p+"listen_addr", "tcp:"+s.cfg.Listen)
		switch {
		case c == self:
			l.str(p+"state", "conn_parse_cmd")
		case !c.sent.Load():
			l.str(p+"state", "conn_new_cmd")
		default:
			l.str(p+"state", "conn_read")
		}
		last := c.lastCmd.Load()
		if now > last {
			l.u(p+"secs_since_last_cmd", uint64(now-last))
		} else {
			l.u(p+"secs_since_last_cmd", 0)
		}
	}
	return l
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
