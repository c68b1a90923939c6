package analytics

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// Source is what the analytics API reads of the running caches: their
// per-cache statistics, and the one action it takes on them. A node's
// tenancy.Tenants is its Source.
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
	// memcache address) and is the servers of a single node's caches. In
	// a cluster it defaults to Self.Advertise.
	Server string
	// Nodes reaches the nodes that hold a cache, for stats, history and
	// flush; nil means this process alone: LocalNode{Source, Server,
	// Store}.
	Nodes Nodes
	// Cluster, when not nil, is the cluster this node belongs to: stats,
	// history and flush ask every live member (ClusterNodes, unless Nodes
	// is set), a cache's servers are the live members (ServerList), and
	// Handle also serves the internal endpoints the other nodes call
	// (/cluster/v1/...) to requests carrying Cluster.Secret(). Nil is a
	// single node, which answers as it always has and serves no internal
	// endpoint.
	Cluster control.Cluster
	// Self is this node as a member of Cluster: its Name (which member is
	// answered locally) and Advertise (its key in answers). Unused
	// without Cluster.
	Self control.Member
	// HistoryWindow is how far back history answers reach (the retention).
	HistoryWindow time.Duration
	Logger        *slog.Logger
}

// API serves MemCachier's analytics API, /api/v1/..., to credentials with
// the api capability. The dashboard uses nothing else.
//
// Every endpoint of MemCachier's guide answers only the statuses and
// bodies of its table there: 200 with the documented JSON, 403 "You are
// not authorized to perform this action." (no credential, a wrong one,
// one without the capability, another cache's id or credential, or a
// refused change), 404 "No cache found." (login only), 500 "Server
// error" or, where the guide says so (stats, flush), "Server error:
// host:port,..." naming the nodes that failed; history answers so too,
// since in a cluster it gathers every node's samples. Where memhive goes
// beyond the guide it adds rows of its own, in the guide's style (a JSON
// string): 503 msgUnavailable when the control plane cannot be reached
// (control.ErrUnavailable), 400 "Bad request: ..." for parameters it
// cannot read, and, for a credential's client certificate, 409
// "Conflict: ..." when the fingerprint (cert_sha256) is bound to another
// credential and 403 "Forbidden: ..." (msgCertCN) for any request that
// names cert_cn.
//
// A tenant binds fingerprints only. A CN binding (cert_cn) names an
// identity in the operator's CA (--tls-ca), so it is the operator's to
// give, through the admin API or the CLI: were tenants to claim CNs
// first come, first served, one tenant could take the CN another's
// certificates carry, predictable as CNs are, and those clients would
// log in to its cache. The API still shows the CN the operator bound.
type API struct {
	cfg         APIConfig
	log         *slog.Logger
	credentials credentialOps
	// peers serves the internal endpoints; nil on a single node.
	peers *peerEndpoints
}

// NewAPI makes the analytics API.
func NewAPI(cfg APIConfig) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HistoryWindow == 0 {
		cfg.HistoryWindow = 7 * 24 * time.Hour
	}
	if cfg.Cluster != nil && cfg.Server == "" {
		cfg.Server = cfg.Self.Advertise
	}
	local := LocalNode{Source: cfg.Source, Name: cfg.Server, Store: cfg.Store, Logger: cfg.Logger}
	a := &API{log: cfg.Logger}
	if cfg.Cluster != nil {
		if cfg.Self.Advertise != "" {
			local.Name = cfg.Self.Advertise
		}
		a.peers = &peerEndpoints{cluster: cfg.Cluster, local: local}
		if cfg.Nodes == nil {
			cfg.Nodes = ClusterNodes{Cluster: cfg.Cluster, Self: cfg.Self.Name, Local: local}
		}
	}
	if cfg.Nodes == nil {
		cfg.Nodes = local
	}
	a.cfg = cfg
	// A creation answers 200, not 201: the guide's table says 200.
	a.credentials = credentialOps{store: cfg.Store, dialect: apiDialect{a}, createdStatus: fasthttp.StatusOK}
	return a
}

