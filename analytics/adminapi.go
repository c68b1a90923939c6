// Package analytics serves memhive's HTTP endpoints with fasthttp: the
// admin API (this file), and the dashboard, analytics API and metrics.
package analytics

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// AdminConfig configures the admin API.
type AdminConfig struct {
	Store control.Store
	// Token is the bearer token every admin request must carry. When it is
	// empty the admin API refuses everything: there is no unauthenticated
	// way to manage caches.
	Token string
	// Servers is the memcache address list clients of a new cache use.
	Servers string
	Logger  *slog.Logger
}

// Admin serves /admin/v1/... and /healthz.
type Admin struct {
	cfg AdminConfig
	log *slog.Logger
}

// NewAdmin makes the admin API.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Admin{cfg: cfg, log: cfg.Logger}
}

// CacheInfo is a cache as the admin API shows it (and its clients read it).
type CacheInfo struct {
	CacheID     uint32    `json:"cache_id"`
	Name        string    `json:"name"`
	Plan        string    `json:"plan"`
	MemoryLimit int64     `json:"memory_limit"`
	Enabled     bool      `json:"enabled"`
	Dev         bool      `json:"dev"`
	Created     time.Time `json:"created"`
	LastActive  time.Time `json:"last_active"`
	Servers     string    `json:"servers"`
}

// CredentialInfo is a credential as the APIs show it: never its hash or
// salt; the password only in the answer that created it.
type CredentialInfo struct {
	ID       uint32 `json:"id"`
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
	Write    bool   `json:"write"`
	Flush    bool   `json:"flush"`
	API      bool   `json:"api"`
	Primary  bool   `json:"primary"`
	// CertSHA256 and CertCN are the TLS client certificate bound to the
	// credential (control.CertBinding), absent when none is.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	CertCN     string `json:"cert_cn,omitempty"`
}

func (a *Admin) cacheView(c control.Cache) CacheInfo {
	return CacheInfo{c.ID, c.Name, c.Plan, c.LimitBytes, c.Enabled, c.Dev, c.Created, c.LastActive, a.cfg.Servers}
}

// Cache is the control-plane cache that i describes.
func (i CacheInfo) Cache() control.Cache {
	return control.Cache{ID: i.CacheID, Name: i.Name, Plan: i.Plan, LimitBytes: i.MemoryLimit,
		Enabled: i.Enabled, Dev: i.Dev, Created: i.Created, LastActive: i.LastActive}
}

func credView(c control.Credential, password string) CredentialInfo {
	return CredentialInfo{
		ID: c.ID, Username: c.Username, Password: password,
		Write: c.Caps&control.CapWrite != 0, Flush: c.Caps&control.CapFlush != 0, API: c.Caps&control.CapAPI != 0,
		Primary: c.Primary, CertSHA256: c.Cert.SHA256, CertCN: c.Cert.CN,
	}
}

// Cert is the certificate binding i shows.
func (i CredentialInfo) Cert() control.CertBinding {
	return control.CertBinding{SHA256: i.CertSHA256, CN: i.CertCN}
}

// Caps is the capabilities i lists.
func (i CredentialInfo) Caps() control.Capabilities {
	var caps control.Capabilities
	for _, c := range []struct {
		on  bool
		cap control.Capabilities
	}{{i.Write, control.CapWrite}, {i.Flush, control.CapFlush}, {i.API, control.CapAPI}} {
		if c.on {
			caps |= c.cap
		}
	}
	return caps
}

