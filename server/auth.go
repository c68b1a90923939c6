package server

import (
	"bytes"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/tenancy"
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
// NOT_STORED), or flush_all without flush (codec.ReplyFlushDenied).
func denied(caps tenancy.Capabilities, cmd codec.Command) bool {
	if int(cmd) < len(mutating) && mutating[cmd] && !caps.CanWrite() {
		return true
	}
	return cmd == codec.CmdFlushAll && !caps.CanFlush()
}

// caps is what the connection's credential may do; in local mode, all.
func (c *conn) caps() tenancy.Capabilities { return c.user.Capabilities() }

// authenticateASCII handles the first command of a text connection in
// SASL mode, a set in one of two forms told apart by its value:
//   - memcached -Y's, `set <any key> <flags> <exptime> <n>` carrying
//     "<username> <password>": the value has a space (see memcachedLogin);
//   - MemCachier's, `set <username> ...` carrying the password alone: the
//     value has no space, as control.NewPassword's passwords have none.
//
// Anything else is answered CLIENT_ERROR unauthenticated and the
// connection closed, as is a failed MemCachier login.
func (s *Server) authenticateASCII(cs *conn, r *codec.Request) (closeConn bool) {
	if r.Cmd != codec.CmdSet {
		cs.out = append(cs.out, codec.ReplyUnauthenticated...)
		return true
	}
	if bytes.IndexByte(r.Value, ' ') >= 0 {
		return s.memcachedLogin(cs, r.Value)
	}
	switch s.login(cs, r.Key, r.Value) {
	case loginFailed:
		cs.out = append(cs.out, codec.ReplyAuthFailure...)
		return true
	case loginThrottled:
		cs.out = append(cs.out, codec.ReplyThrottled...)
		return true
	}
	if !r.NoReply {
		cs.out = append(cs.out, codec.ReplyStored...)
	}
	return false
}

// textAuthMaxValue is the longest value memcached -Y takes in its text
// login: the value and its \r\n must fit its 16 KiB read buffer, and it
// closes the connection, silently, on a longer one. memhive does the same;
// no username and password come near it.
const textAuthMaxValue = 16384 - 2

// memcachedLogin is memcached -Y's text login (proto_text.c,
// try_read_command_asciiauth, in 1.6.18), with value the set's data: the
// value up to any NUL is split on spaces, runs of them counting as one;
// the first word is the username, the second the password, any more are
// ignored. Its answers are memcached's: STORED on success, even with
// noreply; CLIENT_ERROR authentication failure, or bad authentication
// token format for fewer than two words, leaving the connection open and
// unauthenticated. Only the throttle's refusal, memhive's own, closes it.
func (s *Server) memcachedLogin(cs *conn, value []byte) (closeConn bool) {
	if len(value) > textAuthMaxValue {
		return true
	}
	if i := bytes.IndexByte(value, 0); i >= 0 {
		// memcached reads the value as a C string.
		value = value[:i]
	}
	username, rest := nextWord(value)
	password, _ := nextWord(rest)
	if len(password) == 0 {
		// No password was checked: memcached counts nothing.
		cs.out = append(cs.out, codec.ReplyBadAuthFormat...)
		return false
	}
	switch s.login(cs, username, password) {
	case loginFailed:
		cs.out = append(cs.out, codec.ReplyAuthFailure...)
		return false
	case loginThrottled:
		cs.out = append(cs.out, codec.ReplyThrottled...)
		return true
	}
	cs.out = append(cs.out, codec.ReplyStored...)
	return false
}

// nextWord returns b's first run of bytes other than a space, and what
// follows it.
func nextWord(b []byte) (word, rest []byte) {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

// binarySASL answers SASL LIST MECHS, AUTH and STEP in SASL mode as
// memcached 1.6.18 with Cyrus SASL's PLAIN does (tools/difftest's SASL run
// holds it to that):
//   - each of them first ends the connection's login, LIST MECHS too;
//   - AUTH with no data answers AUTH_CONTINUE (0x21, empty body) and the
//     next STEP carries the PLAIN message; with data, AUTH checks it;
//   - STEP is an auth error unless an AUTH that did not fail came before;
//   - once an exchange has succeeded, Cyrus refuses every later check on
//     the connection, whatever it carries (its doneflag), until an AUTH
//     fails: logging in again takes a failed AUTH first.
//
// A failed attempt leaves the connection unauthenticated. In local mode
// (--auth none) LIST answers PLAIN and any well-formed PLAIN AUTH
// succeeds, the connection staying on the default cache.
func (s *Server) binarySASL(cs *conn, out []byte, r *codec.Request) []byte {
	op, opaque := r.Opcode, r.Opaque
	local := s.tenants.Local()
	if !local {
		s.unbind(cs)
	}
	if r.Cmd == codec.CmdSASLList {
		return codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte(codec.BinarySASLMechs))
	}
	if local {
		return s.localSASL(cs, out, r)
	}
	var result loginResult
	switch {
	case r.Cmd == codec.CmdSASLAuth && !codec.IsSASLPlainMech(r.Key):
		// Cyrus knows no such mechanism; its failure clears doneflag.
		cs.saslDone, cs.saslStarted = false, false
		result = s.saslRefused(cs)
	case r.Cmd == codec.CmdSASLAuth && len(r.Value) == 0:
		// PLAIN wants the client's message: ask for it.
		cs.saslStarted = true
		return codec.AppendBinaryValue(out, op, codec.StatusAuthContinue, opaque, 0, nil)
	case r.Cmd == codec.CmdSASLAuth:
		result = s.saslCheck(cs, r.Value, true)
		cs.saslStarted = result == loginOK
	case cs.saslStarted:
		result = s.saslCheck(cs, r.Value, false)
	default:
		// STEP with no exchange started: memcached fails it without
		// asking Cyrus, so doneflag stays as it is.
		result = s.saslRefused(cs)
	}
	if result != loginOK {
		msg := codec.BinaryAuthFailure
		if result == loginThrottled {
			msg = codec.BinaryThrottled
		}
		return codec.AppendBinaryError(out, op, codec.StatusAuthError, opaque, msg)
	}
	return codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte(codec.BinaryAuthenticated))
}

