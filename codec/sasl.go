package codec

import "bytes"

// ParseSASLPlain splits a SASL PLAIN message (RFC 4616):
// [authzid] NUL authcid NUL passwd. The results alias msg. ok is false
// when the message does not have exactly two NULs or the username is
// empty; an authorization identity, if sent, is returned for the caller
// to check (memhive accepts only one equal to the username).
func ParseSASLPlain(msg []byte) (authzid, username, password []byte, ok bool) {
	i := bytes.IndexByte(msg, 0)
	if i < 0 {
		return nil, nil, nil, false
	}
	rest := msg[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return nil, nil, nil, false
	}
	authzid, username, password = msg[:i], rest[:j], rest[j+1:]
	if len(username) == 0 || bytes.IndexByte(password, 0) >= 0 {
		return nil, nil, nil, false
	}
	return authzid, username, password, true
}