// The answers MemCachier's API gives, as JSON strings.
const (
	msgForbidden = "You are not authorized to perform this action."
	msgNoCache   = "No cache found."
	msgServer    = "Server error"
	// msgCertCN refuses a request that sets or clears cert_cn: a row of
	// memhive's own, so in the style of its 400 and 409 rows (the
	// status's name, then why), where the guide's bare 403 would leave a
	// tenant guessing what was refused.
	msgCertCN = "Forbidden: a certificate CN binding is set by the server's operator (admin API)."
)

// apiCredential is a credential as MemCachier's API lists it (list,
// promote) and, with its password, as it answers a creation. memhive
// adds the client certificate bound to it (CertSHA256, CertCN) after the
// guide's fields, and only when one is, so an unbound credential reads
// exactly as the guide shows it.
type apiCredential struct {
	CacheID  uint32 `json:"cache_id"`
	Flush    bool   `json:"flush_capability"`
	ID       uint32 `json:"id"`
	Username string `json:"sasl_username"`
	Password string `json:"sasl_password,omitempty"`
	// UUID is always null: MemCachier's credentials carry one for hosted
	// platforms, memhive's have none, and clients written against the
	// guide may expect the field.
	UUID    *string `json:"uuid"`
	Write   bool    `json:"write_capability"`
	API     bool    `json:"api_capability"`
	Primary bool    `json:"primary"`
	// CertSHA256 and CertCN are control.CertBinding's: the certificate's
	// fingerprint (lower-case hex) and the subject CN that log in as the
	// credential at a TLS handshake. Both are shown, though a tenant sets
	// only the fingerprint: the CN is what the operator bound.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	CertCN     string `json:"cert_cn,omitempty"`
}

func apiCred(c control.Credential, password string) apiCredential {
	return apiCredential{
		CacheID: c.CacheID, ID: c.ID, Username: c.Username, Password: password,
		Write: c.Caps&control.CapWrite != 0, Flush: c.Caps&control.CapFlush != 0, API: c.Caps&control.CapAPI != 0,
		Primary: c.Primary, CertSHA256: c.Cert.SHA256, CertCN: c.Cert.CN,
	}
}