// saslCheck is one PLAIN check in SASL mode, from an AUTH or a STEP:
// Cyrus refuses it outright after a successful one (saslDone), else it
// logs in with the message's username and password. The refusal clears
// saslDone for an AUTH only: sasl_server_step returns early and leaves
// doneflag set, sasl_server_start clears it on any failure.
func (s *Server) saslCheck(cs *conn, msg []byte, auth bool) loginResult {
	if cs.saslDone {
		cs.saslDone = !auth
		return s.saslRefused(cs)
	}
	username, password, valid := codec.ParseSASLPlain(msg)
	if !valid {
		return s.saslRefused(cs)
	}
	result := s.login(cs, username, password)
	cs.saslDone = result == loginOK
	return result
}

// saslRefused counts a SASL attempt that fails without a password being
// checked (login counts the others) and returns loginFailed.
func (s *Server) saslRefused(cs *conn) loginResult {
	cs.stats.AuthCmds.Add(1)
	cs.stats.AuthErrors.Add(1)
	return loginFailed
}

// localSASL answers SASL AUTH and STEP in local mode, where any
// well-formed PLAIN AUTH logs in.
func (s *Server) localSASL(cs *conn, out []byte, r *codec.Request) []byte {
	op, opaque := r.Opcode, r.Opaque
	if r.Cmd == codec.CmdSASLAuth && codec.IsSASLPlainMech(r.Key) {
		if username, password, valid := codec.ParseSASLPlain(r.Value); valid {
			s.login(cs, username, password)
			return codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte(codec.BinaryAuthenticated))
		}
	}
	s.saslRefused(cs)
	return codec.AppendBinaryError(out, op, codec.StatusAuthError, opaque, codec.BinaryAuthFailure)
}

// unauthenticated answers a request on a connection that has not logged
// in (other than binary SASL): a text connection logs in with a set (see
// authenticateASCII for when a failure closes it). A binary one gets an
// auth error and is closed, as memcached -S does, except where memcached
// checks something before the login: framing errors (a bad magic byte, a
// header it cannot buffer, a key and extras longer than the body) and the
// checks of the requests it lets through, SASL's and VERSION's, are
// answered as for a logged-in connection. VERSION itself, which memcached
// answers, answers the auth error as DESIGN.md asks, and keeps the
// connection open as memcached does.
func (s *Server) unauthenticated(cs *conn, r *codec.Request) (closeConn bool) {
	if cs.proto != protoBinary {
		return s.authenticateASCII(cs, r)
	}
	if r.Cmd == codec.CmdError && (preAuthError(r) || r.Opcode == codec.OpVersion || isSASLOpcode(r.Opcode)) {
		// What memcached answers reveals nothing of any cache.
		if r.Status != 0 {
			cs.out = codec.AppendBinaryStatus(cs.out, r.Opcode, r.Status, r.Opaque)
		}
		cs.swallow = r.Swallow
		return r.Close
	}
	cs.out = codec.AppendBinaryStatus(cs.out, r.Opcode, codec.StatusAuthError, r.Opaque)
	return r.Cmd != codec.CmdVersion
}

