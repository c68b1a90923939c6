package engine

import "strconv"

// StatTable declares, once, every field memhive's stats outputs show:
// memcached's "stats" (text and binary STAT), one cache's stats in the
// analytics API (JSON keyed by name) and the history samples stored from
// them, and /metrics. Each output is generated from it, so that adding a
// field is one row here (plus, for a new counter, the field it is counted
// in and the place that counts it).
//
// The rows are in the order memcached 1.6's "stats" lists its fields,
// which that output keeps (tools/difftest compares it with memcached's);
// rows of the other outputs alone sit beside the fields they derive from.
// /metrics lists its families in the order the table first names each.
//
// Counters are counted where they happen, as plain increments of fields
// (a stripe's counters under its lock, the server's connection counters
// by atomic adds on preallocated shards); a row says only how to read its
// field from a StatSnapshot, when stats are asked for. Do not modify the
// table at run time.
var StatTable = []Stat{
	{Name: "pid", Scope: ServerWide, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Process.PID }},
	{Name: "uptime", Scope: ServerWide, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Process.Uptime }},
	{Name: "time", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Time },
		Metric: &Metric{Name: "memcached_time_seconds", Type: Gauge, Help: "Current UNIX time according to the server."}},
	{Name: "version", Scope: ServerWide, In: InStats, Text: func(s *StatSnapshot) string { return s.Process.Version }},
	{Name: "libevent", Scope: Fixed, In: InStats, Text: func(*StatSnapshot) string { return "gnet" }},
	fixed("pointer_size", 64),
	{Name: "rusage_user", Scope: ServerWide, In: InStats, Text: func(s *StatSnapshot) string { return s.Process.RusageUser }},
	{Name: "rusage_system", Scope: ServerWide, In: InStats, Text: func(s *StatSnapshot) string { return s.Process.RusageSystem }},
	{Name: "max_connections", Scope: ServerWide, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Process.MaxConns }},
	{Name: "curr_connections", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.Curr },
		Metric: &Metric{Name: "memcached_current_connections", Type: Gauge, Help: "Current number of open connections."}},
	{Name: "total_connections", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.Total },
		Metric: &Metric{Name: "memcached_connections_total", Type: Counter, Help: "Total number of connections opened."}},
	// Refused before they are anyone's: the process's.
	{Name: "rejected_connections", Scope: ServerWide, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Process.RejectedConns }},
	{Name: "connection_structures", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Conns.Curr }},
	fixed("response_obj_oom", 0),
	fixed("response_obj_count", 0),
	fixed("response_obj_bytes", 0),
	fixed("read_buf_count", 0),
	fixed("read_buf_bytes", 0),
	fixed("read_buf_bytes_free", 0),
	fixed("read_buf_oom", 0),
	fixed("reserved_fds", 0),
	{Name: "cmd_get", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CmdGet }},
	{Name: "cmd_set", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CmdSet },
		Metric: command("set", "hit")},
	{Name: "cmd_flush", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CmdFlush },
		Metric: command("flush", "hit")},
	{Name: "cmd_touch", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CmdTouch }},
	{Name: "cmd_meta", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Conns.MetaCmds }},
	{Name: "get_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.GetHits },
		Metric: command("get", "hit")},
	{Name: "get_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.GetMisses },
		Metric: command("get", "miss")},
	{Name: "get_expired", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.GetExpired }},
	{Name: "get_flushed", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.GetFlushed }},
	{Name: "delete_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.DeleteMisses },
		Metric: command("delete", "miss")},
	{Name: "delete_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.DeleteHits },
		Metric: command("delete", "hit")},
	// MemCachier's API sums what memcached counts apart.
	{Name: "cmd_delete", Scope: PerCache, In: InAPI, Value: func(s *StatSnapshot) uint64 { return s.DeleteHits + s.DeleteMisses }},
	{Name: "incr_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.IncrMisses },
		Metric: command("incr", "miss")},
	{Name: "incr_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.IncrHits },
		Metric: command("incr", "hit")},
	{Name: "decr_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.DecrMisses },
		Metric: command("decr", "miss")},
	{Name: "decr_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.DecrHits },
		Metric: command("decr", "hit")},
	{Name: "cas_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CasMisses },
		Metric: command("cas", "miss")},
	{Name: "cas_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CasHits },
		Metric: command("cas", "hit")},
	{Name: "cas_badval", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CasBadval },
		Metric: command("cas", "badval")},
	{Name: "touch_hits", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.TouchHits },
		Metric: command("touch", "hit")},
	{Name: "touch_misses", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.TouchMisses },
		Metric: command("touch", "miss")},
	{Name: "store_too_large", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Conns.StoreTooLarge }},
	{Name: "store_no_memory", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.StoreNoMemory }},
	{Name: "auth_cmds", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.AuthCmds }},
	{Name: "auth_errors", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.AuthErrors }},
	// memhive's, in a cluster that routes keys to their owners.
	{Name: "forwarded_requests", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.Forwarded }, When: routed,
		Metric: &Metric{Name: "memhive_forwarded_requests_total", Type: Counter, Help: "Total number of requests forwarded to the node that owns their key."}},
	{Name: "forward_errors", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.ForwardErrors }, When: routed,
		Metric: &Metric{Name: "memhive_forward_errors_total", Type: Counter, Help: "Total number of forwarded requests whose owner did not answer in time."}},
	{Name: "handed_over_items", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.HandedOver }, When: routed,
		Metric: &Metric{Name: "memhive_handed_over_items_total", Type: Counter, Help: "Total number of items handed over to their new owner when this node left."}},
	{Name: "bytes_read", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.BytesRead },
		Metric: &Metric{Name: "memcached_read_bytes_total", Type: Counter, Help: "Total number of bytes read from clients."}},
	{Name: "bytes_written", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Conns.BytesWritten },
		Metric: &Metric{Name: "memcached_written_bytes_total", Type: Counter, Help: "Total number of bytes sent to clients."}},
	{Name: "limit_maxbytes", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.LimitMaxbytes },
		Metric: &Metric{Name: "memcached_limit_bytes", Type: Gauge, Help: "Number of bytes this cache may use."}},
	fixed("accepting_conns", 1),
	fixed("listen_disabled_num", 0),
	fixed("time_in_listen_disabled_us", 0),
	{Name: "threads", Scope: ServerWide, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.Process.Threads }},
	fixed("conn_yields", 0),
	{Name: "hash_power_level", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return log2(s.HashBuckets) }},
	{Name: "hash_bytes", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.HashBuckets * 4 }},
	fixed("hash_is_expanding", 0),
	fixed("slab_reassign_rescues", 0),
	fixed("slab_reassign_chunk_rescues", 0),
	fixed("slab_reassign_evictions_nomem", 0),
	fixed("slab_reassign_inline_reclaim", 0),
	fixed("slab_reassign_busy_items", 0),
	fixed("slab_reassign_busy_deletes", 0),
	fixed("slab_reassign_running", 0),
	{Name: "slabs_moved", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.SlabsMoved }},
	// memcached lists these only with its LRU crawler enabled.
	{Name: "lru_crawler_running", Scope: Fixed, In: InStats, Value: zero, When: crawling},
	{Name: "lru_crawler_starts", Scope: Fixed, In: InStats, Value: zero, When: crawling},
	fixed("lru_maintainer_juggles", 0),
	fixed("malloc_fails", 0),
	fixed("log_worker_dropped", 0),
	fixed("log_worker_written", 0),
	fixed("log_watcher_skipped", 0),
	fixed("log_watcher_sent", 0),
	fixed("log_watchers", 0),
	fixed("unexpected_napi_ids", 0),
	fixed("round_robin_fallback", 0),
	{Name: "bytes", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Bytes },
		Metric: &Metric{Name: "memcached_current_bytes", Type: Gauge, Help: "Current number of bytes stored."}},
	// An extension beside the guide's fields: the memory the cache holds,
	// which reaches limit_maxbytes as evictions begin ("bytes" counts
	// only the chunks of its items). memcached shows it in "stats slabs".
	{Name: "total_malloced", Scope: PerCache, In: InAPI, Value: func(s *StatSnapshot) uint64 { return s.TotalMalloced },
		Metric: &Metric{Name: "memcached_malloced_bytes", Type: Gauge, Help: "Number of bytes of memory allocated to slab pages."}},
	{Name: "curr_items", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.CurrItems },
		Metric: &Metric{Name: "memcached_current_items", Type: Gauge, Help: "Current number of items stored."}},
	{Name: "total_items", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.TotalItems },
		Metric: &Metric{Name: "memcached_items_total", Type: Counter, Help: "Total number of items stored."}},
	{Name: "slab_global_page_pool", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.FreePages }},
	{Name: "expired_unfetched", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.ExpiredUnfetched }},
	{Name: "evicted_unfetched", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.EvictedUnfetched }},
	fixed("evicted_active", 0),
	{Name: "evictions", Scope: PerCache, In: InStats | InAPI, Value: func(s *StatSnapshot) uint64 { return s.Evictions },
		Metric: &Metric{Name: "memcached_items_evicted_total", Type: Counter, Help: "Total number of valid items removed to free memory."}},
	// MemCachier's "expired": see Stats.Expired.
	{Name: "expired", Scope: PerCache, In: InAPI, Value: func(s *StatSnapshot) uint64 { return s.Expired },
		Metric: &Metric{Name: "memcached_items_reclaimed_total", Type: Counter, Help: "Total number of expired items removed."}},
	// memcached's reclaimed counts what its LRU maintainer reclaims from
	// LRU tails; memhive has none (its crawler's reclaims are
	// crawler_reclaimed, as memcached's crawler's are).
	fixed("reclaimed", 0),
	{Name: "crawler_reclaimed", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.CrawlerReclaimed }},
	{Name: "crawler_items_checked", Scope: PerCache, In: InStats, Value: func(s *StatSnapshot) uint64 { return s.CrawlerItemsChecked }},
	fixed("lrutail_reflocked", 0),
	fixed("moves_to_cold", 0),
	fixed("moves_to_warm", 0),
	fixed("moves_within_lru", 0),
	fixed("direct_reclaims", 0),
	fixed("lru_bumps_dropped", 0),
}