// apiCapabilityView is what an update answers: the credential's
// capabilities, as in the guide, and memhive's certificate binding when
// the credential has one (so an unbound credential's answer is the
// guide's exactly).
type apiCapabilityView struct {
	Flush      bool   `json:"flush_capability"`
	Write      bool   `json:"write_capability"`
	API        bool   `json:"api_capability"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
	CertCN     string `json:"cert_cn,omitempty"`
}

// capParam is a capability as a request gives it: JSON true or false, or
// the strings "true" and "false", which the guide's own example sends
// (-d '{"flush_capability":"false"}').
type capParam bool

// UnmarshalJSON accepts true, false, "true" and "false".
func (p *capParam) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `true`, `"true"`:
		*p = true
	case `false`, `"false"`:
		*p = false
	default:
		return fmt.Errorf("%s is not true or false", b)
	}
	return nil
}

func parseCap(s string) (bool, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// presence records that a request names a field, whatever its value
// (even JSON null or ""): for a field a tenant may not touch, naming it is
// already the request to refuse.
type presence bool

// UnmarshalJSON records the field, whatever its value.
func (p *presence) UnmarshalJSON([]byte) error {
	*p = true
	return nil
}

// apiCapabilities sets capabilities; absent fields are left as they are
// (on creation: allowed). memhive adds the fingerprint of the client
// certificate bound to the credential: absent (or JSON null) leaves it as
// it is, none on creation; empty clears it. CertCN only records that the
// request names cert_cn, which the API refuses (msgCertCN).
type apiCapabilities struct {
	Write      *capParam `json:"write_capability"`
	Flush      *capParam `json:"flush_capability"`
	API        *capParam `json:"api_capability"`
	CertSHA256 *string   `json:"cert_sha256"`
	CertCN     presence  `json:"cert_cn"`
}

// change is the change r asks for. It leaves the CN half of the binding
// as it is: a request naming cert_cn is refused before this, and
// unbinding the fingerprint keeps the CN the operator bound.
func (r apiCapabilities) change() credentialChange {
	b := func(p *capParam) *bool {
		if p == nil {
			return nil
		}
		v := bool(*p)
		return &v
	}
	return credentialChange{write: b(r.Write), flush: b(r.Flush), api: b(r.API), certSHA256: r.CertSHA256}
}

// capabilitiesOf reads the capabilities a create or update request sets,
// wherever a MemCachier client may put them: the guide calls them query
// parameters, and its example sends a JSON body as a form post (curl -d).
// So: query parameters, then the body as JSON if it is an object, else as
// form parameters. Unknown JSON fields are refused; unknown query and
// form parameters, which URLs often carry, are ignored. The certificate
// fields (cert_sha256, cert_cn) come the same ways; cert_cn is only
// noted, to be refused.
func capabilitiesOf(ctx *fasthttp.RequestCtx) (apiCapabilities, error) {
	var req apiCapabilities
	fields := []struct {
		name string
		dst  **capParam
	}{
		{"write_capability", &req.Write}, {"flush_capability", &req.Flush}, {"api_capability", &req.API},
	}
	params := func(args *fasthttp.Args) error {
		for _, f := range fields {
			if !args.Has(f.name) {
				continue
			}
			v, err := parseCap(string(args.Peek(f.name)))
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			p := capParam(v)
			*f.dst = &p
		}
		if args.Has("cert_sha256") {
			v := string(args.Peek("cert_sha256"))
			req.CertSHA256 = &v
		}
		if args.Has("cert_cn") {
			req.CertCN = true
		}
		return nil
	}
	if err := params(ctx.QueryArgs()); err != nil {
		return req, err
	}
	body := strings.TrimSpace(string(ctx.PostBody()))
	switch {
	case body == "":
	case body[0] == '{':
		var fromBody apiCapabilities
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fromBody); err != nil {
			return req, err
		}
		for i, p := range []*capParam{fromBody.Write, fromBody.Flush, fromBody.API} {
			if p != nil {
				*fields[i].dst = p
			}
		}
		if fromBody.CertSHA256 != nil {
			req.CertSHA256 = fromBody.CertSHA256
		}
		req.CertCN = req.CertCN || fromBody.CertCN
	default:
		var form fasthttp.Args
		form.Parse(body)
		if err := params(&form); err != nil {
			return req, err
		}
	}
	return req, nil
}

// Handle answers the request if its path is under /api/v1/ (or is the
// guide's /api/login) and reports whether it did.
//
// In a cluster it also answers the internal endpoints under /cluster/v1/
// (see ClusterNodes), which refuse any request without the cluster
// secret; on a single node those paths are not its own.
func (a *API) Handle(ctx *fasthttp.RequestCtx) bool {
	path := string(ctx.Path())
	if rest, ok := strings.CutPrefix(path, clusterPrefix); ok {
		if a.peers == nil {
			return false
		}
		a.peers.handle(ctx, rest)
		return true
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		// The guide's "HTTP Request" line for login omits the version.
		if path != "/api/login" {
			return false
		}
		rest = "login"
	}
	cred, ok := a.authenticate(ctx)
	if !ok {
		writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
		return true
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	method := string(ctx.Method())
	if parts[0] == "login" && len(parts) == 1 {
		a.login(ctx, cred)
		return true
	}
	id, err := parseID(parts[0])
	if err != nil || id != cred.CacheID {
		// Another cache's id is forbidden, whether or not it exists, and
		// so is one that is not a number: no table but login's has a 404.
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
		a.flush(ctx, cred, id)
	case action == "settings" && method == "POST":
		a.settings(ctx, id)
	case len(parts) > 1 && parts[1] == "credentials":
		if !a.credentials.serve(ctx, id, method, parts[2:]) {
			writeJSON(ctx, fasthttp.StatusNotFound, "Not found.")
		}
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

// fail maps a store error to the rows of the guide's tables. Past login,
// something missing (the cache or credential went away meanwhile) is
// refused like another cache's, and so is deleting a primary credential
// that still has others; anything else is the server's fault, but for a
// shared store that cannot be reached (control.ErrUnavailable): a row of
// memhive's own, 503 msgUnavailable, since nothing is wrong with the
// request or the server and the same request will succeed later.
func (a *API) fail(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, control.ErrUnavailable):
		a.log.Warn("analytics API: control plane unavailable", "path", string(ctx.Path()), "err", err)
		unavailable(ctx, func(msg string) any { return msg })
	case errors.Is(err, control.ErrNotFound), errors.Is(err, control.ErrLastPrimary):
		writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
	default:
		a.log.Error("analytics API", "path", string(ctx.Path()), "err", err)
		writeJSON(ctx, fasthttp.StatusInternalServerError, msgServer)
	}
}

// badRequest answers a request whose parameters cannot be read. The guide
// documents no such row; the answer keeps its style, a JSON string.
func badRequest(ctx *fasthttp.RequestCtx, err error) {
	writeJSON(ctx, fasthttp.StatusBadRequest, "Bad request: "+err.Error())
}

// certCNForbidden answers a request that names cert_cn (msgCertCN).
func certCNForbidden(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusForbidden, msgCertCN)
}

// certFailed answers a certificate binding the store refused: malformed
// (400, as other unreadable parameters) or bound to another credential
// (409). The store's own text names that credential, which may be another
// tenant's, so the conflict is told again from what this cache may see:
// its own credential by name, another cache's only as such. Any other
// error goes to fail.
func (a *API) certFailed(ctx *fasthttp.RequestCtx, cacheID, self uint32, b control.CertBinding, err error) {
	switch {
	case errors.Is(err, control.ErrInvalid):
		badRequest(ctx, err)
	case errors.Is(err, control.ErrExists):
		creds, lerr := a.cfg.Store.Credentials(cacheID)
		if lerr != nil {
			a.fail(ctx, lerr)
			return
		}
		writeJSON(ctx, fasthttp.StatusConflict, "Conflict: "+certConflict(creds, self, b.SHA256)+".")
	default:
		a.fail(ctx, err)
	}
}

// certConflict says which credential of creds (other than self) holds
// fingerprint fp, or that one of another cache does. Only the fingerprint
// can clash: a tenant's request sets no CN, and the CN it keeps is self's.
func certConflict(creds []control.Credential, self uint32, fp string) string {
	fp, err := control.ParseFingerprint(fp)
	if err != nil {
		// The store refused something else as bound elsewhere; say no more
		// than that.
		return "this certificate is bound to another credential"
	}
	for _, c := range creds {
		if c.ID != self && c.Cert.SHA256 == fp {
			return fmt.Sprintf("certificate %s is bound to credential %s", fp, c.Username)
		}
	}
	return "certificate " + fp + " is bound to a credential of another cache"
}

func (a *API) login(ctx *fasthttp.RequestCtx, cred control.Credential) {
	if _, err := a.cfg.Store.Cache(cred.CacheID); err != nil {
		if errors.Is(err, control.ErrNotFound) {
			writeJSON(ctx, fasthttp.StatusNotFound, msgNoCache)
			return
		}
		a.fail(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]uint32{"cache_id": cred.CacheID})
}

func (a *API) info(ctx *fasthttp.RequestCtx, c control.Cache) {
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"cache_id": c.ID, "name": c.Name, "enabled": c.Enabled, "dev": c.Dev,
		"memory_limit": c.LimitBytes, "plan": c.Plan, "servers": a.servers(),
	})
}

// servers is the memcache address list of every cache: this node's, or
// in a cluster the live members', which changes as nodes join and leave.
func (a *API) servers() string {
	if a.cfg.Cluster != nil {
		return clusterServers(a.cfg.Cluster, a.cfg.Server)
	}
	return a.cfg.Server
}

func (a *API) stats(ctx *fasthttp.RequestCtx, id uint32) {
	byNode, failed := a.cfg.Nodes.Stats(id)
	if len(failed) > 0 {
		a.log.Warn("analytics API: stats not gathered", "cache", id, "nodes", failed)
		writeJSON(ctx, fasthttp.StatusInternalServerError, serverError(failed))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, byNode)
}

func (a *API) flush(ctx *fasthttp.RequestCtx, cred control.Credential, id uint32) {
	if cred.Caps&control.CapFlush == 0 {
		writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
		return
	}
	if failed := a.cfg.Nodes.Flush(id); len(failed) > 0 {
		a.log.Warn("analytics API: flush failed", "cache", id, "nodes", failed)
		writeJSON(ctx, fasthttp.StatusInternalServerError, serverError(failed))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, "")
}

// historyEntry is one sample as MemCachier's API shows it: the cache id
// and the timestamp (unix milliseconds) are JSON strings there.
type historyEntry struct {
	MemcachierID string            `json:"memcachier_id"`
	Server       string            `json:"server"`
	Stats        map[string]uint64 `json:"stats"`
	Timestamp    string            `json:"timestamp"`
}

// history answers every node's samples merged, oldest first, each with
// its node as server; a node that fails is named as stats names it.
func (a *API) history(ctx *fasthttp.RequestCtx, id uint32) {
	samples, failed := a.cfg.Nodes.History(id, time.Now().Add(-a.cfg.HistoryWindow))
	if len(failed) > 0 {
		a.log.Warn("analytics API: history not gathered", "cache", id, "nodes", failed)
		writeJSON(ctx, fasthttp.StatusInternalServerError, serverError(failed))
		return
	}
	out := make([]historyEntry, 0, len(samples))
	for _, s := range samples {
		out = append(out, historyEntry{
			MemcachierID: strconv.FormatUint(uint64(s.CacheID), 10),
			Server:       s.Server,
			Stats:        s.Stats,
			Timestamp:    strconv.FormatInt(s.Time.UnixMilli(), 10),
		})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (a *API) settings(ctx *fasthttp.RequestCtx, id uint32) {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(ctx, err)
		return
	}
	c, err := a.cfg.Store.UpdateCache(id, control.CacheUpdate{Enabled: req.Enabled})
	if err != nil {
		a.fail(ctx, err)
		return
	}
	a.info(ctx, c)
}

// apiDialect is the analytics API's credentialDialect: the guide's
// parameters (capabilitiesOf), its views and strings, and the tenant's
// limits: cert_cn refused, and a conflict told without naming another
// cache's credential.
type apiDialect struct{ a *API }

// parse reads the guide's parameters, creating or not, and refuses any
// request that names cert_cn (msgCertCN).
func (apiDialect) parse(ctx *fasthttp.RequestCtx, _ bool) (credentialChange, bool) {
	req, err := capabilitiesOf(ctx)
	if err != nil {
		badRequest(ctx, err)
		return credentialChange{}, false
	}
	if req.CertCN {
		certCNForbidden(ctx)
		return credentialChange{}, false
	}
	return req.change(), true
}

func (apiDialect) view(c control.Credential, password string) any { return apiCred(c, password) }

// updated is the credential's capabilities, as the guide answers an
// update, and its certificate binding if any (the operator's CN too: an
// unbind of the fingerprint keeps it).
func (apiDialect) updated(c control.Credential) any {
	return apiCapabilityView{
		Flush: c.Caps&control.CapFlush != 0, Write: c.Caps&control.CapWrite != 0, API: c.Caps&control.CapAPI != 0,
		CertSHA256: c.Cert.SHA256, CertCN: c.Cert.CN,
	}
}

func (apiDialect) deleted(control.Credential) any { return "" }

// noCredential refuses a path naming no credential of this cache as one
// naming another cache is refused: 403.
func (apiDialect) noCredential(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusForbidden, msgForbidden)
}

func (d apiDialect) refused(ctx *fasthttp.RequestCtx, cacheID, self uint32, ch credentialChange, err error) {
	var fp string
	if ch.certSHA256 != nil {
		fp = *ch.certSHA256
	}
	d.a.certFailed(ctx, cacheID, self, control.CertBinding{SHA256: fp}, err)
}

func (d apiDialect) failed(ctx *fasthttp.RequestCtx, err error) { d.a.fail(ctx, err) }
