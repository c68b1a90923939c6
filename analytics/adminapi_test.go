package analytics

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

const token = "secret-token"

func newAdmin(t *testing.T) (*Admin, control.Store) {
	t.Helper()
	store, err := control.Open(filepath.Join(t.TempDir(), "control.db"), control.Policy{MemoryBytes: 100 << 20, MinLimitBytes: 1 << 20}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return NewAdmin(AdminConfig{Store: store, Token: token, Servers: "127.0.0.1:11211"}), store
}

// do runs one request through the admin API.
func do(a *Admin, method, path, auth, body string) (int, string) {
	return doWith(a.Handle, method, path, auth, body)
}

// doWith runs one request through a handler and returns the status and
// body (status 0: the handler did not take the path).
func doWith(handle func(*fasthttp.RequestCtx) bool, method, path, auth, body string) (int, string) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	if auth != "" {
		ctx.Request.Header.Set("Authorization", auth)
	}
	ctx.Request.SetBodyString(body)
	if !handle(&ctx) {
		return 0, ""
	}
	return ctx.Response.StatusCode(), string(ctx.Response.Body())
}

func TestAdminCaches(t *testing.T) {
	a, store := newAdmin(t)
	auth := "Bearer " + token
	steps := []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/admin/v1/caches", "", 200, "[]"},
		{"POST", "/admin/v1/caches", `{"name":"app","memory_limit_mb":64}`, 201, `"cache_id":1`},
		{"POST", "/admin/v1/caches", `{"name":"app","memory_limit_mb":1}`, 409, "already exists"},
		{"POST", "/admin/v1/caches", `{"name":"big","memory_limit_mb":40}`, 409, "exceed"},
		{"POST", "/admin/v1/caches", `{"name":"bad name","memory_limit_mb":1}`, 400, "invalid"},
		{"POST", "/admin/v1/caches", `{"name":"x"}`, 400, "memory_limit_mb"},
		{"POST", "/admin/v1/caches", `{"name":"x","memory_limit_mb":-1}`, 400, "memory_limit_mb"},
		{"POST", "/admin/v1/caches", `{"name":`, 400, "bad JSON"},
		{"POST", "/admin/v1/caches", `{"name":"x","memory_limit_mb":1,"color":"red"}`, 400, "unknown field"},
		{"GET", "/admin/v1/caches/1", "", 200, `"memory_limit":67108864`},
		{"GET", "/admin/v1/caches/9", "", 404, "No cache found."},
		{"GET", "/admin/v1/caches/abc", "", 404, "No cache found."},
		{"PATCH", "/admin/v1/caches/1", `{"memory_limit_mb":32,"enabled":false}`, 200, `"enabled":false`},
		{"PATCH", "/admin/v1/caches/1", `{"memory_limit_mb":200}`, 409, "exceed"},
		{"PATCH", "/admin/v1/caches/9", `{"enabled":true}`, 404, "No cache found."},
		{"PUT", "/admin/v1/caches/1", ``, 405, "not allowed"},
		{"GET", "/admin/v1/nothing", "", 404, "Not found."},
		{"DELETE", "/admin/v1/caches/1", "", 200, `"deleted":1`},
		{"DELETE", "/admin/v1/caches/1", "", 404, "No cache found."},
	}
	for _, s := range steps {
		status, body := do(a, s.method, s.path, auth, s.body)
		if status != s.status || !strings.Contains(body, s.contains) {
			t.Fatalf("%s %s %s: %d %s; want %d containing %q", s.method, s.path, s.body, status, body, s.status, s.contains)
		}
	}
	if caches, _ := store.Caches(); len(caches) != 0 {
		t.Fatalf("caches left: %+v", caches)
	}
	if status, _ := do(a, "GET", "/healthz", "", ""); status != 200 {
		t.Fatalf("healthz: %d", status)
	}
	if status, _ := do(a, "GET", "/", "", ""); status != 0 {
		t.Fatal("the admin API answered a path that is not its own")
	}
}

func TestAdminCreateAnswer(t *testing.T) {
	a, store := newAdmin(t)
	status, body := do(a, "POST", "/admin/v1/caches", "Bearer "+token, `{"name":"app","memory_limit_mb":8,"dev":true}`)
	var got map[string]any
	if status != 201 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("%d %s", status, body)
	}
	for _, k := range []string{"cache_id", "name", "memory_limit", "servers", "username", "password"} {
		if _, ok := got[k]; !ok {
			t.Fatalf("answer lacks %q: %s", k, body)
		}
	}
	cred, err := store.CredentialByUsername(got["username"].(string))
	if err != nil || !cred.Primary || cred.Caps != control.CapAll || !control.Verify(cred, []byte(got["password"].(string))) {
		t.Fatalf("the answered credential: %+v %v", cred, err)
	}
	if c, _ := store.Cache(cred.CacheID); !c.Dev || !c.Enabled || c.LimitBytes != 8<<20 {
		t.Fatalf("the cache: %+v", c)
	}
}