// Stat is one row of StatTable: a field under memcached's name, where its
// value comes from, and the outputs that show it.
type Stat struct {
	// Name is the field's name as memcached's "stats" prints it, and its
	// key in the analytics API's JSON and in history samples.
	Name string
	// Scope says which part of a StatSnapshot the value is read from.
	Scope StatScope
	// In is the set of outputs that show the field; /metrics shows it
	// when Metric is set.
	In StatOutput
	// Value reads the field. Text is set instead for the few fields that
	// are not numbers (memcached's version, rusage); those show only in
	// "stats".
	Value func(*StatSnapshot) uint64
	Text  func(*StatSnapshot) string
	// When, if set, reports whether the outputs list the field now:
	// memcached lists some only while their machinery runs.
	When func(*StatSnapshot) bool
	// Metric is the Prometheus series /metrics exports the field as, one
	// per cache; nil for none. /metrics reads the analytics API's fields,
	// so a row with a Metric is InAPI.
	Metric *Metric
}

// StatOutput is a set of the outputs that show a Stat.
type StatOutput uint8

const (
	// InStats is memcached's general "stats", over text and binary, in
	// StatTable's order.
	InStats StatOutput = 1 << iota
	// InAPI is one cache's stats in the analytics API, and the history
	// samples the sampler stores of the same fields: MemCachier's guide's
	// fields, and total_malloced.
	InAPI
)

