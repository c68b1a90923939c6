package analytics

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// recordingDialect writes what credentialOps asked of it as the answer.
type recordingDialect struct{}

func (recordingDialect) parse(ctx *fasthttp.RequestCtx, creating bool) (credentialChange, bool) {
	return credentialChange{}, true
}
func (recordingDialect) view(c control.Credential, _ string) any { return c.ID }
func (recordingDialect) updated(c control.Credential) any        { return "updated" }
func (recordingDialect) deleted(c control.Credential) any        { return "deleted" }
func (recordingDialect) noCredential(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusNotFound, "no credential")
}
func (recordingDialect) refused(ctx *fasthttp.RequestCtx, _, _ uint32, _ credentialChange, err error) {
	writeJSON(ctx, fasthttp.StatusConflict, err.Error())
}
func (recordingDialect) failed(ctx *fasthttp.RequestCtx, err error) {
	writeJSON(ctx, fasthttp.StatusInternalServerError, err.Error())
}

// TestCredentialRoutes checks which endpoint each path and method under
// .../credentials reaches, for both APIs at once, and that a credential
// of another cache, by id or username, is not found.
func TestCredentialRoutes(t *testing.T) {
	_, store := newAdmin(t)
	one, _ := store.CreateCache(control.Cache{Name: "one", LimitBytes: 8 << 20, Enabled: true})
	two, _ := store.CreateCache(control.Cache{Name: "two", LimitBytes: 8 << 20, Enabled: true})
	mine, _, _ := store.CreateCredential(one.ID, control.NewCredential{Caps: control.CapAll})
	other, _, _ := store.CreateCredential(two.ID, control.NewCredential{Caps: control.CapAll})
	ops := credentialOps{store: store, dialect: recordingDialect{}, createdStatus: fasthttp.StatusCreated}
	for _, r := range []struct {
		method, rest string
		status       int    // 0: no endpoint
		body         string // without the newline
	}{
		{"GET", "", 200, "[1]"},
		{"POST", "", 201, "3"},
		{"PUT", "", 0, ""},
		{"PATCH", "1", 200, `"updated"`},
		{"POST", mine.Username, 200, `"updated"`},
		{"GET", "1", 0, ""},
		{"POST", "primary/1", 200, "1"},
		{"PATCH", "primary/1", 0, ""},
		{"DELETE", "primary/3", 200, `"deleted"`},
		{"DELETE", mine.Username, 200, `"deleted"`},
		{"DELETE", "x/1", 0, ""},
		{"DELETE", "primary/1/2", 0, ""},
		{"PATCH", "2", 404, `"no credential"`},
		{"PATCH", other.Username, 404, `"no credential"`},
		{"DELETE", "primary/2", 404, `"no credential"`},
		{"PATCH", "99", 404, `"no credential"`},
	} {
		var ctx fasthttp.RequestCtx
		var rest []string
		if r.rest != "" {
			rest = strings.Split(r.rest, "/")
		}
		served := ops.serve(&ctx, one.ID, r.method, rest)
		status, body := ctx.Response.StatusCode(), strings.TrimSuffix(string(ctx.Response.Body()), "\n")
		if r.status == 0 {
			if served || len(body) > 0 {
				t.Errorf("%s .../credentials/%s: answered %d %s; want no endpoint", r.method, r.rest, status, body)
			}
			continue
		}
		if !served || status != r.status || body != r.body {
			t.Errorf("%s .../credentials/%s: served %v, %d %s; want %d %s", r.method, r.rest, served, status, body, r.status, r.body)
		}
	}
}
