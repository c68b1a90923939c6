package analytics

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/memhive/memhive/control"
)

// fakeSource is the server's side of the analytics API, for tests.
type fakeSource struct {
	stats   map[uint32]map[string]uint64
	flushed []uint32
}

func (f *fakeSource) CacheIDs() []uint32 {
	var ids []uint32
	for id := range f.stats {
		ids = append(ids, id)
	}
	return ids
}

func (f *fakeSource) CacheStats(id uint32) (map[string]uint64, bool) {
	st, ok := f.stats[id]
	return st, ok
}

func (f *fakeSource) Flush(id uint32) bool {
	f.flushed = append(f.flushed, id)
	_, ok := f.stats[id]
	return ok
}

type apiFixture struct {
	api    *API
	store  control.Store
	source *fakeSource
	a, b   control.Cache
	full   string // Authorization header of a's credential with every capability
}

func newAPI(t *testing.T) *apiFixture {
	t.Helper()
	_, store := newAdmin(t)
	f := &apiFixture{store: store, source: &fakeSource{stats: map[uint32]map[string]uint64{}}}
	f.a, _ = store.CreateCache(control.Cache{Name: "a", LimitBytes: 8 << 20, Enabled: true})
	f.b, _ = store.CreateCache(control.Cache{Name: "b", LimitBytes: 8 << 20, Enabled: true})
	f.source.stats[f.a.ID] = map[string]uint64{"get_hits": 7, "curr_items": 3, "limit_maxbytes": 8 << 20}
	f.source.stats[f.b.ID] = map[string]uint64{"get_hits": 1}
	f.full = f.basic(t, f.a.ID, control.CapAll)
	f.api = NewAPI(APIConfig{Store: store, Source: f.source, Server: "127.0.0.1:11211", HistoryWindow: time.Hour})
	return f
}

// basic creates a credential of cache id with caps and returns its
// Authorization header.
func (f *apiFixture) basic(t *testing.T, id uint32, caps control.Capabilities) string {
	cred, pass, err := f.store.CreateCredential(id, caps, false)
	if err != nil {
		t.Fatal(err)
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred.Username+":"+pass))
}

func (f *apiFixture) do(method, path, auth, body string) (int, string) {
	return doWith(f.api.Handle, method, path, auth, body)
}

func TestAPIAuthentication(t *testing.T) {
	f := newAPI(t)
	noAPI := f.basic(t, f.a.ID, control.CapWrite|control.CapFlush)
	wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte("NOBODY:x"))
	forbidden := `"You are not authorized to perform this action."` + "\n"
	for _, auth := range []string{"", "Basic !!!", wrong, noAPI, "Bearer " + token} {
		for _, path := range []string{"/api/v1/login", fmt.Sprintf("/api/v1/%d/stats", f.a.ID)} {
			if status, body := f.do("GET", path, auth, ""); status != 403 || body != forbidden {
				t.Fatalf("%q %s: %d %q", auth, path, status, body)
			}
		}
	}
	// A credential of cache a asking about cache b, or a cache that does
	// not exist, is forbidden alike.
	for _, id := range []uint32{f.b.ID, 99} {
		if status, _ := f.do("GET", fmt.Sprintf("/api/v1/%d/stats", id), f.full, ""); status != 403 {
			t.Fatalf("cache %d with a's credential: %d", id, status)
		}
	}
	if status, body := f.do("GET", "/api/v1/login", f.full, ""); status != 200 || body != fmt.Sprintf(`{"cache_id":%d}`+"\n", f.a.ID) {
		t.Fatalf("login: %d %s", status, body)
	}
	if status, _ := f.do("GET", "/api/v1/nope/stats", f.full, ""); status != 404 {
		t.Fatalf("a non-numeric id: %d", status)
	}
}