// StatScope is where a Stat's value comes from.
type StatScope uint8

const (
	// PerCache fields are read from one cache's own counters: its
	// engine's (StatSnapshot.Stats, Time, Crawling) and its connections'
	// (StatSnapshot.Conns).
	PerCache StatScope = iota
	// ServerWide fields are the process's (StatSnapshot.Process), the
	// same whichever cache asks; only "stats" shows them.
	ServerWide
	// Fixed fields are constants: memcached's fields for machinery memhive
	// does not have (libevent, the segmented LRU, extstore), kept under
	// their names with a value that describes memhive (0 where nothing
	// happens), so that tools reading them find them.
	Fixed
)

// Prometheus metric types.
const (
	Gauge   = "gauge"
	Counter = "counter"
)

// Metric is a Prometheus series, named as prometheus/memcached_exporter
// names memcached's, so that dashboards and alerts made for memcached work
// per cache.
type Metric struct {
	// Name, Type (Gauge or Counter) and Help describe the series' family;
	// the stats of one family agree on them.
	Name, Type, Help string
	// Labels are label name and value pairs, after "cache", that tell
	// apart the series of one family.
	Labels []string
}

// command is a series of memcached_commands_total, memcached_exporter's
// count of commands by command and outcome.
func command(cmd, status string) *Metric {
	return &Metric{Name: "memcached_commands_total", Type: Counter, Help: "Total number of commands by command and outcome.",
		Labels: []string{"command", cmd, "status", status}}
}

