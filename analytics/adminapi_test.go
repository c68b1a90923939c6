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
	first, _, err := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite})
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

// TestAdminCertBinding binds credentials to client certificates through
// the admin API: at creation, by PATCH (alone and with capabilities),
// clearing a half or all of it. A request the Store refuses (a
// certificate bound elsewhere: 409; a malformed fingerprint or CN: 400)
// changes nothing, and a refused creation leaves no credential behind.
func TestAdminCertBinding(t *testing.T) {
	a, store := newAdmin(t)
	auth := "Bearer " + token
	if status, body := do(a, "POST", "/admin/v1/caches", auth, `{"name":"one","memory_limit_mb":8}`); status != 201 {
		t.Fatalf("create cache: %d %s", status, body)
	}
	fp1, fp2 := strings.Repeat("ab", 32), strings.Repeat("0f", 32)
	// openssl x509 -fingerprint -sha256 prints it like this.
	fp1Colons := "sha256 Fingerprint=" + strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	snapshot := func() string {
		creds, err := store.Credentials(0)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v", creds)
	}
	const creds, first = "/admin/v1/caches/1/credentials", "/admin/v1/caches/1/credentials/1"
	steps := []struct {
		method, path, body string
		status             int
		contains           []string
		lacks              string
		unchanged          bool // the store's credentials must be as before
	}{
		{"POST", creds, `{"cert_sha256":"` + fp1Colons + `"}`, 201, []string{`"id":2`, `"cert_sha256":"` + fp1 + `"`, `"password"`}, "cert_cn", false},
		{"POST", creds, `{"cert_cn":"client-a","write":false}`, 201, []string{`"id":3`, `"write":false`, `"cert_cn":"client-a"`}, "cert_sha256", false},
		{"GET", creds, "", 200, []string{`"cert_sha256":"` + fp1 + `"`, `"cert_cn":"client-a"`}, "", true},
		// Clashes: nothing is left behind, and the primary stays.
		{"POST", creds, `{"cert_sha256":"` + fp1 + `"}`, 409, []string{"already exists"}, "", true},
		{"POST", creds, `{"cert_cn":"client-a","primary":true}`, 409, []string{"already exists"}, "", true},
		{"POST", creds, `{"cert_sha256":"` + fp2 + `","cert_cn":"client-a"}`, 409, []string{"client-a"}, "", true},
		// Malformed: refused before or after creating, never kept.
		{"POST", creds, `{"cert_sha256":"zz"}`, 400, []string{"64 hex digits"}, "", true},
		{"POST", creds, `{"cert_sha256":"` + fp2[2:] + `"}`, 400, []string{"64 hex digits"}, "", true},
		{"POST", creds, `{"cert_cn":"bad\u0001cn"}`, 400, []string{"control character"}, "", true},
		{"POST", creds, `{"cert_cn":"` + strings.Repeat("x", 65) + `"}`, 400, []string{"longer"}, "", true},
		{"POST", creds, `{"cert_sha256":3}`, 400, []string{"bad JSON"}, "", true},
		// PATCH: absent is unchanged, empty clears.
		{"PATCH", first, `{"cert_sha256":"` + fp2 + `"}`, 200, []string{`"id":1`, `"cert_sha256":"` + fp2 + `"`, `"write":true`}, "cert_cn", false},
		{"PATCH", first, `{"cert_cn":"client-a"}`, 409, []string{"already exists"}, "", true},
		{"PATCH", first, `{"cert_sha256":"` + fp1 + `","write":false}`, 409, []string{"already exists"}, "", true},
		{"PATCH", first, `{"cert_sha256":"xyz","write":false}`, 400, []string{"64 hex digits"}, "", true},
		{"PATCH", first, `{"cert_cn":"client-b","write":false}`, 200, []string{`"write":false`, `"cert_sha256":"` + fp2 + `"`, `"cert_cn":"client-b"`}, "", false},
		{"PATCH", first, `{"flush":false}`, 200, []string{`"flush":false`, `"cert_sha256":"` + fp2 + `"`, `"cert_cn":"client-b"`}, "", false},
		{"PATCH", first, `{"cert_sha256":""}`, 200, []string{`"cert_cn":"client-b"`}, "cert_sha256", false},
		{"POST", first, `{"cert_sha256":"","cert_cn":""}`, 200, []string{`"id":1`}, "cert_", false},
		{"PATCH", first, `{"cert_cn":"","write":true}`, 200, []string{`"write":true`}, "cert_", false},
		// What was unbound is free to bind again; a bound new primary
		// takes over only once bound.
		{"POST", creds, `{"cert_sha256":"` + fp2 + `","primary":true}`, 201, []string{`"primary":true`, fp2}, "", false},
	}
	for _, s := range steps {
		before := snapshot()
		status, body := do(a, s.method, s.path, auth, s.body)
		ok := status == s.status && (s.lacks == "" || !strings.Contains(body, s.lacks))
		for _, c := range s.contains {
			ok = ok && strings.Contains(body, c)
		}
		if !ok {
			t.Fatalf("%s %s %s: %d %s; want %d containing %q, not %q", s.method, s.path, s.body, status, body, s.status, s.contains, s.lacks)
		}
		if after := snapshot(); s.unchanged && after != before {
			t.Fatalf("%s %s %s (%d) changed the credentials:\nbefore %s\nafter  %s", s.method, s.path, s.body, status, before, after)
		}
	}
	// 1 (the cache's first), 2 and 3, and the new primary.
	all, _ := store.Credentials(1)
	if len(all) != 4 {
		t.Fatalf("%d credentials, want 4: a refused creation left one behind: %+v", len(all), all)
	}
	for _, c := range all {
		if newest := c.ID == all[3].ID; c.Primary != newest || (c.Cert == control.CertBinding{SHA256: fp2}) != newest {
			t.Errorf("credential %d: primary %v, binding %+v; want only the newest primary, bound to %s", c.ID, c.Primary, c.Cert, fp2)
		}
	}
}

// TestAdminCertBindingOnEmptyCache checks that a refused creation on a
// cache with no credentials removes the credential that became its
// primary only because it was the first.
func TestAdminCertBindingOnEmptyCache(t *testing.T) {
	a, store := newAdmin(t)
	c, err := store.CreateCache(control.Cache{Name: "bare", LimitBytes: 8 << 20, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := store.CreateCache(control.Cache{Name: "other", LimitBytes: 8 << 20, Enabled: true})
	cr, _, _ := store.CreateCredential(other.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	if _, err := store.UpdateCredential(cr.ID, control.CredentialUpdate{CertCN: new("taken")}); err != nil {
		t.Fatal(err)
	}
	status, body := do(a, "POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", c.ID), "Bearer "+token, `{"cert_cn":"taken"}`)
	if status != 409 || !strings.Contains(body, "taken") {
		t.Fatalf("%d %s", status, body)
	}
	if left, _ := store.Credentials(c.ID); len(left) != 0 {
		t.Fatalf("credentials left: %+v", left)
	}
}
