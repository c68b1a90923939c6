package analytics

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
)

// TestStatsOutputsFollowTheTable checks the analytics API's stats, the
// history samples and /metrics against engine.StatTable, given a source
// that answers the table's API fields as the server does: each output
// shows every field the table declares for it, with its value, and
// nothing else of a cache.
func TestStatsOutputsFollowTheTable(t *testing.T) {
	f := newAPI(t)
	for _, id := range []uint32{f.a.ID, f.b.ID} {
		m := map[string]uint64{}
		for i, st := range engine.StatTable {
			if st.In&engine.InAPI != 0 {
				m[st.Name] = uint64(id)*1000 + uint64(i)
			}
		}
		f.source.stats[id] = m
	}
	apiFields := func(what string, got map[string]uint64, id uint32) {
		t.Helper()
		n := 0
		for i, st := range engine.StatTable {
			v, ok := got[st.Name]
			if st.In&engine.InAPI == 0 {
				if ok {
					t.Errorf("%s: %s, which the table does not declare for the API", what, st.Name)
				}
				continue
			}
			n++
			if want := uint64(id)*1000 + uint64(i); !ok || v != want {
				t.Errorf("%s: %s = %d (present %v), want %d", what, st.Name, v, ok, want)
			}
		}
		if len(got) != n {
			t.Errorf("%s: %d fields, the table declares %d", what, len(got), n)
		}
	}

	status, body := f.do("GET", fmt.Sprintf("/api/v1/%d/stats", f.a.ID), f.full, "")
	var byNode map[string]map[string]uint64
	if status != 200 || json.Unmarshal([]byte(body), &byNode) != nil || len(byNode) != 1 {
		t.Fatalf("stats: %d %s", status, body)
	}
	apiFields("API stats", byNode[node], f.a.ID)

	s := StartSampler(f.store, f.source, node, time.Hour, time.Hour, nil)
	s.Stop() // it samples once at start
	hist, err := f.store.History(f.a.ID, time.Now().Add(-time.Second))
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %v %v", hist, err)
	}
	apiFields("history sample", hist[0].Stats, f.a.ID)

	m := &Metrics{Store: f.store, Source: f.source, Version: "1.6.18-memhive", Public: true}
	status, body = doWith(m.Handle, "GET", "/metrics", "", "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if status != 200 || err != nil {
		t.Fatalf("metrics: %d %v\n%s", status, err, body)
	}
	// Every series the table declares, per cache, and its value.
	want := map[string]uint64{}
	for i, st := range engine.StatTable {
		if st.Metric == nil {
			continue
		}
		fam := families[st.Metric.Name]
		if fam == nil || fam.GetType().String() != strings.ToUpper(st.Metric.Type) || fam.GetHelp() != st.Metric.Help {
			t.Errorf("%s: family %s missing or not %s %q: %v", st.Name, st.Metric.Name, st.Metric.Type, st.Metric.Help, fam)
		}
		for _, c := range []control.Cache{f.a, f.b} {
			labels := append([]string{"cache", c.Name}, st.Metric.Labels...)
			want[st.Metric.Name+fmt.Sprint(labels)] = uint64(c.ID)*1000 + uint64(i)
		}
	}
	// Nothing else but the process's own families.
	own := map[string]bool{"memcached_up": true, "memcached_version": true, "go_memstats_heap_alloc_bytes": true, "go_goroutines": true}
	for name, fam := range families {
		if own[name] {
			continue
		}
		for _, mt := range fam.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName(), l.GetValue())
			}
			key := name + fmt.Sprint(labels)
			v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			w, ok := want[key]
			if !ok {
				t.Errorf("/metrics has %s, which the table does not declare", key)
				continue
			}
			if uint64(v) != w {
				t.Errorf("/metrics: %s = %v, want %d", key, v, w)
			}
			delete(want, key)
		}
	}
	for key := range want {
		t.Errorf("/metrics has no %s", key)
	}
}