// fixed is a Fixed field of "stats" whose value is always v.
func fixed(name string, v uint64) Stat {
	return Stat{Name: name, Scope: Fixed, In: InStats, Value: func(*StatSnapshot) uint64 { return v }}
}

func zero(*StatSnapshot) uint64 { return 0 }

func crawling(s *StatSnapshot) bool { return s.Crawling }

// routed shows the routing counters only on a node that routes keys to
// their owners: a single node's stats stay memcached's, field for field.
func routed(s *StatSnapshot) bool { return s.Routed }

func log2(n uint64) uint64 {
	p := uint64(0)
	for n > 1 {
		n >>= 1
		p++
	}
	return p
}

// Shows reports whether output out lists the field for snapshot s.
func (st *Stat) Shows(out StatOutput, s *StatSnapshot) bool {
	return st.In&out != 0 && (st.When == nil || st.When(s))
}

// Format is the field's value as "stats" prints it.
func (st *Stat) Format(s *StatSnapshot) string {
	if st.Text != nil {
		return st.Text(s)
	}
	return strconv.FormatUint(st.Value(s), 10)
}

// APIStats is one cache's fields of the analytics API (and its history
// samples), keyed by name: every numeric field InAPI.
func APIStats(s *StatSnapshot) map[string]uint64 {
	m := make(map[string]uint64, 32)
	for i := range StatTable {
		if st := &StatTable[i]; st.Shows(InAPI, s) && st.Value != nil {
			m[st.Name] = st.Value(s)
		}
	}
	return m
}

// StatSnapshot is what StatTable reads: one cache's counters at one
// moment and, for memcached's "stats", the serving process's. It is a
// plain value, owned by whoever read it.
type StatSnapshot struct {
	// Stats are the cache's engine's (Engine.Stats).
	Stats
	// Time is the server clock's unix time, in seconds.
	Time uint64
	// Crawling reports whether the cache's crawler runs.
	Crawling bool
	// Routed reports whether the node forwards requests to the owners of
	// their keys (server-side routing), whose counters then show.
	Routed bool
	// Conns are the server's counters of the cache's connections.
	Conns ConnStats
	// Process is the serving process's; zero where only PerCache fields
	// are read.
	Process ProcessStats
}

// ConnStats are the counters the server keeps of one cache's connections
// (its own, memcached's thread stats), summed when read.
type ConnStats struct {
	Curr, Total             uint64 // connections open, and opened since start or "stats reset"
	BytesRead, BytesWritten uint64
	StoreTooLarge           uint64 // storage commands refused as too large, before the engine sees them
	AuthCmds, AuthErrors    uint64
	MetaCmds                uint64
	// In a cluster routing keys to their owners (issue 15): requests
	// forwarded to the owner of their key, those of them that failed, and
	// items handed over to a new owner when this node left.
	Forwarded, ForwardErrors, HandedOver uint64
}

// ProcessStats are the serving process's fields of memcached's "stats",
// the same whichever cache asks.
type ProcessStats struct {
	PID, Uptime              uint64 // uptime in seconds
	Version                  string
	RusageUser, RusageSystem string // CPU seconds, as "seconds.microseconds"
	MaxConns, Threads        uint64
	RejectedConns            uint64 // connections refused past MaxConns
}

// StatSnapshot reads the engine's stats for StatTable, with conns, the
// server's counters of this cache's connections. Process is left zero.
func (e *Engine) StatSnapshot(conns ConnStats) StatSnapshot {
	return StatSnapshot{Stats: e.Stats(), Time: uint64(e.clock.Unix()), Crawling: e.Crawling(), Conns: conns}
}
