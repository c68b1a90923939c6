package analytics

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// stuckSource is a server whose statistics never come (until release is
// closed): a node that does not answer in time.
type stuckSource struct {
	fakeSource
	release chan struct{}
}

func (s *stuckSource) CacheStats(id uint32) (map[string]uint64, bool) {
	<-s.release
	return nil, false
}

// clusterNodes stands for the several nodes of a cluster: some answer,
// the failed ones do not.
type clusterNodes struct {
	answered map[string]map[string]uint64
	failed   []string
}

func (c clusterNodes) Stats(uint32) (map[string]map[string]uint64, []string) {
	return c.answered, c.failed
}

func (c clusterNodes) Flush(uint32) []string { return c.failed }

func (c clusterNodes) History(uint32, time.Time) ([]control.Sample, []string) { return nil, c.failed }

// failingStore is a store whose method named fail returns err: the
// guide's 404 and 500 rows, which a healthy store never gives.
type failingStore struct {
	control.Store
	fail string
	err  error
}

func (s failingStore) Cache(id uint32) (control.Cache, error) {
	if s.fail == "Cache" {
		return control.Cache{}, s.err
	}
	return s.Store.Cache(id)
}

func (s failingStore) History(id uint32, since time.Time) ([]control.Sample, error) {
	if s.fail == "History" {
		return nil, s.err
	}
	return s.Store.History(id, since)
}

func (s failingStore) Credentials(id uint32) ([]control.Credential, error) {
	if s.fail == "Credentials" {
		return nil, s.err
	}
	return s.Store.Credentials(id)
}

func (s failingStore) CreateCredential(id uint32, n control.NewCredential) (control.Credential, string, error) {
	if s.fail == "CreateCredential" {
		return control.Credential{}, "", s.err
	}
	return s.Store.CreateCredential(id, n)
}

func (s failingStore) UpdateCredential(id uint32, u control.CredentialUpdate) (control.Credential, error) {
	if s.fail == "UpdateCredential" {
		return control.Credential{}, s.err
	}
	return s.Store.UpdateCredential(id, u)
}

func (s failingStore) Promote(id uint32) (control.Credential, error) {
	if s.fail == "Promote" {
		return control.Credential{}, s.err
	}
	return s.Store.Promote(id)
}

func (s failingStore) DeleteCredential(id uint32) error {
	if s.fail == "DeleteCredential" {
		return s.err
	}
	return s.Store.DeleteCredential(id)
}

const node = "127.0.0.1:11211"

type apiFixture struct {
	api    *API
	store  control.Store
	source *fakeSource
	a, b   control.Cache
	full   string // Authorization header of a's credential with every capability
	// creds are the credentials newAPI made, by id: 1 a's primary (every
	// capability), 2 b's primary, 3 a's write and api, 4 a's write and
	// flush (no api).
	creds map[uint32]control.Credential
	auth  map[string]string // Authorization headers: full, b, sec, noapi, wrong
	t0    time.Time         // when a's history sample was taken
}

func newAPI(t *testing.T) *apiFixture {
	t.Helper()
	_, store := newAdmin(t)
	f := &apiFixture{store: store, source: &fakeSource{stats: map[uint32]map[string]uint64{}},
		creds: map[uint32]control.Credential{}, auth: map[string]string{}}
	f.a, _ = store.CreateCache(control.Cache{Name: "a", LimitBytes: 8 << 20, Enabled: true})
	f.b, _ = store.CreateCache(control.Cache{Name: "b", LimitBytes: 8 << 20, Enabled: true})
	f.source.stats[f.a.ID] = map[string]uint64{"get_hits": 7, "curr_items": 3, "limit_maxbytes": 8 << 20}
	f.source.stats[f.b.ID] = map[string]uint64{"get_hits": 1}
	for _, c := range []struct {
		name  string
		cache uint32
		caps  control.Capabilities
	}{{"full", f.a.ID, control.CapAll}, {"b", f.b.ID, control.CapAll},
		{"sec", f.a.ID, control.CapWrite | control.CapAPI}, {"noapi", f.a.ID, control.CapWrite | control.CapFlush}} {
		cred, pass, err := store.CreateCredential(c.cache, control.NewCredential{Caps: c.caps})
		if err != nil {
			t.Fatal(err)
		}
		f.creds[cred.ID] = cred
		f.auth[c.name] = basicAuth(cred.Username, pass)
	}
	if f.a.ID != 1 || f.b.ID != 2 || len(f.creds) != 4 || f.creds[4].Caps != control.CapWrite|control.CapFlush {
		t.Fatalf("the fixture's ids are not the ones the tests spell out: caches %d %d, credentials %v", f.a.ID, f.b.ID, f.creds)
	}
	f.full = f.auth["full"]
	f.auth["wrong"] = basicAuth(f.creds[1].Username, "not-the-password")
	f.t0 = time.Now().Add(-time.Minute)
	if err := store.AppendHistory([]control.Sample{
		{CacheID: f.a.ID, Server: node, Time: f.t0, Stats: map[string]uint64{"get_hits": 5}},
		{CacheID: f.b.ID, Server: node, Time: f.t0, Stats: map[string]uint64{"get_hits": 1}},
	}); err != nil {
		t.Fatal(err)
	}
	f.rebuild(store, nil)
	return f
}

