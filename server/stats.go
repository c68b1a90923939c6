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
	"github.com/memhive/memhive/control"
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
// memhive's values. Fields for machinery memhive does not have (libevent,
// extstore, the segmented LRU) keep their names so tools that read them
// find them, with values that describe memhive (0 where nothing happens).
func (s *Server) generalStats(tn *tenant) statList {
	e := tn.eng.Stats()
	ct := tn.stats.totals()
	user, sys := rusage()
	var l statList
	l.i("pid", int64(os.Getpid()))
	l.u("uptime", uint64(time.Since(s.started).Seconds()))
	l.i("time", s.clock.Unix())
	l.str("version", Version)
	l.str("libevent", "gnet")
	l.i("pointer_size", 64)
	l.str("rusage_user", user)
	l.str("rusage_system", sys)
	l.i("max_connections", int64(s.cfg.MaxConns))
	l.i("curr_connections", tn.stats.currConns.Load())
	l.u("total_connections", tn.stats.totalConns.Load())
	l.u("rejected_connections", s.stats.rejectedConns.Load())
	l.i("connection_structures", tn.stats.currConns.Load())
	l.u("response_obj_oom", 0)
	l.u("response_obj_count", 0)
	l.u("response_obj_bytes", 0)
	l.u("read_buf_count", 0)
	l.u("read_buf_bytes", 0)
	l.u("read_buf_bytes_free", 0)
	l.u("read_buf_oom", 0)
	l.u("reserved_fds", 0)
	l.u("cmd_get", e.CmdGet)
	l.u("cmd_set", e.CmdSet)
	l.u("cmd_flush", e.CmdFlush)
	l.u("cmd_touch", e.CmdTouch)
	l.u("cmd_meta", ct.metaCmds)
	l.u("get_hits", e.GetHits)
	l.u("get_misses", e.GetMisses)
	l.u("get_expired", e.GetExpired)
	l.u("get_flushed", e.GetFlushed)
	l.u("delete_misses", e.DeleteMisses)
	l.u("delete_hits", e.DeleteHits)
	l.u("incr_misses", e.IncrMisses)
	l.u("incr_hits", e.IncrHits)
	l.u("decr_misses", e.DecrMisses)
	l.u("decr_hits", e.DecrHits)
	l.u("cas_misses", e.CasMisses)
	l.u("cas_hits", e.CasHits)
	l.u("cas_badval", e.CasBadval)
	l.u("touch_hits", e.TouchHits)
	l.u("touch_misses", e.TouchMisses)
	l.u("store_too_large", ct.storeTooLarge)
	l.u("store_no_memory", e.StoreNoMemory)
	l.u("auth_cmds", ct.authCmds)
	l.u("auth_errors", ct.authErrors)
	l.u("bytes_read", ct.bytesRead)
	l.u("bytes_written", ct.bytesWritten)
	l.u("limit_maxbytes", e.LimitMaxbytes)
	l.u("accepting_conns", 1)
	l.u("listen_disabled_num", 0)
	l.u("time_in_listen_disabled_us", 0)
	l.i("threads", int64(s.cfg.Threads))
	l.u("conn_yields", 0)
	l.u("hash_power_level", uint64(log2(e.HashBuckets)))
	l.u("hash_bytes", e.HashBuckets*4)
	l.u("hash_is_expanding", 0)
	l.u("slab_reassign_rescues", 0)
	l.u("slab_reassign_chunk_rescues", 0)
	l.u("slab_reassign_evictions_nomem", 0)
	l.u("slab_reassign_inline_reclaim", 0)
	l.u("slab_reassign_busy_items", 0)
	l.u("slab_reassign_busy_deletes", 0)
	l.u("slab_reassign_running", 0)
	l.u("slabs_moved", e.SlabsMoved)
	if tn.eng.Crawling() {
		// memcached lists these only with its LRU crawler enabled.
		l.u("lru_crawler_running", 0)
		l.u("lru_crawler_starts", 0)
	}
	l.u("lru_maintainer_juggles", 0)
	l.u("malloc_fails", 0)
	l.u("log_worker_dropped", 0)
	l.u("log_worker_written", 0)
	l.u("log_watcher_skipped", 0)
	l.u("log_watcher_sent", 0)
	l.u("log_watchers", 0)
	l.u("unexpected_napi_ids", 0)
	l.u("round_robin_fallback", 0)
	l.u("bytes", e.Bytes)
	l.u("curr_items", e.CurrItems)
	l.u("total_items", e.TotalItems)
	l.u("slab_global_page_pool", e.FreePages)
	l.u("expired_unfetched", e.ExpiredUnfetched)
	l.u("evicted_unfetched", e.EvictedUnfetched)
	l.u("evicted_active", 0)
	l.u("evictions", e.Evictions)
	l.u("reclaimed", 0) // see itemsStats
	l.u("crawler_reclaimed", e.CrawlerReclaimed)
	l.u("crawler_items_checked", e.CrawlerItemsChecked)
	l.u("lrutail_reflocked", 0)
	l.u("moves_to_cold", 0)
	l.u("moves_to_warm", 0)
	l.u("moves_within_lru", 0)
	l.u("direct_reclaims", 0)
	l.u("lru_bumps_dropped", 0)
	return l
}