// Handle answers the request if its path belongs to the admin API and
// reports whether it did.
func (a *Admin) Handle(ctx *fasthttp.RequestCtx) bool {
	path := string(ctx.Path())
	if path == "/healthz" {
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
		return true
	}
	rest, ok := strings.CutPrefix(path, "/admin/v1/")
	if !ok {
		return false
	}
	if !a.authorized(ctx) {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="memhive admin"`)
		writeError(ctx, fasthttp.StatusUnauthorized, "a valid admin bearer token is required")
		return true
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	method := string(ctx.Method())
	if parts[0] != "caches" {
		writeError(ctx, fasthttp.StatusNotFound, "Not found.")
		return true
	}
	if len(parts) == 1 {
		switch method {
		case "GET":
			a.listCaches(ctx)
		case "POST":
			a.createCache(ctx)
		default:
			methodNotAllowed(ctx)
		}
		return true
	}
	id, err := parseID(parts[1])
	if err != nil {
		writeError(ctx, fasthttp.StatusNotFound, "No cache found.")
		return true
	}
	if len(parts) == 2 {
		switch method {
		case "GET":
			a.showCache(ctx, id)
		case "PATCH":
			a.patchCache(ctx, id)
		case "DELETE":
			a.deleteCache(ctx, id)
		default:
			methodNotAllowed(ctx)
		}
		return true
	}
	if parts[2] != "credentials" {
		writeError(ctx, fasthttp.StatusNotFound, "Not found.")
		return true
	}
	if _, err := a.cfg.Store.Cache(id); err != nil {
		a.storeError(ctx, err)
		return true
	}
	creds := parts[3:]
	switch {
	case len(creds) == 0 && method == "GET":
		a.listCreds(ctx, id)
	case len(creds) == 0 && method == "POST":
		a.createCred(ctx, id)
	case len(creds) == 1 && (method == "PATCH" || method == "POST"):
		a.withCred(ctx, id, creds[0], a.patchCred)
	case len(creds) == 1 && method == "DELETE",
		len(creds) == 2 && creds[0] == "primary" && method == "DELETE":
		a.withCred(ctx, id, creds[len(creds)-1], a.deleteCred)
	case len(creds) == 2 && creds[0] == "primary" && method == "POST":
		a.withCred(ctx, id, creds[1], a.promoteCred)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "Not found.")
	}
	return true
}

// authorized checks the bearer token.
func (a *Admin) authorized(ctx *fasthttp.RequestCtx) bool { return bearerOK(ctx, a.cfg.Token) }

// bearerOK checks a request's bearer token against token in constant
// time; an empty token admits nobody.
func bearerOK(ctx *fasthttp.RequestCtx, token string) bool {
	if token == "" {
		return false
	}
	got, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, errors.New("bad id")
	}
	return uint32(n), nil
}

func (a *Admin) listCaches(ctx *fasthttp.RequestCtx) {
	caches, err := a.cfg.Store.Caches()
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	out := make([]CacheInfo, 0, len(caches))
	for _, c := range caches {
		out = append(out, a.cacheView(c))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (a *Admin) showCache(ctx *fasthttp.RequestCtx, id uint32) {
	c, err := a.cfg.Store.Cache(id)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, a.cacheView(c))
}

func (a *Admin) createCache(ctx *fasthttp.RequestCtx) {
	var req struct {
		Name          string `json:"name"`
		MemoryLimitMB *int64 `json:"memory_limit_mb"`
		Dev           bool   `json:"dev"`
	}
	if !decode(ctx, &req) {
		return
	}
	if req.MemoryLimitMB == nil || *req.MemoryLimitMB <= 0 || *req.MemoryLimitMB > 1<<30 {
		writeError(ctx, fasthttp.StatusBadRequest, "memory_limit_mb must be a positive number of MiB")
		return
	}
	c, err := a.cfg.Store.CreateCache(control.Cache{Name: req.Name, LimitBytes: *req.MemoryLimitMB << 20, Enabled: true, Dev: req.Dev})
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	cred, password, err := a.cfg.Store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	if err != nil {
		// Do not leave a cache nobody can use.
		if derr := a.cfg.Store.DeleteCache(c.ID); derr != nil {
			a.log.Error("removing a cache whose credential failed", "cache", c.ID, "err", derr)
		}
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, map[string]any{
		"cache_id": c.ID, "name": c.Name, "memory_limit": c.LimitBytes,
		"servers": a.cfg.Servers, "username": cred.Username, "password": password,
	})
}

func (a *Admin) patchCache(ctx *fasthttp.RequestCtx, id uint32) {
	var req struct {
		MemoryLimitMB *int64  `json:"memory_limit_mb"`
		Enabled       *bool   `json:"enabled"`
		Name          *string `json:"name"`
		Dev           *bool   `json:"dev"`
	}
	if !decode(ctx, &req) {
		return
	}
	u := control.CacheUpdate{Enabled: req.Enabled, Name: req.Name, Dev: req.Dev}
	if req.MemoryLimitMB != nil {
		if *req.MemoryLimitMB <= 0 || *req.MemoryLimitMB > 1<<30 {
			writeError(ctx, fasthttp.StatusBadRequest, "memory_limit_mb must be a positive number of MiB")
			return
		}
		n := *req.MemoryLimitMB << 20
		u.LimitBytes = &n
	}
	c, err := a.cfg.Store.UpdateCache(id, u)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, a.cacheView(c))
}

func (a *Admin) deleteCache(ctx *fasthttp.RequestCtx, id uint32) {
	if err := a.cfg.Store.DeleteCache(id); err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"deleted": id})
}

func (a *Admin) listCreds(ctx *fasthttp.RequestCtx, cacheID uint32) {
	creds, err := a.cfg.Store.Credentials(cacheID)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	out := make([]CredentialInfo, 0, len(creds))
	for _, c := range creds {
		out = append(out, credView(c, ""))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// capsRequest is the body that sets capabilities; absent fields mean
// "allowed" on creation and "unchanged" on update.
type capsRequest struct {
	Write   *bool `json:"write"`
	Flush   *bool `json:"flush"`
	API     *bool `json:"api"`
	Primary bool  `json:"primary"`
}

func (r capsRequest) apply(caps control.Capabilities) control.Capabilities {
	set := func(p *bool, c control.Capabilities) {
		if p == nil {
			return
		}
		if *p {
			caps |= c
		} else {
			caps &^= c
		}
	}
	set(r.Write, control.CapWrite)
	set(r.Flush, control.CapFlush)
	set(r.API, control.CapAPI)
	return caps
}

// credRequest is the admin API's body for creating or changing a
// credential: capabilities as capsRequest has them, and the client
// certificate bound to it. A nil certificate field is unchanged (none, on
// creation); an empty one clears that half of the binding.
type credRequest struct {
	capsRequest
	CertSHA256 *string `json:"cert_sha256"`
	CertCN     *string `json:"cert_cn"`
}

// binding is the certificate binding r asks a new credential for.
func (r credRequest) binding() control.CertBinding {
	var b control.CertBinding
	if r.CertSHA256 != nil {
		b.SHA256 = *r.CertSHA256
	}
	if r.CertCN != nil {
		b.CN = *r.CertCN
	}
	return b
}

func (a *Admin) createCred(ctx *fasthttp.RequestCtx, cacheID uint32) {
	var req credRequest
	if len(ctx.PostBody()) > 0 && !decode(ctx, &req) {
		return
	}
	n := control.NewCredential{Caps: req.apply(control.CapAll), Primary: req.Primary, Cert: req.binding()}
	cred, password, err := a.cfg.Store.CreateCredential(cacheID, n)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, credView(cred, password))
}

// withCred finds credential ref (an id or a username) of cache cacheID and
// runs fn on it; a credential of another cache is not found.
func (a *Admin) withCred(ctx *fasthttp.RequestCtx, cacheID uint32, ref string, fn func(*fasthttp.RequestCtx, control.Credential)) {
	cred, err := lookupCredential(a.cfg.Store, cacheID, ref)
	if err != nil {
		if errors.Is(err, control.ErrNotFound) {
			writeError(ctx, fasthttp.StatusNotFound, "No credential found.")
			return
		}
		a.storeError(ctx, err)
		return
	}
	fn(ctx, cred)
}

// lookupCredential finds credential ref (an id or a username) of cache
// cacheID; a credential of another cache is not found.
func lookupCredential(store control.Store, cacheID uint32, ref string) (control.Credential, error) {
	// A username of hex digits may also read as an id: try both.
	if id, err := parseID(ref); err == nil {
		if cred, err := store.Credential(id); err == nil && cred.CacheID == cacheID {
			return cred, nil
		}
	}
	cred, err := store.CredentialByUsername(ref)
	if err == nil && cred.CacheID != cacheID {
		err = fmt.Errorf("credential %q of cache %d: %w", ref, cacheID, control.ErrNotFound)
	}
	return cred, err
}

func (a *Admin) patchCred(ctx *fasthttp.RequestCtx, cred control.Credential) {
	var req credRequest
	if !decode(ctx, &req) {
		return
	}
	u := control.CredentialUpdate{Caps: new(req.apply(cred.Caps)), CertSHA256: req.CertSHA256, CertCN: req.CertCN}
	cred, err := a.cfg.Store.UpdateCredential(cred.ID, u)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, credView(cred, ""))
}

func (a *Admin) promoteCred(ctx *fasthttp.RequestCtx, cred control.Credential) {
	cred, err := a.cfg.Store.Promote(cred.ID)
	if err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, credView(cred, ""))
}

func (a *Admin) deleteCred(ctx *fasthttp.RequestCtx, cred control.Credential) {
	if err := a.cfg.Store.DeleteCredential(cred.ID); err != nil {
		a.storeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"deleted": cred.ID})
}

// storeError maps a Store error to its HTTP answer.
func (a *Admin) storeError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, control.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "No cache found.")
	case errors.Is(err, control.ErrInvalid):
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
	case errors.Is(err, control.ErrExists), errors.Is(err, control.ErrOverCommit), errors.Is(err, control.ErrLastPrimary):
		writeError(ctx, fasthttp.StatusConflict, err.Error())
	default:
		a.log.Error("admin API", "path", string(ctx.Path()), "err", err)
		writeError(ctx, fasthttp.StatusInternalServerError, "Server error")
	}
}

func decode(ctx *fasthttp.RequestCtx, v any) bool {
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func methodNotAllowed(ctx *fasthttp.RequestCtx) {
	writeError(ctx, fasthttp.StatusMethodNotAllowed, "Method not allowed.")
}

func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	writeJSON(ctx, status, map[string]string{"error": msg})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, []byte(`{"error":"Server error"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// HTTPServer is a running fasthttp server.
type HTTPServer struct {
	srv  *fasthttp.Server
	ln   net.Listener
	done chan struct{}
}

// ListenAndServe binds addr (so that a bind error is returned here) and
// serves h in the background.
func ListenAndServe(addr string, h fasthttp.RequestHandler) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &HTTPServer{
		srv: &fasthttp.Server{
			Handler:            h,
			Name:               "memhive",
			ReadTimeout:        30 * time.Second,
			WriteTimeout:       30 * time.Second,
			IdleTimeout:        2 * time.Minute,
			MaxRequestBodySize: 1 << 20,
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *HTTPServer) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting and waits for open requests to finish.
func (s *HTTPServer) Shutdown() error {
	err := s.srv.Shutdown()
	<-s.done
	return err
}