// rebuild makes the API anew over store and nodes (nil: this node alone).
func (f *apiFixture) rebuild(store control.Store, nodes Nodes) {
	f.api = NewAPI(APIConfig{Store: store, Source: f.source, Server: node, Nodes: nodes, HistoryWindow: time.Hour})
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// basic creates a credential of cache id with caps and returns its
// Authorization header.
func (f *apiFixture) basic(t *testing.T, id uint32, caps control.Capabilities) string {
	cred, pass, err := f.store.CreateCredential(id, control.NewCredential{Caps: caps})
	if err != nil {
		t.Fatal(err)
	}
	return basicAuth(cred.Username, pass)
}

func (f *apiFixture) do(method, path, auth, body string) (int, string) {
	return doWith(f.api.Handle, method, path, auth, body)
}

// expand replaces {u1}..{u4} with the usernames of credentials 1 to 4
// and {t0} with the history sample's time in unix milliseconds.
func (f *apiFixture) expand(s string) string {
	for id, c := range f.creds {
		s = strings.ReplaceAll(s, fmt.Sprintf("{u%d}", id), c.Username)
	}
	return strings.ReplaceAll(s, "{t0}", strconv.FormatInt(f.t0.UnixMilli(), 10))
}

// guideCred is a credential as the guide's examples show one, field for
// field; password "" leaves sasl_password out, as list and promote do.
func guideCred(cache, id int, user string, flush, write, api, primary bool, password string) string {
	pw := ""
	if password != "" {
		pw = fmt.Sprintf(`"sasl_password":%q,`, password)
	}
	return fmt.Sprintf(`{"cache_id":%d,"flush_capability":%t,"id":%d,"sasl_username":%q,%s"uuid":null,"write_capability":%t,"api_capability":%t,"primary":%t}`,
		cache, flush, id, user, pw, write, api, primary)
}

// TestAPIGuideTables provokes every row of every table in MemCachier's
// analytics API guide (login, stats, history, flush, list, create,
// update, promote and delete credentials) and checks the exact status and
// body, plus the rows memhive adds where the guide is silent.
func TestAPIGuideTables(t *testing.T) {
	const (
		forbidden = `"You are not authorized to perform this action."`
		noCache   = `"No cache found."`
		serverErr = `"Server error"`
		nodeDown  = `"Server error: 127.0.0.1:11211"`
		empty     = `""`
	)
	disk := errors.New("disk on fire")
	failing := func(method string, err error) func(*apiFixture) {
		return func(f *apiFixture) { f.rebuild(failingStore{f.store, method, err}, nil) }
	}
	engineGone := func(f *apiFixture) { delete(f.source.stats, f.a.ID) }
	cluster := func(f *apiFixture) {
		// Two of three nodes fail, named in any order; the answer sorts them.
		f.rebuild(f.store, clusterNodes{
			answered: map[string]map[string]uint64{"10.0.0.1:11211": {"get_hits": 1}},
			failed:   []string{"10.0.0.3:11211", "10.0.0.2:11211"},
		})
	}
	u1, u3 := "{u1}", "{u3}"
	rows := []struct {
		section, name      string
		setup              func(*apiFixture)
		method, path, auth string
		body               string
		status             int
		want               string                                        // exact, after expand, without the trailing newline
		check              func(t *testing.T, f *apiFixture, got string) // side effects
	}{
		// Login: 200, 403, 404, 500.
		{section: "login", name: "ok", method: "GET", path: "/api/v1/login", auth: "full", status: 200, want: `{"cache_id":1}`},
		{section: "login", name: "the HTTP Request line's path", method: "GET", path: "/api/login", auth: "full", status: 200, want: `{"cache_id":1}`},
		{section: "login", name: "no credential", method: "GET", path: "/api/v1/login", status: 403, want: forbidden},
		{section: "login", name: "wrong password", method: "GET", path: "/api/v1/login", auth: "wrong", status: 403, want: forbidden},
		{section: "login", name: "no api capability", method: "GET", path: "/api/v1/login", auth: "noapi", status: 403, want: forbidden},
		{section: "login", name: "cache gone", setup: failing("Cache", control.ErrNotFound), method: "GET", path: "/api/v1/login", auth: "full", status: 404, want: noCache},
		{section: "login", name: "store fails", setup: failing("Cache", disk), method: "GET", path: "/api/v1/login", auth: "full", status: 500, want: serverErr},

		// Stats: 200, 403, 500 "Server error: host:port,...".
		{section: "stats", name: "ok", method: "GET", path: "/api/v1/1/stats", auth: "full", status: 200,
			want: `{"127.0.0.1:11211":{"curr_items":3,"get_hits":7,"limit_maxbytes":8388608}}`},
		{section: "stats", name: "no credential", method: "GET", path: "/api/v1/1/stats", status: 403, want: forbidden},
		{section: "stats", name: "another cache", method: "GET", path: "/api/v1/2/stats", auth: "full", status: 403, want: forbidden},
		{section: "stats", name: "no such cache", method: "GET", path: "/api/v1/99/stats", auth: "full", status: 403, want: forbidden},
		{section: "stats", name: "not a number", method: "GET", path: "/api/v1/nope/stats", auth: "full", status: 403, want: forbidden},
		{section: "stats", name: "engine missing", setup: engineGone, method: "GET", path: "/api/v1/1/stats", auth: "full", status: 500, want: nodeDown},
		{section: "stats", name: "node does not answer in time", setup: func(f *apiFixture) {
			stuck := &stuckSource{release: make(chan struct{})}
			t.Cleanup(func() { close(stuck.release) })
			f.rebuild(f.store, LocalNode{Source: stuck, Name: node, Timeout: 20 * time.Millisecond})
		}, method: "GET", path: "/api/v1/1/stats", auth: "full", status: 500, want: nodeDown},
		{section: "stats", name: "two nodes of three fail", setup: cluster, method: "GET", path: "/api/v1/1/stats", auth: "full", status: 500,
			want: `"Server error: 10.0.0.2:11211,10.0.0.3:11211"`},

		// History: 200, 403, 500.
		{section: "history", name: "ok", method: "GET", path: "/api/v1/1/history", auth: "full", status: 200,
			want: `[{"memcachier_id":"1","server":"127.0.0.1:11211","stats":{"get_hits":5},"timestamp":"{t0}"}]`},
		{section: "history", name: "another cache", method: "GET", path: "/api/v1/2/history", auth: "full", status: 403, want: forbidden},
		// The node whose store fails is named, as stats names a node.
		{section: "history", name: "store fails", setup: failing("History", disk), method: "GET", path: "/api/v1/1/history", auth: "full", status: 500, want: nodeDown},
		{section: "history", name: "two nodes of three fail", setup: cluster, method: "GET", path: "/api/v1/1/history", auth: "full", status: 500,
			want: `"Server error: 10.0.0.2:11211,10.0.0.3:11211"`},

		// Flush: 200 "", 403, 500 "Server error: host:port,...".
		{section: "flush", name: "ok", method: "POST", path: "/api/v1/1/flush", auth: "full", status: 200, want: empty,
			check: func(t *testing.T, f *apiFixture, _ string) {
				if len(f.source.flushed) != 1 || f.source.flushed[0] != 1 {
					t.Errorf("flushed %v, want [1]", f.source.flushed)
				}
			}},
		{section: "flush", name: "no flush capability", method: "POST", path: "/api/v1/1/flush", auth: "sec", status: 403, want: forbidden,
			check: func(t *testing.T, f *apiFixture, _ string) {
				if len(f.source.flushed) != 0 {
					t.Errorf("flushed %v without the capability", f.source.flushed)
				}
			}},
		{section: "flush", name: "another cache", method: "POST", path: "/api/v1/2/flush", auth: "full", status: 403, want: forbidden},
		{section: "flush", name: "engine missing", setup: engineGone, method: "POST", path: "/api/v1/1/flush", auth: "full", status: 500, want: nodeDown},
		{section: "flush", name: "two nodes of three fail", setup: cluster, method: "POST", path: "/api/v1/1/flush", auth: "full", status: 500,
			want: `"Server error: 10.0.0.2:11211,10.0.0.3:11211"`},

		// List credentials: 200, 403, 500.
		{section: "list credentials", name: "ok", method: "GET", path: "/api/v1/1/credentials", auth: "full", status: 200,
			want: "[" + guideCred(1, 1, u1, true, true, true, true, "") + "," + guideCred(1, 3, u3, false, true, true, false, "") + "," +
				guideCred(1, 4, "{u4}", true, true, false, false, "") + "]"},
		{section: "list credentials", name: "another cache", method: "GET", path: "/api/v1/2/credentials", auth: "full", status: 403, want: forbidden},
		{section: "list credentials", name: "store fails", setup: failing("Credentials", disk), method: "GET", path: "/api/v1/1/credentials", auth: "full", status: 500, want: serverErr},

		// Create credentials: 200 (not 201), 403, 500.
		{section: "create credentials", name: "ok, no body", method: "POST", path: "/api/v1/1/credentials", auth: "full", status: 200,
			want: guideCred(1, 5, "{u5}", true, true, true, false, "{p5}")},
		{section: "create credentials", name: "capabilities as the guide's strings", method: "POST", path: "/api/v1/1/credentials", auth: "full",
			body: `{"flush_capability":"false"}`, status: 200, want: guideCred(1, 5, "{u5}", false, true, true, false, "{p5}")},
		{section: "create credentials", name: "capabilities as query parameters", method: "POST", path: "/api/v1/1/credentials?write_capability=false", auth: "full",
			status: 200, want: guideCred(1, 5, "{u5}", true, false, true, false, "{p5}")},
		{section: "create credentials", name: "another cache", method: "POST", path: "/api/v1/2/credentials", auth: "full", status: 403, want: forbidden},
		{section: "create credentials", name: "store fails", setup: failing("CreateCredential", disk), method: "POST", path: "/api/v1/1/credentials", auth: "full", status: 500, want: serverErr},

		// Update credentials: 200 with the capabilities, 403, 500.
		{section: "update credentials", name: "PATCH by username, the guide's example body", method: "PATCH", path: "/api/v1/1/credentials/{u3}", auth: "full",
			body: `{"flush_capability":"false"}`, status: 200, want: `{"flush_capability":false,"write_capability":true,"api_capability":true}`},
		{section: "update credentials", name: "POST by id, JSON booleans", method: "POST", path: "/api/v1/1/credentials/3", auth: "full",
			body: `{"flush_capability":true,"write_capability":false}`, status: 200, want: `{"flush_capability":true,"write_capability":false,"api_capability":true}`,
			check: func(t *testing.T, f *apiFixture, _ string) {
				if c, _ := f.store.Credential(3); c.Caps != control.CapFlush|control.CapAPI {
					t.Errorf("stored capabilities %v", c.Caps)
				}
			}},
		{section: "update credentials", name: "query parameters", method: "POST", path: "/api/v1/1/credentials/3?api_capability=false", auth: "full",
			status: 200, want: `{"flush_capability":false,"write_capability":true,"api_capability":false}`},
		{section: "update credentials", name: "form body, as curl -d sends it", method: "POST", path: "/api/v1/1/credentials/3", auth: "full",
			body: "flush_capability=true&write_capability=false", status: 200, want: `{"flush_capability":true,"write_capability":false,"api_capability":true}`},
		{section: "update credentials", name: "another cache's credential", method: "PATCH", path: "/api/v1/1/credentials/2", auth: "full",
			body: `{"flush_capability":false}`, status: 403, want: forbidden},
		{section: "update credentials", name: "no such credential", method: "PATCH", path: "/api/v1/1/credentials/77", auth: "full",
			body: `{"flush_capability":false}`, status: 403, want: forbidden},
		{section: "update credentials", name: "store fails", setup: failing("UpdateCredential", disk), method: "PATCH", path: "/api/v1/1/credentials/3", auth: "full",
			body: `{"flush_capability":false}`, status: 500, want: serverErr},
		{section: "update credentials", name: "not a boolean (memhive: no row in the guide)", method: "PATCH", path: "/api/v1/1/credentials/3", auth: "full",
			body: `{"flush_capability":"maybe"}`, status: 400, want: `"Bad request: \"maybe\" is not true or false"`},

		// Promote credentials: 200 with the promoted credential, 403, 500.
		{section: "promote credentials", name: "ok", method: "POST", path: "/api/v1/1/credentials/primary/3", auth: "full", status: 200,
			want: guideCred(1, 3, u3, false, true, true, true, ""),
			check: func(t *testing.T, f *apiFixture, _ string) {
				if c, _ := f.store.Credential(1); c.Primary {
					t.Error("the old primary stayed primary")
				}
			}},
		{section: "promote credentials", name: "by username", method: "POST", path: "/api/v1/1/credentials/primary/{u3}", auth: "full", status: 200,
			want: guideCred(1, 3, u3, false, true, true, true, "")},
		{section: "promote credentials", name: "another cache's credential", method: "POST", path: "/api/v1/1/credentials/primary/2", auth: "full", status: 403, want: forbidden},
		{section: "promote credentials", name: "store fails", setup: failing("Promote", disk), method: "POST", path: "/api/v1/1/credentials/primary/3", auth: "full", status: 500, want: serverErr},

		// Delete credentials: 200 "", 403, 500.
		{section: "delete credentials", name: "ok, the guide's path", method: "DELETE", path: "/api/v1/1/credentials/primary/3", auth: "full", status: 200, want: empty,
			check: func(t *testing.T, f *apiFixture, _ string) {
				if _, err := f.store.Credential(3); !errors.Is(err, control.ErrNotFound) {
					t.Errorf("credential 3 remains: %v", err)
				}
			}},
		{section: "delete credentials", name: "ok, by username without /primary", method: "DELETE", path: "/api/v1/1/credentials/{u3}", auth: "full", status: 200, want: empty},
		{section: "delete credentials", name: "the primary while others remain", method: "DELETE", path: "/api/v1/1/credentials/primary/1", auth: "full", status: 403, want: forbidden,
			check: func(t *testing.T, f *apiFixture, _ string) {
				if _, err := f.store.Credential(1); err != nil {
					t.Errorf("the primary is gone: %v", err)
				}
			}},
		{section: "delete credentials", name: "another cache's credential", method: "DELETE", path: "/api/v1/1/credentials/2", auth: "full", status: 403, want: forbidden},
		{section: "delete credentials", name: "store fails", setup: failing("DeleteCredential", disk), method: "DELETE", path: "/api/v1/1/credentials/3", auth: "full", status: 500, want: serverErr},

		// memhive's paths outside the guide.
		{section: "memhive", name: "unknown action", method: "GET", path: "/api/v1/1/nothing", auth: "full", status: 404, want: `"Not found."`},
	}
	for _, r := range rows {
		t.Run(r.section+"/"+r.name, func(t *testing.T) {
			f := newAPI(t)
			if r.setup != nil {
				r.setup(f)
			}
			status, body := f.do(r.method, f.expand(r.path), f.auth[r.auth], r.body)
			want := f.expand(r.want)
			if strings.Contains(want, "{p5}") {
				// A created credential: its name and password are new; the
				// password must be the one the store now checks.
				c, err := f.store.Credential(5)
				if err != nil {
					t.Fatalf("%d %s: no credential 5: %v", status, body, err)
				}
				var got struct {
					Password string `json:"sasl_password"`
				}
				if json.Unmarshal([]byte(body), &got) != nil || !control.Verify(c, []byte(got.Password)) {
					t.Fatalf("the created credential's password is not its own: %s", body)
				}
				want = strings.NewReplacer("{u5}", c.Username, "{p5}", got.Password).Replace(want)
			}
			if status != r.status || body != want+"\n" {
				t.Fatalf("%s %s\n got %d %s\nwant %d %s", r.method, r.path, status, strings.TrimSuffix(body, "\n"), r.status, want)
			}
			if r.check != nil {
				r.check(t, f, body)
			}
		})
	}
}

func TestAPIAuthentication(t *testing.T) {
	f := newAPI(t)
	noAPI := f.basic(t, f.a.ID, control.CapWrite|control.CapFlush)
	wrong := basicAuth("NOBODY", "x")
	forbidden := `"You are not authorized to perform this action."` + "\n"
	for _, auth := range []string{"", "Basic !!!", wrong, noAPI, "Bearer " + token} {
		for _, path := range []string{"/api/v1/login", "/api/login", fmt.Sprintf("/api/v1/%d/stats", f.a.ID)} {
			if status, body := f.do("GET", path, auth, ""); status != 403 || body != forbidden {
				t.Fatalf("%q %s: %d %q", auth, path, status, body)
			}
		}
	}
	if status, _ := f.do("GET", "/api/v2/caches/1/info", f.full, ""); status != 0 {
		t.Fatalf("the API took a path outside /api/v1: %d", status)
	}
}

func TestLocalNodeStats(t *testing.T) {
	src := &fakeSource{stats: map[uint32]map[string]uint64{1: {"get_hits": 2}}}
	n := LocalNode{Source: src, Name: node}
	if byNode, failed := n.Stats(1); len(failed) != 0 || byNode[node]["get_hits"] != 2 {
		t.Fatalf("a served cache: %v, failed %v", byNode, failed)
	}
	if byNode, failed := n.Stats(9); byNode != nil || len(failed) != 1 || failed[0] != node {
		t.Fatalf("a cache not served: %v, failed %v", byNode, failed)
	}
	stuck := &stuckSource{release: make(chan struct{})}
	defer close(stuck.release)
	start := time.Now()
	if _, failed := (LocalNode{Source: stuck, Name: node, Timeout: 30 * time.Millisecond}).Stats(1); len(failed) != 1 {
		t.Fatalf("a stuck node did not fail: %v", failed)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a stuck node held the request %v", d)
	}
	if failed := n.Flush(9); len(failed) != 1 || failed[0] != node {
		t.Fatalf("flushing a cache not served: %v", failed)
	}
}

func TestAPIStatsHistoryFlush(t *testing.T) {
	f := newAPI(t)
	s := StartSampler(f.store, f.source, node, time.Hour, time.Hour, nil)
	s.Stop() // it samples once at start
	f.source.stats[f.a.ID]["get_hits"] = 9
	s.SampleOnce(time.Now().Add(time.Second))
	s.SampleOnce(time.Now().Add(-2 * time.Hour)) // past the retention: pruned next time
	s.SampleOnce(time.Now().Add(2 * time.Second))
	status, body := f.do("GET", fmt.Sprintf("/api/v1/%d/history", f.a.ID), f.full, "")
	var hist []struct {
		MemcachierID string            `json:"memcachier_id"`
		Server       string            `json:"server"`
		Stats        map[string]uint64 `json:"stats"`
		Timestamp    string            `json:"timestamp"`
	}
	// The fixture's sample, then the sampler's three.
	if status != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist) != 4 {
		t.Fatalf("history: %d %s", status, body)
	}
	ms := func(i int) int64 {
		v, err := strconv.ParseInt(hist[i].Timestamp, 10, 64)
		if err != nil {
			t.Fatalf("timestamp %q: %v", hist[i].Timestamp, err)
		}
		return v
	}
	if hist[1].MemcachierID != "1" || hist[1].Server != node || hist[1].Stats["get_hits"] != 7 ||
		hist[2].Stats["get_hits"] != 9 || ms(2) <= ms(1) || ms(1) <= ms(0) {
		t.Fatalf("history entries: %+v", hist)
	}

	if status, body := f.do("POST", fmt.Sprintf("/api/v1/%d/settings", f.a.ID), f.full, `{"enabled":false}`); status != 200 || !strings.Contains(body, `"enabled":false`) {
		t.Fatalf("settings: %d %s", status, body)
	}
	if status, _ := f.do("GET", fmt.Sprintf("/api/v1/%d", f.a.ID), f.full, ""); status != 200 {
		t.Fatalf("a disabled cache's info: %d", status)
	}
	if status, body := f.do("POST", fmt.Sprintf("/api/v1/%d/settings", f.a.ID), f.full, `{"enabled":`); status != 400 || !strings.HasPrefix(body, `"Bad request: `) {
		t.Fatalf("settings with a broken body: %d %s", status, body)
	}
}