func log2(n uint64) int {
	p := 0
	for n > 1 {
		n >>= 1
		p++
	}
	return p
}

// settingsStats lists "stats settings": memcached's names for the
// settings memhive has.
func (s *Server) settingsStats(tn *tenant) statList {
	var l statList
	l.u("maxbytes", uint64(tn.eng.LimitBytes()))
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
	l.str("growth_factor", strconv.FormatFloat(tn.eng.GrowthFactor(), 'f', 2, 64))
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
	l.i("item_size_max", int64(tn.eng.MaxItemSize()))
	l.str("maxconns_fast", "yes")
	l.i("hashpower_init", 0)
	l.str("slab_reassign", "yes")
	l.i("slab_automove", 1)
	// memhive has no page mover driven by a window of samples, and its
	// items are never chunked: the automover's tunables read as
	// memcached's defaults, the chunk limit as the item limit.
	l.str("slab_automove_ratio", "0.80")
	l.i("slab_automove_window", 30)
	l.i("slab_chunk_max", int64(tn.eng.MaxItemSize()))
	l.i("slab_page_size", int64(tn.eng.PageSize()))
	l.str("lru_crawler", yesNo(tn.eng.Crawling()))
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
// memhive keeps one LRU per class, like memcached's compat mode: every item
// counts as cold, and the hot and warm fields are 0.
func (s *Server) itemsStats(tn *tenant) statList {
	var l statList
	now := s.clock.Now()
	for _, c := range tn.eng.SlabStats() {
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
		// chunks they hold stand in for them.
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

func (s *Server) slabsStats(tn *tenant) statList {
	var l statList
	active := 0
	var total uint64
	for _, c := range tn.eng.SlabStats() {
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
		total += uint64(c.Pages) * uint64(tn.eng.PageSize())
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
func (s *Server) statsFor(cs *conn, tn *tenant, sub string) (statList, bool) {
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
		if cs.caps()&control.CapWrite == 0 {
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
		if cs.caps()&control.CapWrite == 0 {
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
func (s *Server) resetStats(tn *tenant) {
	tn.eng.ResetStats()
	tn.stats.reset()
}

// connsStats lists the listener and every open connection as memcached's
// "stats conns" does, in order of file descriptor. File descriptors number
// the connections; the listener is shown as 0. The asking connection is
// parsing its command (conn_parse_cmd); the others wait for a request,
// which memcached shows as conn_read, or, for a connection that has sent
// nothing yet, as the state it accepts it in, conn_new_cmd.
func (s *Server) connsStats(self *conn, tn *tenant) statList {
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