// preAuthError reports whether the parser refused r for its framing,
// which memcached checks before the login: a silent close (bad magic, an
// unbufferable header) or a key and extras longer than the body.
func preAuthError(r *codec.Request) bool {
	return r.Status == 0 || (r.Status == codec.StatusUnknownCommand && r.Close)
}

// isSASL tells the binary commands an unauthenticated connection may send.
func isSASL(cmd codec.Command) bool {
	return cmd == codec.CmdSASLList || cmd == codec.CmdSASLAuth || cmd == codec.CmdSASLStep
}

// isSASLOpcode tells the SASL opcodes, also of requests the parser refused.
func isSASLOpcode(op byte) bool {
	return op == codec.OpSASLListMechs || op == codec.OpSASLAuth || op == codec.OpSASLStep
}

// loginResult is the outcome of a login attempt.
type loginResult int

const (
	loginOK loginResult = iota
	loginFailed
	loginThrottled // refused unchecked: too many failures from the address
)

// login checks a username and password and, when they are right, binds
// the connection to the credential's cache; it counts the attempt, and a
// failure against the source address's allowance. In local mode (--auth
// none) any credentials are accepted and the connection stays on the
// default cache, as a memcached without SASL lets every client in.
func (s *Server) login(cs *conn, username, password []byte) loginResult {
	if s.tenants.Local() {
		cs.stats.AuthCmds.Add(1)
		return loginOK
	}
	if s.throttle.blocked(cs.peer) {
		cs.stats.AuthCmds.Add(1)
		cs.stats.AuthErrors.Add(1)
		return loginThrottled
	}
	u, tn := s.tenants.Authenticate(username, password)
	if u == nil {
		if s.throttle.fail(cs.peer) {
			s.log.Warn("refusing logins from an address after repeated failures",
				"addr", cs.peer.String(), "failures", s.throttle.limit, "window", s.throttle.window.String())
		}
		if tn != nil {
			// Count the failure against the cache the username names.
			sh := tn.Conns.Shard(cs.fd)
			sh.AuthCmds.Add(1)
			sh.AuthErrors.Add(1)
		} else {
			cs.stats.AuthCmds.Add(1)
			cs.stats.AuthErrors.Add(1)
		}
		return loginFailed
	}
	s.bind(cs, u.Cache(), u)
	cs.stats.AuthCmds.Add(1)
	return loginOK
}

// bind attaches the connection to a cache (and credential: nil in local
// mode), moving its connection count from any cache it used before.
func (s *Server) bind(cs *conn, tn *tenancy.Cache, u *tenancy.Credential) {
	if cs.tenant == tn {
		cs.user = u
		cs.sharedUser.Store(u)
		return
	}
	s.unbind(cs)
	cs.tenant, cs.user = tn, u
	cs.sharedTenant.Store(tn)
	cs.sharedUser.Store(u)
	tn.Conns.CurrConns.Add(1)
	tn.Conns.TotalConns.Add(1)
	cs.stats = tn.Conns.Shard(cs.fd)
}

// unbind detaches the connection from its cache, if any.
func (s *Server) unbind(cs *conn) {
	if cs.tenant == nil {
		return
	}
	cs.tenant.Conns.CurrConns.Add(-1)
	// A logged-out connection gets a whole --auth-timeout to log in again.
	cs.unbound.Store(time.Now().UnixNano())
	cs.tenant, cs.user = nil, nil
	cs.sharedTenant.Store(nil)
	cs.sharedUser.Store(nil)
	cs.loginCert.Store(nil)
	cs.stats = s.stats.Shard(cs.fd)
}

// closeRevoked closes every connection a control-plane change has cut
// off; tenancy calls it (see OnRevoke) from its applier's goroutine.
// gnet's Close is safe from any goroutine; the connection's event loop
// also checks Revoked before running more requests, so nothing it
// receives after the change is recorded is served.
func (s *Server) closeRevoked() {
	s.conns.Range(func(_, v any) bool {
		cs := v.(*conn)
		if cs.closer != nil && s.tenants.Revoked(cs.sharedTenant.Load(), cs.sharedUser.Load(), cs.loginCert.Load()) {
			cs.closer.Close()
		}
		return true
	})
}