func TestAPICredentialRotation(t *testing.T) {
	f := newAPI(t)
	path := fmt.Sprintf("/api/v1/%d/credentials", f.a.ID)
	status, body := f.do("POST", path, f.full, `{"flush_capability":false}`)
	var created apiCredential
	if status != 200 || json.Unmarshal([]byte(body), &created) != nil || created.Password == "" || created.Flush || !created.Write || created.Primary {
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
	newPrimary := basicAuth(created.Username, created.Password)
	other, _, _ := f.store.CreateCredential(f.b.ID, control.NewCredential{Caps: control.CapAll})
	if status, _ := f.do("DELETE", fmt.Sprintf("%s/%d", path, other.ID), newPrimary, ""); status != 403 {
		t.Fatalf("deleting another cache's credential: %d", status)
	}
	if _, err := f.store.Credential(other.ID); err != nil {
		t.Fatalf("another cache's credential was deleted: %v", err)
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

// TestAPICertificateBinding covers memhive's extension of the credential
// endpoints: cert_sha256 binds a TLS client certificate's fingerprint at
// creation or update (JSON, query or form, as the capabilities come),
// empty clears, absent leaves; the credentials list and the answers show
// the binding, a CN the operator bound included; a fingerprint bound
// elsewhere or malformed is refused and the request changes nothing, a
// creation leaving no credential behind. A request naming cert_cn in any
// form, even empty or null, is refused (403) and changes nothing: CN
// bindings are the operator's, and a tenant's fingerprint unbind leaves
// them.
func TestAPICertificateBinding(t *testing.T) {
	const (
		fpA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
		fpB = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	)
	// openssl's form: "sha256 Fingerprint=00:11:...", upper case.
	var pairs []string
	for i := 0; i < len(fpA); i += 2 {
		pairs = append(pairs, strings.ToUpper(fpA[i:i+2]))
	}
	opensslA := "sha256 Fingerprint=" + strings.Join(pairs, ":")

	bind := func(id uint32, b control.CertBinding) func(*apiFixture) {
		return func(f *apiFixture) {
			if _, err := f.store.UpdateCredential(id, control.CredentialUpdate{CertSHA256: &b.SHA256, CertCN: &b.CN}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// bound checks credential id's binding in the store.
	bound := func(id uint32, want control.CertBinding) func(*testing.T, *apiFixture) {
		return func(t *testing.T, f *apiFixture) {
			c, err := f.store.Credential(id)
			if err != nil || c.Cert != want {
				t.Errorf("credential %d: binding %+v, %v; want %+v", id, c.Cert, err, want)
			}
		}
	}
	// unchanged checks that the fixture's four credentials are all there
	// are, with their capabilities, and credential 3 has binding b3.
	unchanged := func(b3 control.CertBinding) func(*testing.T, *apiFixture) {
		return func(t *testing.T, f *apiFixture) {
			all, err := f.store.Credentials(0)
			if err != nil || len(all) != 4 {
				t.Fatalf("credentials after a refused request: %+v, %v", all, err)
			}
			for _, c := range all {
				if c.Caps != f.creds[c.ID].Caps {
					t.Errorf("credential %d's capabilities changed: %v", c.ID, c.Caps)
				}
			}
			bound(3, b3)(t, f)
		}
	}
	// created checks that the new credential 5 has binding want.
	created := func(want control.CertBinding) func(*testing.T, *apiFixture) {
		return func(t *testing.T, f *apiFixture) { bound(5, want)(t, f) }
	}
	// gone checks that no credential 5 was left behind.
	gone := func(t *testing.T, f *apiFixture) {
		if c, err := f.store.Credential(5); !errors.Is(err, control.ErrNotFound) {
			t.Errorf("a refused creation left credential %+v (%v)", c, err)
		}
		unchanged(control.CertBinding{})(t, f)
	}
	caps3 := `"flush_capability":false,"write_capability":true,"api_capability":true`
	const cnRefused = `"Forbidden: a certificate CN binding is set by the server's operator (admin API)."`
	// operator is credential 3 bound as the operator binds it, through the
	// store (the admin API's and the CLI's way): a fingerprint and a CN.
	operator := control.CertBinding{SHA256: fpB, CN: "app-3"}
	rows := []struct {
		name         string
		setup        func(*apiFixture)
		method, path string
		body         string
		status       int
		want         string // exact after expand; "" checks only the status
		check        func(*testing.T, *apiFixture)
	}{
		// Creation.
		{name: "create bound, JSON, openssl's fingerprint", method: "POST", path: "/api/v1/1/credentials",
			body: `{"cert_sha256":"` + opensslA + `","flush_capability":false}`, status: 200,
			check: created(control.CertBinding{SHA256: fpA})},
		{name: "create bound, form", method: "POST", path: "/api/v1/1/credentials",
			body: "cert_sha256=" + fpA, status: 200, check: created(control.CertBinding{SHA256: fpA})},
		{name: "create bound, query", method: "POST", path: "/api/v1/1/credentials?cert_sha256=" + fpA, status: 200,
			check: created(control.CertBinding{SHA256: fpA})},
		{name: "create with an empty fingerprint binds nothing", method: "POST", path: "/api/v1/1/credentials",
			body: `{"cert_sha256":""}`, status: 200, check: created(control.CertBinding{})},
		{name: "create, fingerprint of another cache's credential", setup: bind(2, control.CertBinding{SHA256: fpA}),
			method: "POST", path: "/api/v1/1/credentials", body: `{"cert_sha256":"` + fpA + `"}`,
			status: 409, want: `"Conflict: certificate ` + fpA + ` is bound to a credential of another cache."`, check: gone},
		{name: "create, fingerprint of this cache's credential", setup: bind(1, control.CertBinding{SHA256: fpA, CN: "app-1"}),
			method: "POST", path: "/api/v1/1/credentials", body: `{"cert_sha256":"` + opensslA + `"}`,
			status: 409, want: `"Conflict: certificate ` + fpA + ` is bound to credential {u1}."`,
			check: func(t *testing.T, f *apiFixture) {
				if _, err := f.store.Credential(5); !errors.Is(err, control.ErrNotFound) {
					t.Errorf("a refused creation left credential 5 (%v)", err)
				}
				bound(1, control.CertBinding{SHA256: fpA, CN: "app-1"})(t, f)
			}},
		{name: "create, malformed fingerprint", method: "POST", path: "/api/v1/1/credentials", body: `{"cert_sha256":"00:11:zz"}`,
			status: 400, want: `"Bad request: certificate fingerprint: want 64 hex digits (a SHA-256), got \"0011zz\": invalid"`, check: gone},
		{name: "create, fingerprint not a string", method: "POST", path: "/api/v1/1/credentials", body: `{"cert_sha256":5}`,
			status: 400, check: gone},
		// A CN, however given, creates nothing.
		{name: "create with a CN, JSON", method: "POST", path: "/api/v1/1/credentials",
			body: `{"cert_sha256":"` + fpA + `","cert_cn":"app-1"}`, status: 403, want: cnRefused, check: gone},
		{name: "create with a CN, query", method: "POST", path: "/api/v1/1/credentials?cert_cn=app-1", status: 403, want: cnRefused, check: gone},
		{name: "create with an empty CN, form", method: "POST", path: "/api/v1/1/credentials",
			body: "write_capability=false&cert_cn=", status: 403, want: cnRefused, check: gone},
		{name: "create with a null CN, JSON", method: "POST", path: "/api/v1/1/credentials",
			body: `{"cert_cn":null}`, status: 403, want: cnRefused, check: gone},

		// Update.
		{name: "bind on update, PATCH by username", method: "PATCH", path: "/api/v1/1/credentials/{u3}",
			body: `{"cert_sha256":"` + opensslA + `"}`, status: 200,
			want:  `{` + caps3 + `,"cert_sha256":"` + fpA + `"}`,
			check: bound(3, control.CertBinding{SHA256: fpA})},
		{name: "bind and a capability, form", method: "POST", path: "/api/v1/1/credentials/3",
			body: "flush_capability=true&cert_sha256=" + fpA, status: 200,
			want: `{"flush_capability":true,"write_capability":true,"api_capability":true,"cert_sha256":"` + fpA + `"}`,
			check: func(t *testing.T, f *apiFixture) {
				if c, _ := f.store.Credential(3); c.Caps != control.CapAll || c.Cert.SHA256 != fpA {
					t.Errorf("credential 3: %v %+v", c.Caps, c.Cert)
				}
			}},
		{name: "a new fingerprint keeps the operator's CN", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3?cert_sha256=" + fpA, status: 200,
			want: `{` + caps3 + `,"cert_sha256":"` + fpA + `","cert_cn":"app-3"}`, check: bound(3, control.CertBinding{SHA256: fpA, CN: "app-3"})},
		{name: "capabilities alone leave the binding", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"write_capability":false}`, status: 200,
			want:  `{"flush_capability":false,"write_capability":false,"api_capability":true,"cert_sha256":"` + fpB + `","cert_cn":"app-3"}`,
			check: bound(3, operator)},
		{name: "unbind, JSON", setup: bind(3, control.CertBinding{SHA256: fpA}),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"cert_sha256":""}`, status: 200,
			want: `{` + caps3 + `}`, check: bound(3, control.CertBinding{})},
		{name: "unbind leaves the operator's CN, JSON", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"cert_sha256":""}`, status: 200,
			want: `{` + caps3 + `,"cert_cn":"app-3"}`, check: bound(3, control.CertBinding{CN: "app-3"})},
		{name: "unbind leaves the operator's CN, form; the list shows it", setup: bind(3, operator),
			method: "POST", path: "/api/v1/1/credentials/3", body: "cert_sha256=", status: 200,
			want: `{` + caps3 + `,"cert_cn":"app-3"}`, check: func(t *testing.T, f *apiFixture) {
				bound(3, control.CertBinding{CN: "app-3"})(t, f)
				status, body := f.do("GET", "/api/v1/1/credentials", f.full, "")
				want := f.expand("[" + guideCred(1, 1, "{u1}", true, true, true, true, "") + "," +
					strings.TrimSuffix(guideCred(1, 3, "{u3}", false, true, true, false, ""), "}") + `,"cert_cn":"app-3"},` +
					guideCred(1, 4, "{u4}", true, true, false, false, "") + "]\n")
				if status != 200 || body != want {
					t.Errorf("the list after the unbind:\n got %d %s\nwant 200 %s", status, body, want)
				}
			}},
		{name: "update, fingerprint of this cache's credential", setup: bind(1, control.CertBinding{SHA256: fpA}),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"flush_capability":true,"cert_sha256":"` + fpA + `"}`,
			status: 409, want: `"Conflict: certificate ` + fpA + ` is bound to credential {u1}."`, check: unchanged(control.CertBinding{})},
		{name: "update, fingerprint of another cache's credential, the operator's CN kept", setup: func(f *apiFixture) {
			bind(2, control.CertBinding{SHA256: fpA})(f)
			bind(3, operator)(f)
		}, method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"write_capability":false,"cert_sha256":"` + fpA + `"}`,
			status: 409, want: `"Conflict: certificate ` + fpA + ` is bound to a credential of another cache."`,
			check: unchanged(operator)},
		{name: "update, malformed fingerprint", setup: bind(3, control.CertBinding{SHA256: fpB}),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"api_capability":false,"cert_sha256":"` + fpA[:62] + `"}`,
			status: 400, want: `"Bad request: certificate fingerprint: want 64 hex digits (a SHA-256), got \"` + fpA[:62] + `\": invalid"`,
			check: unchanged(control.CertBinding{SHA256: fpB})},
		// A CN, however given, changes nothing: not the binding, not the
		// capabilities or fingerprint sent with it.
		{name: "set a CN, JSON", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"write_capability":false,"cert_sha256":"` + fpA + `","cert_cn":"app-x"}`,
			status: 403, want: cnRefused, check: unchanged(operator)},
		{name: "set a CN on an unbound credential, query", method: "PATCH", path: "/api/v1/1/credentials/{u3}?cert_cn=app-x",
			body: `{"flush_capability":true}`, status: 403, want: cnRefused, check: unchanged(control.CertBinding{})},
		{name: "clear the operator's CN, JSON", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"cert_sha256":"","cert_cn":""}`,
			status: 403, want: cnRefused, check: unchanged(operator)},
		{name: "clear the operator's CN, form", setup: bind(3, operator),
			method: "POST", path: "/api/v1/1/credentials/3", body: "cert_cn=", status: 403, want: cnRefused, check: unchanged(operator)},
		{name: "clear the operator's CN, query", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3?cert_cn=", status: 403, want: cnRefused, check: unchanged(operator)},
		{name: "a null CN, JSON", setup: bind(3, operator),
			method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"cert_cn":null}`, status: 403, want: cnRefused, check: unchanged(operator)},
		{name: "another cache's credential", method: "PATCH", path: "/api/v1/1/credentials/2", body: `{"cert_sha256":"` + fpA + `"}`,
			status: 403, want: `"You are not authorized to perform this action."`, check: bound(2, control.CertBinding{})},
		{name: "another cache's credential, with a CN", setup: bind(2, control.CertBinding{CN: "app-b"}),
			method: "PATCH", path: "/api/v1/1/credentials/2", body: `{"cert_cn":""}`,
			status: 403, want: `"You are not authorized to perform this action."`, check: bound(2, control.CertBinding{CN: "app-b"})},
		{name: "the store fails: nothing changes", setup: func(f *apiFixture) {
			bind(3, control.CertBinding{CN: "app-3"})(f)
			f.rebuild(failingStore{f.store, "UpdateCredential", errors.New("disk on fire")}, nil)
		}, method: "PATCH", path: "/api/v1/1/credentials/3", body: `{"flush_capability":true,"cert_sha256":"` + fpA + `"}`,
			status: 500, want: `"Server error"`, check: unchanged(control.CertBinding{CN: "app-3"})},

		// The list shows a binding beside the guide's fields, the
		// operator's CN too, and nothing for an unbound credential.
		{name: "list", setup: bind(3, control.CertBinding{SHA256: fpA, CN: "app-3"}), method: "GET", path: "/api/v1/1/credentials", status: 200,
			want: "[" + guideCred(1, 1, "{u1}", true, true, true, true, "") + "," +
				strings.TrimSuffix(guideCred(1, 3, "{u3}", false, true, true, false, ""), "}") + `,"cert_sha256":"` + fpA + `","cert_cn":"app-3"},` +
				guideCred(1, 4, "{u4}", true, true, false, false, "") + "]"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			f := newAPI(t)
			if r.setup != nil {
				r.setup(f)
			}
			status, body := f.do(r.method, f.expand(r.path), f.full, r.body)
			if status != r.status || (r.want != "" && body != f.expand(r.want)+"\n") {
				t.Fatalf("%s %s %s\n got %d %s\nwant %d %s", r.method, r.path, r.body, status, strings.TrimSuffix(body, "\n"), r.status, f.expand(r.want))
			}
			if creation := r.method == "POST" && strings.HasPrefix(r.path+"?", "/api/v1/1/credentials?"); creation && status == 200 {
				// A creation answers the binding too.
				var got apiCredential
				c, err := f.store.Credential(5)
				if err != nil || json.Unmarshal([]byte(body), &got) != nil || got.ID != 5 || got.CertSHA256 != c.Cert.SHA256 || got.CertCN != c.Cert.CN {
					t.Fatalf("the creation's answer %s does not show the stored binding %+v (%v)", body, c.Cert, err)
				}
			}
			if r.check != nil {
				r.check(t, f)
			}
		})
	}
}