func TestAdminNeedsTheToken(t *testing.T) {
	a, store := newAdmin(t)
	// A cache and two credentials for the requests to aim at.
	c, err := store.CreateCache(control.Cache{Name: "victim", LimitBytes: 8 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := store.CreateCredential(c.ID, control.CapAll, true)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := store.CreateCredential(c.ID, control.CapWrite, false)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		caches, _ := store.Caches()
		creds, _ := store.Credentials(c.ID)
		return fmt.Sprintf("%+v %+v", caches, creds)
	}
	before := snapshot()
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token} {
		// Every path and method of the admin API, and paths it does not
		// have: the token is checked before anything else.
		for _, req := range [][3]string{
			{"POST", "/admin/v1/caches", `{"name":"app","memory_limit_mb":8}`},
			{"GET", "/admin/v1/caches", ""},
			{"GET", fmt.Sprintf("/admin/v1/caches/%d", c.ID), ""},
			{"PATCH", fmt.Sprintf("/admin/v1/caches/%d", c.ID), `{"memory_limit_mb":16,"enabled":false}`},
			{"DELETE", fmt.Sprintf("/admin/v1/caches/%d", c.ID), ""},
			{"GET", fmt.Sprintf("/admin/v1/caches/%d/credentials", c.ID), ""},
			{"POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", c.ID), `{"write":true}`},
			{"PATCH", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", c.ID, second.ID), `{"write":false}`},
			{"DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", c.ID, second.ID), ""},
			{"POST", fmt.Sprintf("/admin/v1/caches/%d/credentials/primary/%d", c.ID, second.ID), ""},
			{"DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", c.ID, first.ID), ""},
			{"GET", "/admin/v1/nothing-here", ""},
		} {
			if status, _ := do(a, req[0], req[1], auth, req[2]); status != 401 {
				t.Fatalf("%q %s %s: %d", auth, req[0], req[1], status)
			}
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("unauthorized requests changed the store:\nbefore %s\nafter  %s", before, after)
	}
	empty := NewAdmin(AdminConfig{Store: store})
	if status, _ := do(empty, "GET", "/admin/v1/caches", "Bearer ", ""); status != 401 {
		t.Fatalf("an admin API without a token answered %d", status)
	}
}

func TestAdminCredentials(t *testing.T) {
	a, store := newAdmin(t)
	auth := "Bearer " + token
	do(a, "POST", "/admin/v1/caches", auth, `{"name":"one","memory_limit_mb":8}`)
	do(a, "POST", "/admin/v1/caches", auth, `{"name":"two","memory_limit_mb":8}`)
	status, body := do(a, "POST", "/admin/v1/caches/1/credentials", auth, `{"write":false,"api":false}`)
	var cred struct {
		ID                         uint32
		Username, Password         string
		Write, Flush, API, Primary bool
	}
	if status != 201 || json.Unmarshal([]byte(body), &cred) != nil || cred.Write || !cred.Flush || cred.API || cred.Primary || cred.Password == "" {
		t.Fatalf("create: %d %s", status, body)
	}
	path := fmt.Sprintf("/admin/v1/caches/1/credentials/%d", cred.ID)
	steps := []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/admin/v1/caches/1/credentials", "", 200, cred.Username},
		{"GET", "/admin/v1/caches/9/credentials", "", 404, "No cache found."},
		{"PATCH", path, `{"write":true}`, 200, `"write":true,"flush":true,"api":false`},
		{"POST", path, `{"flush":false}`, 200, `"write":true,"flush":false`},
		{"PATCH", fmt.Sprintf("/admin/v1/caches/2/credentials/%d", cred.ID), `{"write":true}`, 404, "No credential found."},
		{"PATCH", "/admin/v1/caches/1/credentials/" + cred.Username, `{"api":true}`, 200, `"api":true`},
		{"DELETE", "/admin/v1/caches/1/credentials/1", "", 409, "primary"},
		{"POST", fmt.Sprintf("/admin/v1/caches/1/credentials/primary/%d", cred.ID), "", 200, `"primary":true`},
		{"DELETE", "/admin/v1/caches/1/credentials/primary/1", "", 200, `"deleted":1`},
		{"DELETE", path, "", 200, "deleted"},
		{"DELETE", path, "", 404, "No credential found."},
	}
	for _, s := range steps {
		status, body := do(a, s.method, s.path, auth, s.body)
		if status != s.status || !strings.Contains(body, s.contains) {
			t.Fatalf("%s %s %s: %d %s; want %d containing %q", s.method, s.path, s.body, status, body, s.status, s.contains)
		}
		if strings.Contains(body, "salt") || strings.Contains(body, "hash") {
			t.Fatalf("%s %s leaks a password hash: %s", s.method, s.path, body)
		}
	}
	if creds, _ := store.Credentials(1); len(creds) != 0 {
		t.Fatalf("credentials left: %+v", creds)
	}
}

func TestListenAndServe(t *testing.T) {
	a, _ := newAdmin(t)
	srv, err := ListenAndServe("127.0.0.1:0", func(ctx *fasthttp.RequestCtx) {
		if !a.Handle(ctx) {
			ctx.Error("Not found", 404)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	status, body, err := fasthttp.Get(nil, "http://"+srv.Addr()+"/healthz")
	if err != nil || status != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz over the network: %d %q %v", status, body, err)
	}
	if _, err := ListenAndServe(srv.Addr(), nil); err == nil {
		t.Fatal("binding a taken address succeeded")
	}
}
