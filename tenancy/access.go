package tenancy

import (
	"crypto/x509"

	"github.com/memhive/memhive/control"
)

// Capabilities is what a credential may do with its cache, as the request
// path checks it: a value read once per request (see
// Credential.Capabilities).
type Capabilities struct{ caps control.Capabilities }

// CanWrite reports whether storage commands may change the cache.
func (c Capabilities) CanWrite() bool { return c.caps&control.CapWrite != 0 }

// CanFlush reports whether flush_all may empty the cache.
func (c Capabilities) CanFlush() bool { return c.caps&control.CapFlush != 0 }

// Unrestricted reports whether no request may be denied (the credential
// may write and flush), so that the request path can skip its checks.
func (c Capabilities) Unrestricted() bool { return c.CanWrite() && c.CanFlush() }

// ClientCert is what a TLS client's certificate offers to log in with.
type ClientCert struct {
	fingerprint string // control.Fingerprint of the leaf certificate
	// cn is the leaf's subject CN, kept only when the server verified the
	// chain against its client CAs: otherwise anyone could claim any name.
	cn string
}

// NewClientCert describes leaf, the certificate a TLS client presented;
// verified says whether the server verified its chain against its client
// CAs, without which its subject CN logs nobody in.
func NewClientCert(leaf *x509.Certificate, verified bool) *ClientCert {
	pc := &ClientCert{fingerprint: control.Fingerprint(leaf.Raw)}
	if verified {
		pc.cn = leaf.Subject.CommonName
	}
	return pc
}

// Revoked reports whether a change in the control plane has cut off a
// connection using cache tn with credential u (nil in local mode), logged
// in with client certificate cert (nil for a password): the credential
// deleted or its certificate unbound, the cache disabled or deleted. A
// change is seen here from the moment it is recorded, before the applier
// has the connections closed. It allocates nothing.
func (t *Tenants) Revoked(tn *Cache, u *Credential, cert *ClientCert) bool {
	if tn == nil {
		return false
	}
	if tn.gone.Load() {
		return true
	}
	if t.Local() {
		return false
	}
	return !tn.enabled.Load() || (u != nil && (u.gone.Load() || cert != nil && !u.matches(cert)))
}

// OnRevoke sets fn to be called after every change that cuts connections
// off (see Revoked), on the applier's goroutine: the server closes them.
func (t *Tenants) OnRevoke(fn func()) { t.revoke.Store(&fn) }

// closeRevoked has the server close the connections changes cut off.
func (t *Tenants) closeRevoked() {
	if fn := t.revoke.Load(); fn != nil {
		(*fn)()
	}
}
