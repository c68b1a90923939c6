package engine

import (
	"math/rand"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// guideFields are the stats fields of MemCachier's analytics API guide,
// which its stats and history answer with, and nothing else.
var guideFields = []string{
	"auth_cmds", "auth_errors", "bytes", "bytes_read", "bytes_written", "cas_badval", "cas_hits",
	"cas_misses", "cmd_delete", "cmd_flush", "cmd_get", "cmd_set", "cmd_touch", "curr_connections",
	"curr_items", "decr_hits", "decr_misses", "delete_hits", "delete_misses", "evictions", "expired",
	"get_hits", "get_misses", "incr_hits", "incr_misses", "limit_maxbytes", "time", "total_connections",
	"total_items", "touch_hits", "touch_misses",
}

// TestStatTableRows checks that each row of the table can be shown where
// it says it is: a name once, a way to read it, text only in "stats",
// only per-cache numbers in the API, and /metrics only of the API's
// fields, each family with one type and help and its series told apart.
func TestStatTableRows(t *testing.T) {
	names := map[string]bool{}
	type family struct{ typ, help string }
	families := map[string]family{}
	series := map[string]bool{}
	for _, st := range StatTable {
		if st.Name == "" || names[st.Name] {
			t.Errorf("%q: a name empty or declared twice", st.Name)
		}
		names[st.Name] = true
		if (st.Value == nil) == (st.Text == nil) {
			t.Errorf("%s: needs exactly one of Value and Text", st.Name)
		}
		if st.In == 0 || st.In&^(InStats|InAPI) != 0 {
			t.Errorf("%s: outputs %b", st.Name, st.In)
		}
		if st.Text != nil && (st.In != InStats || st.Metric != nil) {
			t.Errorf("%s: a text field outside \"stats\"", st.Name)
		}
		// An API field is one cache's, and shown always but for the
		// routing counters: a node routes or not for its whole life, so
		// its API's shape still never changes.
		if st.In&InAPI != 0 && (st.Scope != PerCache || st.When != nil && !strings.Contains(st.Name, "forward") && st.Name != "handed_over_items") {
			t.Errorf("%s: in the API, but not always one cache's (scope %d)", st.Name, st.Scope)
		}
		if m := st.Metric; m != nil {
			if st.In&InAPI == 0 {
				t.Errorf("%s: exported to /metrics, which reads the API's fields, but not in the API", st.Name)
			}
			if m.Type != Gauge && m.Type != Counter || m.Help == "" || len(m.Labels)%2 != 0 {
				t.Errorf("%s: metric %+v", st.Name, m)
			}
			if f, ok := families[m.Name]; ok && f != (family{m.Type, m.Help}) {
				t.Errorf("%s: family %s is %v elsewhere, %s %q here", st.Name, m.Name, f, m.Type, m.Help)
			}
			families[m.Name] = family{m.Type, m.Help}
			key := m.Name + "|" + joinLabels(m.Labels)
			if series[key] {
				t.Errorf("%s: series %s declared twice", st.Name, key)
			}
			series[key] = true
		}
	}
}

func joinLabels(l []string) string {
	s := ""
	for _, x := range l {
		s += x + ","
	}
	return s
}

// TestStatTableAPIFields pins the analytics API's fields: the guide's,
// and memhive's extension total_malloced.
func TestStatTableAPIFields(t *testing.T) {
	var got []string
	for _, st := range StatTable {
		if st.In&InAPI != 0 {
			got = append(got, st.Name)
		}
	}
	// Beside the guide's: the memory a cache holds, and a cluster's
	// routing counters (issue 15).
	want := append(slices.Clone(guideFields), "total_malloced", "forwarded_requests", "forward_errors", "handed_over_items")
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("API fields\n got %v\nwant %v", got, want)
	}
}

// randomSnapshot fills every field of a snapshot with a random value.
func randomSnapshot(rng *rand.Rand) StatSnapshot {
	var s StatSnapshot
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				fill(v.Field(i))
			}
		case reflect.Uint64:
			v.SetUint(rng.Uint64() >> 1)
		case reflect.String:
			v.SetString(strconv.FormatUint(rng.Uint64(), 10))
		case reflect.Bool:
			v.SetBool(true) // every field listed
		}
	}
	fill(reflect.ValueOf(&s).Elem())
	return s
}

// TestStatTableScopes checks that each row reads only what its scope
// says: a cache's field nothing of the process, a process's field nothing
// of the cache, and a fixed field nothing at all.
func TestStatTableScopes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		a, b := randomSnapshot(rng), randomSnapshot(rng)
		sameCache := a // a's cache, b's process
		sameCache.Process = b.Process
		sameProcess := b // b's cache, a's process
		sameProcess.Process = a.Process
		for _, st := range StatTable {
			var same *StatSnapshot
			switch st.Scope {
			case PerCache:
				same = &sameCache
			case ServerWide:
				same = &sameProcess
			case Fixed:
				same = &b
			default:
				t.Fatalf("%s: scope %d", st.Name, st.Scope)
			}
			if x, y := st.Format(&a), st.Format(same); x != y {
				t.Errorf("%s (scope %d) reads beyond its scope: %s, then %s", st.Name, st.Scope, x, y)
			}
		}
	}
}

// TestAPIStatsFollowTheTable checks that APIStats has each field the
// table declares for the API, with its value, and no other.
func TestAPIStatsFollowTheTable(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewSource(2)))
	got := APIStats(&s)
	n := 0
	for _, st := range StatTable {
		v, ok := got[st.Name]
		if st.In&InAPI == 0 {
			if ok {
				t.Errorf("%s is not declared for the API but is in it", st.Name)
			}
			continue
		}
		n++
		if !ok || v != st.Value(&s) {
			t.Errorf("%s = %d (present %v), want %d", st.Name, v, ok, st.Value(&s))
		}
	}
	if len(got) != n {
		t.Errorf("APIStats has %d fields, the table declares %d", len(got), n)
	}
}

// TestStatSnapshotReadsTheEngine checks a snapshot against the engine it
// was read from.
func TestStatSnapshotReadsTheEngine(t *testing.T) {
	e, _ := newTestEngine(t, 8)
	e.CountBadSet([]byte("k"), 1)
	s := e.StatSnapshot(ConnStats{Curr: 3, BytesRead: 5})
	if s.CmdSet != 1 || s.LimitMaxbytes != uint64(e.LimitBytes()) || s.Conns.Curr != 3 || s.Conns.BytesRead != 5 ||
		s.Time != uint64(e.Clock().Unix()) || s.Crawling != e.Crawling() || s.Process != (ProcessStats{}) {
		t.Fatalf("snapshot %+v", s)
	}
}
