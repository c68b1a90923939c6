package analytics

import (
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// Metrics serves GET /metrics: Prometheus text format with the metric
// names of prometheus/memcached_exporter, one series per cache (label
// "cache", the cache's name), so existing memcached dashboards and alerts
// work per tenant.
type Metrics struct {
	Store   control.Store
	Source  Source
	Version string
	// Token, unless Public, is the admin bearer token the request must carry.
	Token  string
	Public bool
}

// metric is one family: its name, type, help, and how to read it from a
// cache's stats (nil for the commands family, written apart).
type metric struct {
	name, typ, help string
	field           string
}

var metricFamilies = []metric{
	{"memcached_current_bytes", "gauge", "Current number of bytes stored.", "bytes"},
	{"memcached_limit_bytes", "gauge", "Number of bytes this cache may use.", "limit_maxbytes"},
	{"memcached_malloced_bytes", "gauge", "Number of bytes of memory allocated to slab pages.", "total_malloced"},
	{"memcached_current_connections", "gauge", "Current number of open connections.", "curr_connections"},
	{"memcached_connections_total", "counter", "Total number of connections opened.", "total_connections"},
	{"memcached_current_items", "gauge", "Current number of items stored.", "curr_items"},
	{"memcached_items_total", "counter", "Total number of items stored.", "total_items"},
	{"memcached_items_evicted_total", "counter", "Total number of valid items removed to free memory.", "evictions"},
	{"memcached_items_reclaimed_total", "counter", "Total number of expired items removed.", "expired"},
	{"memcached_read_bytes_total", "counter", "Total number of bytes read from clients.", "bytes_read"},
	{"memcached_written_bytes_total", "counter", "Total number of bytes sent to clients.", "bytes_written"},
	{"memcached_time_seconds", "gauge", "Current UNIX time according to the server.", "time"},
}

// commandSeries maps memcached_commands_total's (command, status) labels
// to stats fields, as memcached_exporter does.
var commandSeries = [][3]string{
	{"get", "hit", "get_hits"}, {"get", "miss", "get_misses"},
	{"set", "hit", "cmd_set"},
	{"delete", "hit", "delete_hits"}, {"delete", "miss", "delete_misses"},
	{"incr", "hit", "incr_hits"}, {"incr", "miss", "incr_misses"},
	{"decr", "hit", "decr_hits"}, {"decr", "miss", "decr_misses"},
	{"cas", "hit", "cas_hits"}, {"cas", "miss", "cas_misses"}, {"cas", "badval", "cas_badval"},
	{"touch", "hit", "touch_hits"}, {"touch", "miss", "touch_misses"},
	{"flush", "hit", "cmd_flush"},
}

// Handle answers GET /metrics and reports whether the path was its own.
func (m *Metrics) Handle(ctx *fasthttp.RequestCtx) bool {
	if string(ctx.Path()) != "/metrics" {
		return false
	}
	if !m.Public && !bearerOK(ctx, m.Token) {
		writeError(ctx, fasthttp.StatusUnauthorized, "a valid admin bearer token is required (or serve with --metrics-public)")
		return true
	}
	caches, err := m.Store.Caches()
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "Server error")
		return true
	}
	sort.Slice(caches, func(i, j int) bool { return caches[i].Name < caches[j].Name })
	type row struct {
		name  string
		up    bool
		stats map[string]uint64
	}
	rows := make([]row, 0, len(caches))
	for _, c := range caches {
		st, ok := m.Source.CacheStats(c.ID)
		rows = append(rows, row{c.Name, ok && c.Enabled, st})
	}
	var b strings.Builder
	family := func(name, typ, help string) {
		b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	}
	sample := func(name string, labels []string, v uint64) {
		b.WriteString(name)
		b.WriteByte('{')
		for i := 0; i < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		b.WriteString("} " + strconv.FormatUint(v, 10) + "\n")
	}
	family("memcached_up", "gauge", "Whether the cache is served and enabled.")
	for _, r := range rows {
		up := uint64(0)
		if r.up {
			up = 1
		}
		sample("memcached_up", []string{"cache", r.name}, up)
	}
	family("memcached_version", "gauge", "The version of this server.")
	sample("memcached_version", []string{"version", m.Version}, 1)
	// The process's Go heap: item memory lives outside it, so it stays
	// small however many items are stored (the performance issue's T5).
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	family("go_memstats_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects.")
	b.WriteString("go_memstats_heap_alloc_bytes " + strconv.FormatUint(ms.HeapAlloc, 10) + "\n")
	// Prometheus' standard name; the soak test holds it to a baseline to
	// catch goroutines leaked per connection.
	family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	b.WriteString("go_goroutines " + strconv.Itoa(runtime.NumGoroutine()) + "\n")
	for _, f := range metricFamilies {
		family(f.name, f.typ, f.help)
		for _, r := range rows {
			if r.stats != nil {
				sample(f.name, []string{"cache", r.name}, r.stats[f.field])
			}
		}
	}
	family("memcached_commands_total", "counter", "Total number of commands by command and outcome.")
	for _, r := range rows {
		if r.stats == nil {
			continue
		}
		for _, c := range commandSeries {
			sample("memcached_commands_total", []string{"cache", r.name, "command", c[0], "status", c[1]}, r.stats[c[2]])
		}
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetBodyString(b.String())
	return true
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