func TestAPIStatsHistoryFlush(t *testing.T) {
	f := newAPI(t)
	status, body := f.do("GET", fmt.Sprintf("/api/v1/%d/stats", f.a.ID), f.full, "")
	var stats map[string]map[string]uint64
	if status != 200 || json.Unmarshal([]byte(body), &stats) != nil || stats["127.0.0.1:11211"]["get_hits"] != 7 || len(stats) != 1 {
		t.Fatalf("stats: %d %s", status, body)
	}

	s := StartSampler(f.store, f.source, "127.0.0.1:11211", time.Hour, time.Hour, nil)
	s.Stop() // it samples once at start
	f.source.stats[f.a.ID]["get_hits"] = 9
	s.SampleOnce(time.Now().Add(time.Second))
	s.SampleOnce(time.Now().Add(-2 * time.Hour)) // past the retention: pruned next time
	s.SampleOnce(time.Now().Add(2 * time.Second))
	status, body = f.do("GET", fmt.Sprintf("/api/v1/%d/history", f.a.ID), f.full, "")
	var hist []struct {
		MemcachierID uint32            `json:"memcachier_id"`
		Server       string            `json:"server"`
		Stats        map[string]uint64 `json:"stats"`
		Timestamp    int64             `json:"timestamp"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist) != 3 {
		t.Fatalf("history: %d %s", status, body)
	}
	if hist[0].MemcachierID != f.a.ID || hist[0].Server != "127.0.0.1:11211" || hist[0].Stats["get_hits"] != 7 ||
		hist[1].Stats["get_hits"] != 9 || hist[1].Timestamp <= hist[0].Timestamp {
		t.Fatalf("history entries: %+v", hist)
	}

	noFlush := f.basic(t, f.a.ID, control.CapAPI)
	if status, _ := f.do("POST", fmt.Sprintf("/api/v1/%d/flush", f.a.ID), noFlush, ""); status != 403 || len(f.source.flushed) != 0 {
		t.Fatalf("flush without the capability: %d, flushed %v", status, f.source.flushed)
	}
	if status, _ := f.do("POST", fmt.Sprintf("/api/v1/%d/flush", f.a.ID), f.full, ""); status != 200 || len(f.source.flushed) != 1 {
		t.Fatalf("flush: %d, flushed %v", status, f.source.flushed)
	}
	if status, body := f.do("POST", fmt.Sprintf("/api/v1/%d/settings", f.a.ID), f.full, `{"enabled":false}`); status != 200 || !strings.Contains(body, `"enabled":false`) {
		t.Fatalf("settings: %d %s", status, body)
	}
	if status, _ := f.do("GET", fmt.Sprintf("/api/v1/%d", f.a.ID), f.full, ""); status != 200 {
		t.Fatalf("a disabled cache's info: %d", status)
	}
}

func TestAPICredentialRotation(t *testing.T) {
	f := newAPI(t)
	path := fmt.Sprintf("/api/v1/%d/credentials", f.a.ID)
	status, body := f.do("POST", path, f.full, `{"flush_capability":false}`)
	var created apiCredential
	if status != 201 || json.Unmarshal([]byte(body), &created) != nil || created.Password == "" || created.Flush || !created.Write || created.Primary {
		t.Fatalf("create: %d %s", status, body)
	}
	status, body = f.do("GET", path, f.full, "")
	if status != 200 || !strings.Contains(body, created.Username) || strings.Contains(body, "sasl_password") {
		t.Fatalf("list: %d %s", status, body)
	}
	one := fmt.Sprintf("%s/%d", path, created.ID)
	if status, body := f.do("PATCH", one, f.full, `{"write_capability":false}`); status != 200 || !strings.Contains(body, `"write_capability":false`) {
		t.Fatalf("update: %d %s", status, body)
	}
	if status, body := f.do("POST", fmt.Sprintf("%s/primary/%d", path, created.ID), f.full, ""); status != 200 || !strings.Contains(body, `"primary":true`) {
		t.Fatalf("promote: %d %s", status, body)
	}
	// The old primary (the first credential of the cache) can now go.
	creds, _ := f.store.Credentials(f.a.ID)
	old := creds[0]
	if old.Primary {
		t.Fatal("promotion left the old primary")
	}
	if status, _ := f.do("DELETE", fmt.Sprintf("%s/%d", path, old.ID), f.full, ""); status != 200 {
		t.Fatalf("delete the old primary: %d", status)
	}
	if _, err := f.store.Credential(old.ID); err == nil {
		t.Fatal("the old primary remains")
	}
	// The deleted credential is refused; the new primary works, and
	// cannot reach another cache's credentials through this cache.
	if status, _ := f.do("GET", path, f.full, ""); status != 403 {
		t.Fatalf("the deleted credential: %d", status)
	}
	newPrimary := "Basic " + base64.StdEncoding.EncodeToString([]byte(created.Username+":"+created.Password))
	other, _, _ := f.store.CreateCredential(f.b.ID, control.CapAll, false)
	if status, _ := f.do("DELETE", fmt.Sprintf("%s/%d", path, other.ID), newPrimary, ""); status != 404 {
		t.Fatalf("deleting another cache's credential: %d", status)
	}
}

func TestMetricsParse(t *testing.T) {
	f := newAPI(t)
	m := &Metrics{Store: f.store, Source: f.source, Version: "1.6.18-memhive", Token: token}
	if status, _ := doWith(m.Handle, "GET", "/metrics", "", ""); status != 401 {
		t.Fatalf("metrics without the token: %d", status)
	}
	status, body := doWith(m.Handle, "GET", "/metrics", "Bearer "+token, "")
	if status != 200 {
		t.Fatalf("metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the Prometheus parser rejects /metrics: %v\n%s", err, body)
	}
	for _, name := range []string{"memcached_up", "memcached_commands_total", "memcached_current_bytes", "memcached_limit_bytes",
		"memcached_items_evicted_total", "memcached_current_connections", "memcached_current_items"} {
		if families[name] == nil {
			t.Fatalf("no %s in /metrics", name)
		}
	}
	if g := families["go_goroutines"]; g == nil || len(g.GetMetric()) != 1 || g.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Fatalf("go_goroutines is not one gauge of at least 1: %v", g)
	}
	found := false
	for _, mt := range families["memcached_commands_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range mt.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["cache"] == "a" && labels["command"] == "get" && labels["status"] == "hit" {
			found = mt.GetCounter().GetValue() == 7
		}
	}
	if !found {
		t.Fatal("memcached_commands_total{cache=a,command=get,status=hit} is not 7")
	}
	m.Public = true
	if status, _ := doWith(m.Handle, "GET", "/metrics", "", ""); status != 200 {
		t.Fatalf("public metrics: %d", status)
	}
}

func TestDashboardAssets(t *testing.T) {
	var d Dashboard
	if status, body := doWith(d.Handle, "GET", "/", "", ""); status != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("GET /: %d %.80s", status, body)
	}
	if status, _ := doWith(d.Handle, "GET", "/assets/../adminapi.go", "", ""); status == 200 {
		t.Fatal("a path outside the assets was served")
	}
	if status, _ := doWith(d.Handle, "GET", "/assets/nope.js", "", ""); status != 404 {
		t.Fatalf("a missing asset: %d", status)
	}
}
