package analytics

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// Source is what the analytics API reads of the running caches: the
// server's per-cache statistics, and the one action it takes on them.
type Source interface {
	// CacheIDs lists the caches served.
	CacheIDs() []uint32
	// CacheStats is one cache's statistics under memcached's names.
	CacheStats(id uint32) (map[string]uint64, bool)
	// Flush empties a cache, as flush_all does; false if it is not served.
	Flush(id uint32) bool
}

// APIConfig configures the analytics API.
type APIConfig struct {
	Store  control.Store
	Source Source
	// Server names this node in stats and history ("host:port", the
	// memcache address).
	Server string
	// HistoryWindow is how far back history answers reach (the retention).
	HistoryWindow time.Duration
	Logger        *slog.Logger
}

// API serves MemCachier's analytics API, /api/v1/..., to credentials with
// the api capability. The dashboard uses nothing else.
type API struct {
	cfg APIConfig
	log *slog.Logger
}

// NewAPI makes the analytics API.
func NewAPI(cfg APIConfig) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HistoryWindow == 0 {
		cfg.HistoryWindow = 7 * 24 * time.Hour
	}
	return &API{cfg: cfg, log: cfg.Logger}
}

// The answers MemCachier's API gives, as JSON strings.
const (
	msgForbidden = "You are not authorized to perform this action."
	msgNoCache   = "No cache found."
	msgServer    = "Server error"
)

// apiCredential is a credential as MemCachier's API shows it.
type apiCredential struct {
	ID       uint32 `json:"id"`
	CacheID  uint32 `json:"cache_id"`
	Username string `json:"sasl_username"`
	Password string `json:"sasl_password,omitempty"`
	Write    bool   `json:"write_capability"`
	Flush    bool   `json:"flush_capability"`
	API      bool   `json:"api_capability"`
	Primary  bool   `json:"primary"`
}

func apiCred(c control.Credential, password string) apiCredential {
	return apiCredential{
		ID: c.ID, CacheID: c.CacheID, Username: c.Username, Password: password,
		Write: c.Caps&control.CapWrite != 0, Flush: c.Caps&control.CapFlush != 0, API: c.Caps&control.CapAPI != 0,
		Primary: c.Primary,
	}
}

// apiCapabilities is the body that sets capabilities; absent fields are
// left as they are (on creation: allowed).
type apiCapabilities struct {
	Write *bool `json:"write_capability"`
	Flush *bool `json:"flush_capability"`
	API   *bool `json:"api_capability"`
}

func (r apiCapabilities) apply(caps control.Capabilities) control.Capabilities {
	return capsRequest{Write: r.Write, Flush: r.Flush, API: r.API}.apply(caps)
}

// Handle answers the request if its path is under /api/v1/ and reports
// whether it did.
func (a *API) Handle(ctx *fasthttp.RequestCtx) bool {
	rest, ok := strings.CutPrefix(string(ctx.Path()), "/api/v1/")
	if !ok {
		return false
	}
	cred, ok := a.authenticate(ctx)
	if !ok {
		writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
		return true
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	method := string(ctx.Method())
	if parts[0] == "login" && len(parts) == 1 {
		if _, err := a.cfg.Store.Cache(cred.CacheID); err != nil {
			a.fail(ctx, err)
			return true
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]uint32{"cache_id": cred.CacheID})
		return true
	}
	id, err := parseID(parts[0])
	if err != nil {
		writeJSON(ctx, fasthttp.StatusNotFound, msgNoCache)
		return true
	}
	if id != cred.CacheID {
		// Another cache's id is forbidden, whether or not it exists.
		writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
		return true
	}
	cache, err := a.cfg.Store.Cache(id)
	if err != nil {
		a.fail(ctx, err)
		return true
	}
	action := strings.Join(parts[1:], "/")
	switch {
	case action == "" && method == "GET":
		a.info(ctx, cache)
	case action == "stats" && method == "GET":
		a.stats(ctx, id)
	case action == "history" && method == "GET":
		a.history(ctx, id)
	case action == "flush" && method == "POST":
		if cred.Caps&control.CapFlush == 0 {
			writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
			return true
		}
		if !a.cfg.Source.Flush(id) {
			writeJSON(ctx, fasthttp.StatusNotFound, msgNoCache)
			return true
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]bool{"flushed": true})
	case action == "settings" && method == "POST":
		a.settings(ctx, id)
	case action == "credentials" && method == "GET":
		a.listCredentials(ctx, id)
	case action == "credentials" && method == "POST":
		a.createCredential(ctx, id)
	case len(parts) == 3 && parts[1] == "credentials" && (method == "POST" || method == "PATCH"):
		a.withCredential(ctx, id, parts[2], a.updateCredential)
	case len(parts) == 3 && parts[1] == "credentials" && method == "DELETE",
		len(parts) == 4 && parts[1] == "credentials" && parts[2] == "primary" && method == "DELETE":
		a.withCredential(ctx, id, parts[len(parts)-1], a.deleteCredential)
	case len(parts) == 4 && parts[1] == "credentials" && parts[2] == "primary" && method == "POST":
		a.withCredential(ctx, id, parts[3], a.promoteCredential)
	default:
		writeJSON(ctx, fasthttp.StatusNotFound, "Not found.")
	}
	return true
}

