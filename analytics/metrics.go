package analytics

import (
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
)

// Metrics serves GET /metrics: Prometheus text format with the metric
// names of prometheus/memcached_exporter, one series per cache (label
// "cache", the cache's name), so existing memcached dashboards and alerts
// work per tenant. It reports this process only, in a cluster too:
// Prometheus scrapes every node, and sums across them are its to make.
type Metrics struct {
	Store   control.Store
	Source  Source
	Version string
	// Node, in a cluster, is this node's name (its --node): every series
	// then carries a "node" label, so that the same cache's series from
	// different nodes stay apart however they are scraped and relabelled.
	// Empty, on a single node, adds no label.
	Node string
	// Token, unless Public, is the admin bearer token the request must carry.
	Token  string
	Public bool
}

// statFamily is one Prometheus family of a cache's stats: the rows of
// engine.StatTable that export a series of it, in the table's order.
type statFamily struct {
	name, typ, help string
	stats           []*engine.Stat
}

// cacheFamilies are the families of engine.StatTable's metrics, in the
// order the table first names each.
var cacheFamilies = familiesOf(engine.StatTable)

func familiesOf(table []engine.Stat) []statFamily {
	var fams []statFamily
	index := map[string]int{}
	for i := range table {
		st := &table[i]
		if st.Metric == nil {
			continue
		}
		j, ok := index[st.Metric.Name]
		if !ok {
			j = len(fams)
			index[st.Metric.Name] = j
			fams = append(fams, statFamily{name: st.Metric.Name, typ: st.Metric.Type, help: st.Metric.Help})
		}
		fams[j].stats = append(fams[j].stats, st)
	}
	return fams
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
		if m.Node != "" {
			labels = append(labels[:len(labels):len(labels)], "node", m.Node)
		}
		if len(labels) == 0 {
			b.WriteString(name + " " + strconv.FormatUint(v, 10) + "\n")
			return
		}
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
	sample("go_memstats_heap_alloc_bytes", nil, ms.HeapAlloc)
	// Prometheus' standard name; the soak test holds it to a baseline to
	// catch goroutines leaked per connection.
	family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	sample("go_goroutines", nil, uint64(runtime.NumGoroutine()))
	// Each cache's stats, under the names engine.StatTable gives them;
	// their values are the analytics API's fields.
	for _, f := range cacheFamilies {
		family(f.name, f.typ, f.help)
		for _, r := range rows {
			if r.stats == nil {
				continue
			}
			for _, st := range f.stats {
				sample(f.name, append([]string{"cache", r.name}, st.Metric.Labels...), r.stats[st.Name])
			}
		}
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetBodyString(b.String())
	return true
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
