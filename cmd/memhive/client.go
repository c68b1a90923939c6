package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
)

// directBackend changes the store itself: no server holds it.
type directBackend struct {
	store   control.Store
	servers string
}

func (d *directBackend) CreateCache(name string, limit int64, dev bool) (control.Cache, string, string, error) {
	c, err := d.store.CreateCache(control.Cache{Name: name, LimitBytes: limit, Enabled: true, Dev: dev})
	if err != nil {
		return c, "", "", err
	}
	cred, pass, err := d.store.CreateCredential(c.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	if err != nil {
		d.store.DeleteCache(c.ID)
		return c, "", "", err
	}
	return c, cred.Username, pass, nil
}

func (d *directBackend) Caches() ([]control.Cache, error)       { return d.store.Caches() }
func (d *directBackend) Cache(id uint32) (control.Cache, error) { return d.store.Cache(id) }
func (d *directBackend) DeleteCache(id uint32) error            { return d.store.DeleteCache(id) }
func (d *directBackend) Servers() string                        { return d.servers }
func (d *directBackend) Close() error                           { return d.store.Close() }
func (d *directBackend) Credentials(id uint32) ([]control.Credential, error) {
	return d.store.Credentials(id)
}
func (d *directBackend) UpdateCache(id uint32, u control.CacheUpdate) (control.Cache, error) {
	return d.store.UpdateCache(id, u)
}
func (d *directBackend) CreateCredential(cacheID uint32, n control.NewCredential) (control.Credential, string, error) {
	return d.store.CreateCredential(cacheID, n)
}
func (d *directBackend) UpdateCredential(_, id uint32, u control.CredentialUpdate) (control.Credential, error) {
	return d.store.UpdateCredential(id, u)
}
func (d *directBackend) Promote(_, id uint32) (control.Credential, error) { return d.store.Promote(id) }
func (d *directBackend) DeleteCredential(_, id uint32) error              { return d.store.DeleteCredential(id) }

// remoteBackend goes through a running server's admin API. servers is
// the server list to print; empty means the server's own answer (see
// Servers).
type remoteBackend struct {
	base, token, servers string
	client               *http.Client
}

func newRemoteBackend(addr, token, servers string) *remoteBackend {
	return &remoteBackend{base: "http://" + addr, token: token, servers: servers, client: &http.Client{Timeout: 30 * time.Second}}
}

// call sends a request with a JSON body (nil: none) and decodes a 2xx
// answer into out; any other answer becomes an error with its message.
func (r *remoteBackend) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = string(raw)
		}
		return fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func credentialOf(c analytics.CredentialInfo, cacheID uint32) control.Credential {
	return control.Credential{ID: c.ID, CacheID: cacheID, Username: c.Username, Primary: c.Primary, Caps: c.Caps(), Cert: c.Cert()}
}

func capsBody(caps control.Capabilities) map[string]bool {
	return map[string]bool{"write": caps&control.CapWrite != 0, "flush": caps&control.CapFlush != 0, "api": caps&control.CapAPI != 0}
}

func (r *remoteBackend) CreateCache(name string, limit int64, dev bool) (control.Cache, string, string, error) {
	var res struct {
		CacheID  uint32 `json:"cache_id"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := r.call("POST", "/admin/v1/caches", map[string]any{"name": name, "memory_limit_mb": limit >> 20, "dev": dev}, &res); err != nil {
		return control.Cache{}, "", "", err
	}
	c, err := r.Cache(res.CacheID)
	return c, res.Username, res.Password, err
}

func (r *remoteBackend) Caches() ([]control.Cache, error) {
	var res []analytics.CacheInfo
	if err := r.call("GET", "/admin/v1/caches", nil, &res); err != nil {
		return nil, err
	}
	out := make([]control.Cache, 0, len(res))
	for _, c := range res {
		out = append(out, c.Cache())
	}
	return out, nil
}

func (r *remoteBackend) Cache(id uint32) (control.Cache, error) {
	var res analytics.CacheInfo
	err := r.call("GET", fmt.Sprintf("/admin/v1/caches/%d", id), nil, &res)
	return res.Cache(), err
}

func (r *remoteBackend) UpdateCache(id uint32, u control.CacheUpdate) (control.Cache, error) {
	body := map[string]any{}
	if u.LimitBytes != nil {
		body["memory_limit_mb"] = *u.LimitBytes >> 20
	}
	if u.Enabled != nil {
		body["enabled"] = *u.Enabled
	}
	if u.Name != nil {
		body["name"] = *u.Name
	}
	if u.Dev != nil {
		body["dev"] = *u.Dev
	}
	var res analytics.CacheInfo
	err := r.call("PATCH", fmt.Sprintf("/admin/v1/caches/%d", id), body, &res)
	return res.Cache(), err
}

func (r *remoteBackend) DeleteCache(id uint32) error {
	return r.call("DELETE", fmt.Sprintf("/admin/v1/caches/%d", id), nil, nil)
}

func (r *remoteBackend) CreateCredential(cacheID uint32, n control.NewCredential) (control.Credential, string, error) {
	body := map[string]any{"primary": n.Primary}
	for k, v := range capsBody(n.Caps) {
		body[k] = v
	}
	if n.Cert.SHA256 != "" {
		body["cert_sha256"] = n.Cert.SHA256
	}
	if n.Cert.CN != "" {
		body["cert_cn"] = n.Cert.CN
	}
	var res analytics.CredentialInfo
	err := r.call("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", cacheID), body, &res)
	return credentialOf(res, cacheID), res.Password, err
}

func (r *remoteBackend) Credentials(cacheID uint32) ([]control.Credential, error) {
	var res []analytics.CredentialInfo
	if err := r.call("GET", fmt.Sprintf("/admin/v1/caches/%d/credentials", cacheID), nil, &res); err != nil {
		return nil, err
	}
	out := make([]control.Credential, 0, len(res))
	for _, c := range res {
		out = append(out, credentialOf(c, cacheID))
	}
	return out, nil
}

// UpdateCredential sends what u changes, in one PATCH that the server
// applies whole or not at all.
func (r *remoteBackend) UpdateCredential(cacheID, id uint32, u control.CredentialUpdate) (control.Credential, error) {
	body := map[string]any{}
	if u.Caps != nil {
		for k, v := range capsBody(*u.Caps) {
			body[k] = v
		}
	}
	if u.CertSHA256 != nil {
		body["cert_sha256"] = *u.CertSHA256
	}
	if u.CertCN != nil {
		body["cert_cn"] = *u.CertCN
	}
	var res analytics.CredentialInfo
	err := r.call("PATCH", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", cacheID, id), body, &res)
	return credentialOf(res, cacheID), err
}

func (r *remoteBackend) Promote(cacheID, id uint32) (control.Credential, error) {
	var res analytics.CredentialInfo
	err := r.call("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials/primary/%d", cacheID, id), nil, &res)
	return credentialOf(res, cacheID), err
}

func (r *remoteBackend) DeleteCredential(cacheID, id uint32) error {
	return r.call("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", cacheID, id), nil, nil)
}

// Servers is the server list clients use. Unless the caller knew it, it
// is the one the server answers for its caches (in a cluster, the live
// nodes), asked once; "" if it cannot be had.
func (r *remoteBackend) Servers() string {
	if r.servers != "" {
		return r.servers
	}
	var res []analytics.CacheInfo
	if err := r.call("GET", "/admin/v1/caches", nil, &res); err == nil {
		for _, c := range res {
			if c.Servers != "" {
				r.servers = c.Servers
				break
			}
		}
	}
	return r.servers
}

func (r *remoteBackend) Close() error { return nil }