// authenticate checks HTTP Basic credentials: a known username, its
// password, and the api capability.
func (a *API) authenticate(ctx *fasthttp.RequestCtx) (control.Credential, bool) {
	enc, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Basic ")
	if !ok {
		return control.Credential{}, false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return control.Credential{}, false
	}
	username, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return control.Credential{}, false
	}
	cred, err := a.cfg.Store.CredentialByUsername(username)
	if err != nil {
		control.Verify(control.Credential{}, []byte(password)) // the same work either way
		return control.Credential{}, false
	}
	if !control.Verify(cred, []byte(password)) || cred.Caps&control.CapAPI == 0 {
		return control.Credential{}, false
	}
	return cred, true
}

// fail maps a store error to MemCachier's answers.
func (a *API) fail(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, control.ErrNotFound):
		writeJSON(ctx, fasthttp.StatusNotFound, msgNoCache)
	case errors.Is(err, control.ErrLastPrimary), errors.Is(err, control.ErrInvalid):
		writeJSON(ctx, fasthttp.StatusConflict, err.Error())
	default:
		a.log.Error("analytics API", "path", string(ctx.Path()), "err", err)
		writeJSON(ctx, fasthttp.StatusInternalServerError, msgServer)
	}
}

func (a *API) info(ctx *fasthttp.RequestCtx, c control.Cache) {
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"cache_id": c.ID, "name": c.Name, "enabled": c.Enabled, "dev": c.Dev,
		"memory_limit": c.LimitBytes, "plan": c.Plan, "servers": a.cfg.Server,
	})
}

func (a *API) stats(ctx *fasthttp.RequestCtx, id uint32) {
	st, ok := a.cfg.Source.CacheStats(id)
	if !ok {
		writeJSON(ctx, fasthttp.StatusInternalServerError, msgServer+": "+a.cfg.Server)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]map[string]uint64{a.cfg.Server: st})
}

// historyEntry is one sample as MemCachier's API shows it.
type historyEntry struct {
	MemcachierID uint32            `json:"memcachier_id"`
	Server       string            `json:"server"`
	Stats        map[string]uint64 `json:"stats"`
	Timestamp    int64             `json:"timestamp"` // unix milliseconds
}

func (a *API) history(ctx *fasthttp.RequestCtx, id uint32) {
	samples, err := a.cfg.Store.History(id, time.Now().Add(-a.cfg.HistoryWindow))
	if err != nil {
		a.fail(ctx, err)
		return
	}
	out := make([]historyEntry, 0, len(samples))
	for _, s := range samples {
		out = append(out, historyEntry{s.CacheID, s.Server, s.Stats, s.Time.UnixMilli()})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (a *API) settings(ctx *fasthttp.RequestCtx, id uint32) {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if !decode(ctx, &req) {
		return
	}
	c, err := a.cfg.Store.UpdateCache(id, control.CacheUpdate{Enabled: req.Enabled})
	if err != nil {
		a.fail(ctx, err)
		return
	}
	a.info(ctx, c)
}

func (a *API) listCredentials(ctx *fasthttp.RequestCtx, id uint32) {
	creds, err := a.cfg.Store.Credentials(id)
	if err != nil {
		a.fail(ctx, err)
		return
	}
	out := make([]apiCredential, 0, len(creds))
	for _, c := range creds {
		out = append(out, apiCred(c, ""))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (a *API) createCredential(ctx *fasthttp.RequestCtx, id uint32) {
	var req apiCapabilities
	if len(ctx.PostBody()) > 0 && !decode(ctx, &req) {
		return
	}
	cred, password, err := a.cfg.Store.CreateCredential(id, req.apply(control.CapAll), false)
	if err != nil {
		a.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, apiCred(cred, password))
}

// withCredential finds credential ref (an id or a username) of cache id.
func (a *API) withCredential(ctx *fasthttp.RequestCtx, id uint32, ref string, fn func(*fasthttp.RequestCtx, control.Credential)) {
	cred, err := lookupCredential(a.cfg.Store, id, ref)
	if err != nil {
		if errors.Is(err, control.ErrNotFound) {
			writeJSON(ctx, fasthttp.StatusNotFound, "No credential found.")
			return
		}
		a.fail(ctx, err)
		return
	}
	fn(ctx, cred)
}

func (a *API) updateCredential(ctx *fasthttp.RequestCtx, cred control.Credential) {
	var req apiCapabilities
	if !decode(ctx, &req) {
		return
	}
	cred, err := a.cfg.Store.SetCapabilities(cred.ID, req.apply(cred.Caps))
	if err != nil {
		a.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, apiCred(cred, ""))
}

func (a *API) promoteCredential(ctx *fasthttp.RequestCtx, cred control.Credential) {
	cred, err := a.cfg.Store.Promote(cred.ID)
	if err != nil {
		a.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, apiCred(cred, ""))
}

func (a *API) deleteCredential(ctx *fasthttp.RequestCtx, cred control.Credential) {
	if err := a.cfg.Store.DeleteCredential(cred.ID); err != nil {
		a.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]uint32{"deleted": cred.ID})
}
