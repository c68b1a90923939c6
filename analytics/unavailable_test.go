package analytics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// unreachableStore is a shared store whose etcd cannot be reached: every
// change fails with control.ErrUnavailable (wrapped, as a backend would),
// while reads answer from the last state seen.
type unreachableStore struct{ control.Store }

var errUnreachable = fmt.Errorf("etcd put /memhive/caches/1: context deadline exceeded: %w", control.ErrUnavailable)

func (unreachableStore) CreateCache(control.Cache) (control.Cache, error) {
	return control.Cache{}, errUnreachable
}
func (unreachableStore) UpdateCache(uint32, control.CacheUpdate) (control.Cache, error) {
	return control.Cache{}, errUnreachable
}
func (unreachableStore) DeleteCache(uint32) error { return errUnreachable }
func (unreachableStore) CreateCredential(uint32, control.NewCredential) (control.Credential, string, error) {
	return control.Credential{}, "", errUnreachable
}
func (unreachableStore) UpdateCredential(uint32, control.CredentialUpdate) (control.Credential, error) {
	return control.Credential{}, errUnreachable
}
func (unreachableStore) Promote(uint32) (control.Credential, error) {
	return control.Credential{}, errUnreachable
}
func (unreachableStore) DeleteCredential(uint32) error { return errUnreachable }

// doHeaders is doWith that also returns the response's Retry-After.
func doHeaders(handle func(*fasthttp.RequestCtx) bool, method, path, auth, body string) (int, string, string) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	if auth != "" {
		ctx.Request.Header.Set("Authorization", auth)
	}
	ctx.Request.SetBodyString(body)
	if !handle(&ctx) {
		return 0, "", ""
	}
	return ctx.Response.StatusCode(), string(ctx.Response.Body()), string(ctx.Response.Header.Peek("Retry-After"))
}

// TestUnavailableIs503 checks that every change the admin API and the
// analytics API make answers 503 with msgUnavailable (and Retry-After)
// when the store says the control plane cannot be reached: never 500,
// which would send operators looking for a bug, and never a success.
func TestUnavailableIs503(t *testing.T) {
	f := newAPI(t)
	down := unreachableStore{f.store}
	admin := NewAdmin(AdminConfig{Store: down, Token: token, Servers: node})
	f.rebuild(down, nil)
	before := snapshotStore(t, f.store)

	adminWant := `{"error":"` + msgUnavailable + `"}` + "\n"
	bearer := "Bearer " + token
	for _, req := range [][3]string{
		{"POST", "/admin/v1/caches", `{"name":"app","memory_limit_mb":8}`},
		{"PATCH", "/admin/v1/caches/1", `{"memory_limit_mb":16}`},
		{"DELETE", "/admin/v1/caches/1", ""},
		{"POST", "/admin/v1/caches/1/credentials", `{"write":true}`},
		{"PATCH", "/admin/v1/caches/1/credentials/3", `{"write":false}`},
		{"POST", "/admin/v1/caches/1/credentials/primary/3", ""},
		{"DELETE", "/admin/v1/caches/1/credentials/3", ""},
	} {
		status, body, retry := doHeaders(admin.Handle, req[0], req[1], bearer, req[2])
		if status != 503 || body != adminWant || retry == "" {
			t.Errorf("admin %s %s: %d %q (Retry-After %q); want 503 %q", req[0], req[1], status, body, retry, adminWant)
		}
	}

	apiWant := `"` + msgUnavailable + `"` + "\n"
	for _, req := range [][3]string{
		{"POST", "/api/v1/1/settings", `{"enabled":false}`},
		{"POST", "/api/v1/1/credentials", ``},
		{"PATCH", "/api/v1/1/credentials/3", `{"write_capability":false}`},
		{"POST", "/api/v1/1/credentials/3", `flush_capability=true`},
		{"PATCH", "/api/v1/1/credentials/3", `{"cert_sha256":"` + strings.Repeat("ab", 32) + `"}`},
		{"POST", "/api/v1/1/credentials/primary/3", ""},
		{"DELETE", "/api/v1/1/credentials/primary/3", ""},
	} {
		status, body, retry := doHeaders(f.api.Handle, req[0], req[1], f.full, req[2])
		if status != 503 || body != apiWant || retry == "" {
			t.Errorf("API %s %s: %d %q (Retry-After %q); want 503 %q", req[0], req[1], status, body, retry, apiWant)
		}
	}
	if after := snapshotStore(t, f.store); after != before {
		t.Fatalf("refused changes changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshotStore is every cache and credential of store, to compare.
func snapshotStore(t *testing.T, store control.Store) string {
	t.Helper()
	caches, err := store.Caches()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := store.Credentials(0)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v %+v", caches, creds)
}
