// Package analytics serves memhive's HTTP endpoints with fasthttp: the
// admin API (this file), and the dashboard, analytics API and metrics.
package analytics

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
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
	// Servers is the memcache address list clients of a cache use, on a
	// single node; in a cluster, what is shown until the member list is
	// known.
	Servers string
	// Cluster, when not nil, makes the servers shown the live members'
	// Advertise addresses in name order (ServerList), read at each
	// request, so that they follow nodes joining and leaving. Nil is a
	// single node: Servers.
	Cluster control.Cluster
	Logger  *slog.Logger
}

// Admin serves /admin/v1/... and /healthz.
type Admin struct {
	cfg         AdminConfig
	log         *slog.Logger
	credentials credentialOps
}

// NewAdmin makes the admin API.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Admin{cfg: cfg, log: cfg.Logger}
	a.credentials = credentialOps{store: cfg.Store, dialect: adminDialect{a}, createdStatus: fasthttp.StatusCreated}
	return a
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
	return CacheInfo{c.ID, c.Name, c.Plan, c.LimitBytes, c.Enabled, c.Dev, c.Created, c.LastActive, a.servers()}
}

// servers is the memcache address list of every cache, as it is now.
func (a *Admin) servers() string {
	if a.cfg.Cluster != nil {
		return clusterServers(a.cfg.Cluster, a.cfg.Servers)
	}
	return a.cfg.Servers
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
	if !a.credentials.serve(ctx, id, method, parts[3:]) {
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
		"servers": a.servers(), "username": cred.Username, "password": password,
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

// adminDialect is the admin API's credentialDialect: JSON bodies
// (credRequest), CredentialInfo answers, and storeError's error objects.
type adminDialect struct{ a *Admin }

// capsRequest is the body that sets capabilities; absent fields mean
// "allowed" on creation and "unchanged" on update.
type capsRequest struct {
	Write   *bool `json:"write"`
	Flush   *bool `json:"flush"`
	API     *bool `json:"api"`
	Primary bool  `json:"primary"`
}

// credRequest is the admin API's body for creating or changing a
// credential: capabilities as capsRequest has them, and the client
// certificate bound to it. A nil certificate field is unchanged (none, on
// creation); an empty one clears that half of the binding. Its shape,
// names and embedding included, is part of the answers: a body that does
// not decode is answered with the decoder's error, which names the Go
// field (credRequest.capsRequest.write).
type credRequest struct {
	capsRequest
	CertSHA256 *string `json:"cert_sha256"`
	CertCN     *string `json:"cert_cn"`
}

// parse reads a credRequest; a creation may have no body at all.
func (adminDialect) parse(ctx *fasthttp.RequestCtx, creating bool) (credentialChange, bool) {
	var req credRequest
	if creating && len(ctx.PostBody()) == 0 {
		return credentialChange{}, true
	}
	if !decode(ctx, &req) {
		return credentialChange{}, false
	}
	return credentialChange{write: req.Write, flush: req.Flush, api: req.API, primary: req.Primary,
		certSHA256: req.CertSHA256, certCN: req.CertCN}, true
}

func (adminDialect) view(c control.Credential, password string) any { return credView(c, password) }

func (adminDialect) updated(c control.Credential) any { return credView(c, "") }

func (adminDialect) deleted(c control.Credential) any { return map[string]any{"deleted": c.ID} }

func (adminDialect) noCredential(ctx *fasthttp.RequestCtx) {
	writeError(ctx, fasthttp.StatusNotFound, "No credential found.")
}

// refused tells the store's own error: the operator may see which
// credential holds a certificate, whatever its cache.
func (d adminDialect) refused(ctx *fasthttp.RequestCtx, _, _ uint32, _ credentialChange, err error) {
	d.a.storeError(ctx, err)
}

func (d adminDialect) failed(ctx *fasthttp.RequestCtx, err error) { d.a.storeError(ctx, err) }

// storeError maps a Store error to its HTTP answer. A shared store that
// cannot be reached is 503 (msgUnavailable), not 500: the request was
// fine and nothing changed, so the client should retry it.
func (a *Admin) storeError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, control.ErrUnavailable):
		a.log.Warn("admin API: control plane unavailable", "path", string(ctx.Path()), "err", err)
		unavailable(ctx, func(msg string) any { return map[string]string{"error": msg} })
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

// msgUnavailable answers a request that needed the control plane while
// the shared store (etcd) cannot be reached: the change was not made.
const msgUnavailable = "Control plane unavailable: etcd cannot be reached; try again."

// retryAfter is the Retry-After of a 503: about the time a node takes to
// reconnect to etcd or see it come back.
const retryAfter = "2"

// unavailable answers 503 msgUnavailable, in the body shape each API
// uses for its errors (body).
func unavailable(ctx *fasthttp.RequestCtx, body func(msg string) any) {
	ctx.Response.Header.Set("Retry-After", retryAfter)
	writeJSON(ctx, fasthttp.StatusServiceUnavailable, body(msgUnavailable))
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
	// fasthttp closes only the listeners Serve has registered: called
	// before the serving goroutine got that far, its Shutdown does
	// nothing, and Serve would then accept forever. Closing the listener
	// here ends Serve either way.
	s.ln.Close()
	<-s.done
	return err
}
