package analytics

import (
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/control"
)

// credentialOps serves a cache's credentials, .../credentials[/...], for
// both the admin API and the analytics API: which endpoint a path names,
// finding the credential it refers to, what a request asks the store to
// make or change, and the store call. How a request is read and how
// answers and errors are written is each API's own, its
// credentialDialect. Safe for concurrent use, as its store is.
type credentialOps struct {
	store   control.Store
	dialect credentialDialect
	// createdStatus is the status of a creation's answer: the admin API
	// says 201, the analytics API 200, as the guide's table does.
	createdStatus int
}

// credentialDialect is what one API does its own way around
// credentialOps: reading a create or update request, and writing the
// answers, successful or not.
type credentialDialect interface {
	// parse reads the change a creation (creating) or an update asks for.
	// When it cannot, or the API refuses what is asked, it answers the
	// request itself and returns false.
	parse(ctx *fasthttp.RequestCtx, creating bool) (credentialChange, bool)
	// view is c as the API shows it in a list and in the answers to a
	// creation (with its one-time password) and a promotion.
	view(c control.Credential, password string) any
	// updated is the answer to an update that left c.
	updated(c control.Credential) any
	// deleted is the answer to the deletion of c.
	deleted(c control.Credential) any
	// noCredential answers a path naming no credential of the cache.
	noCredential(ctx *fasthttp.RequestCtx)
	// refused answers a creation (self 0) or an update of credential
	// self, asked for by ch, that the store refused with err.
	refused(ctx *fasthttp.RequestCtx, cacheID, self uint32, ch credentialChange, err error)
	// failed answers any other store error.
	failed(ctx *fasthttp.RequestCtx, err error)
}

// serve answers a request for the credentials of cache cacheID, whose
// path after .../credentials is rest (split at slashes), and reports
// whether it did: false, having answered nothing, when no endpoint has
// that path and method.
//
//	GET    .../credentials                   list
//	POST   .../credentials                   create
//	PATCH  .../credentials/REF (or POST)     update
//	POST   .../credentials/primary/REF       promote
//	DELETE .../credentials[/primary]/REF     delete
//
// REF is a credential's id or username.
func (o credentialOps) serve(ctx *fasthttp.RequestCtx, cacheID uint32, method string, rest []string) bool {
	promotion := len(rest) == 2 && rest[0] == "primary"
	switch {
	case len(rest) == 0 && method == "GET":
		o.list(ctx, cacheID)
	case len(rest) == 0 && method == "POST":
		o.create(ctx, cacheID)
	case len(rest) == 1 && (method == "PATCH" || method == "POST"):
		o.withCredential(ctx, cacheID, rest[0], o.update)
	case (len(rest) == 1 || promotion) && method == "DELETE":
		o.withCredential(ctx, cacheID, rest[len(rest)-1], o.delete)
	case promotion && method == "POST":
		o.withCredential(ctx, cacheID, rest[1], o.promote)
	default:
		return false
	}
	return true
}

func (o credentialOps) list(ctx *fasthttp.RequestCtx, cacheID uint32) {
	creds, err := o.store.Credentials(cacheID)
	if err != nil {
		o.dialect.failed(ctx, err)
		return
	}
	out := make([]any, 0, len(creds))
	for _, c := range creds {
		out = append(out, o.dialect.view(c, ""))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (o credentialOps) create(ctx *fasthttp.RequestCtx, cacheID uint32) {
	ch, ok := o.dialect.parse(ctx, true)
	if !ok {
		return
	}
	cred, password, err := o.store.CreateCredential(cacheID, ch.newCredential())
	if err != nil {
		o.dialect.refused(ctx, cacheID, 0, ch, err)
		return
	}
	writeJSON(ctx, o.createdStatus, o.dialect.view(cred, password))
}

// withCredential finds credential ref of cache cacheID and runs fn on
// it; none, or one of another cache, is the dialect's noCredential.
func (o credentialOps) withCredential(ctx *fasthttp.RequestCtx, cacheID uint32, ref string, fn func(*fasthttp.RequestCtx, control.Credential)) {
	cred, err := o.find(cacheID, ref)
	switch {
	case errors.Is(err, control.ErrNotFound):
		o.dialect.noCredential(ctx)
	case err != nil:
		o.dialect.failed(ctx, err)
	default:
		fn(ctx, cred)
	}
}

// find finds credential ref (an id or a username) of cache cacheID; a
// credential of another cache is not found.
func (o credentialOps) find(cacheID uint32, ref string) (control.Credential, error) {
	// A username of hex digits may also read as an id: try both.
	if id, err := parseID(ref); err == nil {
		if cred, err := o.store.Credential(id); err == nil && cred.CacheID == cacheID {
			return cred, nil
		}
	}
	cred, err := o.store.CredentialByUsername(ref)
	if err == nil && cred.CacheID != cacheID {
		err = fmt.Errorf("credential %q of cache %d: %w", ref, cacheID, control.ErrNotFound)
	}
	return cred, err
}

func (o credentialOps) update(ctx *fasthttp.RequestCtx, cred control.Credential) {
	ch, ok := o.dialect.parse(ctx, false)
	if !ok {
		return
	}
	// The refusal is told from the credential found, not from what the
	// store answers with its error.
	updated, err := o.store.UpdateCredential(cred.ID, ch.update(cred.Caps))
	if err != nil {
		o.dialect.refused(ctx, cred.CacheID, cred.ID, ch, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, o.dialect.updated(updated))
}

func (o credentialOps) promote(ctx *fasthttp.RequestCtx, cred control.Credential) {
	cred, err := o.store.Promote(cred.ID)
	if err != nil {
		o.dialect.failed(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, o.dialect.view(cred, ""))
}

func (o credentialOps) delete(ctx *fasthttp.RequestCtx, cred control.Credential) {
	if err := o.store.DeleteCredential(cred.ID); err != nil {
		o.dialect.failed(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, o.dialect.deleted(cred))
}

// credentialChange is a create or update request as either API reads it.
// A nil capability is unchanged (on creation: allowed). A nil certificate
// half is unchanged (none, on creation); an empty one unbinds that half.
type credentialChange struct {
	write, flush, api *bool
	// primary makes a new credential its cache's primary; an update
	// ignores it (promotion does that).
	primary            bool
	certSHA256, certCN *string
}

// caps is caps with the capabilities ch sets.
func (ch credentialChange) caps(caps control.Capabilities) control.Capabilities {
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
	set(ch.write, control.CapWrite)
	set(ch.flush, control.CapFlush)
	set(ch.api, control.CapAPI)
	return caps
}

// newCredential is the credential ch asks to create.
func (ch credentialChange) newCredential() control.NewCredential {
	var cert control.CertBinding
	if ch.certSHA256 != nil {
		cert.SHA256 = *ch.certSHA256
	}
	if ch.certCN != nil {
		cert.CN = *ch.certCN
	}
	return control.NewCredential{Caps: ch.caps(control.CapAll), Primary: ch.primary, Cert: cert}
}

// update is the change ch asks of a credential whose capabilities are
// current.
func (ch credentialChange) update(current control.Capabilities) control.CredentialUpdate {
	return control.CredentialUpdate{Caps: new(ch.caps(current)), CertSHA256: ch.certSHA256, CertCN: ch.certCN}
}
