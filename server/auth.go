package server

import (
	"bytes"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/control"
)

// flushDenied is the text answer to flush_all from a credential without
// the flush capability; flushDeniedText is its binary error body.
const (
	flushDenied     = "CLIENT_ERROR flush_all needs the flush capability, which this credential lacks\r\n"
	flushDeniedText = "flush_all needs the flush capability"
)

// mutating marks the commands that change a cache, which need the write
// capability. gat and gats count: they change an item's expiry.
var mutating = [...]bool{
	codec.CmdSet: true, codec.CmdAdd: true, codec.CmdReplace: true,
	codec.CmdAppend: true, codec.CmdPrepend: true, codec.CmdCas: true,
	codec.CmdIncr: true, codec.CmdDecr: true, codec.CmdTouch: true,
	codec.CmdGat: true, codec.CmdGats: true, codec.CmdDelete: true,
	codec.CmdFlushAll: false,
}

// denied reports whether caps forbid cmd: a change without write (answered
// NOT_STORED), or flush_all without flush (answered flushDenied).
func denied(caps control.Capabilities, cmd codec.Command) bool {
	if int(cmd) < len(mutating) && mutating[cmd] && caps&control.CapWrite == 0 {
		return true
	}
	return cmd == codec.CmdFlushAll && caps&control.CapFlush == 0
}

// caps is what the connection's credential may do; in local mode, all.
func (c *conn) caps() control.Capabilities {
	if c.user == nil {
		return control.CapAll
	}
	return c.user.Caps()
}

// authenticateASCII handles the first command of a text connection in
// SASL mode: MemCachier's `set <username> 0 0 <n>` carrying the password.
// Anything else, or a wrong password, is answered and the connection
// closed.
func (s *Server) authenticateASCII(cs *conn, r *codec.Request) (closeConn bool) {
	if r.Cmd != codec.CmdSet {
		cs.out = append(cs.out, codec.ReplyUnauthenticated...)
		return true
	}
	switch s.login(cs, r.Key, r.Value) {
	case loginFailed:
		cs.out = append(cs.out, codec.ReplyAuthFailure...)
		return true
	case loginThrottled:
		cs.out = append(cs.out, throttledText...)
		return true
	}
	if !r.NoReply {
		cs.out = append(cs.out, codec.ReplyStored...)
	}
	return false
}

// binarySASL answers SASL LIST MECHS, AUTH and STEP. PLAIN completes in
// one step, so STEP is always an error. A failed attempt leaves the
// connection unauthenticated, as memcached does, even if it had logged in
// before.
func (s *Server) binarySASL(cs *conn, out []byte, r *codec.Request) []byte {
	op, opaque := r.Opcode, r.Opaque
	if r.Cmd == codec.CmdSASLList {
		return codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte("PLAIN"))
	}
	result, attempted := loginFailed, false
	if r.Cmd == codec.CmdSASLAuth && bytes.Equal(r.Key, []byte("PLAIN")) {
		authz, username, password, valid := codec.ParseSASLPlain(r.Value)
		if valid && (len(authz) == 0 || bytes.Equal(authz, username)) {
			result, attempted = s.login(cs, username, password), true
		}
	}
	if result != loginOK {
		if !attempted {
			cs.stats.authCmds.Add(1)
			cs.stats.authErrors.Add(1)
		}
		if !s.tenants.Local() {
			s.unbind(cs)
		}
		msg := "Auth failure."
		if result == loginThrottled {
			msg = throttledBinary
		}
		return codec.AppendBinaryError(out, op, codec.StatusAuthError, opaque, msg)
	}
	return codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte("Authenticated"))
}

// loginResult is the outcome of a login attempt.
type loginResult int

const (
	loginOK loginResult = iota
	loginFailed
	loginThrottled // refused unchecked: too many failures from the address
)

// The answers to a login refused by the throttle, text and binary.
const (
	throttledText   = "CLIENT_ERROR too many authentication failures from this address; try again later\r\n"
	throttledBinary = "Too many authentication failures from this address; try again later."
)

// login checks a username and password and, when they are right, binds
// the connection to the credential's cache; it counts the attempt, and a
// failure against the source address's allowance. In local mode (--auth
// none) any credentials are accepted and the connection stays on the
// default cache, as a memcached without SASL lets every client in.
func (s *Server) login(cs *conn, username, password []byte) loginResult {
	if s.tenants.Local() {
		cs.stats.authCmds.Add(1)
		return loginOK
	}
	if s.throttle.blocked(cs.peer) {
		cs.stats.authCmds.Add(1)
		cs.stats.authErrors.Add(1)
		return loginThrottled
	}
	u, tn := s.tenants.authenticate(username, password)
	if u == nil {
		if s.throttle.fail(cs.peer) {
			s.log.Warn("refusing logins from an address after repeated failures",
				"addr", cs.peer.String(), "failures", s.throttle.limit, "window", s.throttle.window.String())
		}
		if tn != nil {
			// Count the failure against the cache the username names.
			sh := tn.stats.shard(cs.fd)
			sh.authCmds.Add(1)
			sh.authErrors.Add(1)
		} else {
			cs.stats.authCmds.Add(1)
			cs.stats.authErrors.Add(1)
		}
		return loginFailed
	}
	s.bind(cs, u.cache, u)
	cs.stats.authCmds.Add(1)
	return loginOK
}

// bind attaches the connection to a cache (and credential: nil in local
// mode), moving its connection count from any cache it used before.
func (s *Server) bind(cs *conn, tn *tenant, u *user) {
	if cs.tenant == tn {
		cs.user = u
		cs.sharedUser.Store(u)
		return
	}
	s.unbind(cs)
	cs.tenant, cs.user = tn, u
	cs.sharedTenant.Store(tn)
	cs.sharedUser.Store(u)
	tn.stats.currConns.Add(1)
	tn.stats.totalConns.Add(1)
	cs.stats = tn.stats.shard(cs.fd)
}

// unbind detaches the connection from its cache, if any.
func (s *Server) unbind(cs *conn) {
	if cs.tenant == nil {
		return
	}
	cs.tenant.stats.currConns.Add(-1)
	cs.tenant, cs.user = nil, nil
	cs.sharedTenant.Store(nil)
	cs.sharedUser.Store(nil)
	cs.stats = s.stats.shard(cs.fd)
}

// revoked reports whether a change in the control plane has cut off a
// connection using cache tn with credential u: the credential deleted,
// the cache disabled or deleted.
func (s *Server) revoked(tn *tenant, u *user) bool {
	if tn == nil {
		return false
	}
	if tn.gone.Load() {
		return true
	}
	if s.tenants.Local() {
		return false
	}
	return !tn.enabled.Load() || (u != nil && u.gone.Load())
}

// closeRevoked closes every connection a control-plane change has cut
// off. gnet's Close is safe from any goroutine; the connection's event
// loop also checks revoked before running more requests, so nothing it
// receives after the change is served.
func (s *Server) closeRevoked() {
	s.conns.Range(func(_, v any) bool {
		cs := v.(*conn)
		if cs.closer != nil && s.revoked(cs.sharedTenant.Load(), cs.sharedUser.Load()) {
			cs.closer.Close()
		}
		return true
	})
}
