package codec

import (
	"bytes"
)

// memhive's binary SASL follows memcached 1.6.18 built with Debian's Cyrus
// SASL 2.1.28 (memcached -S, mech_list: plain): the functions here are the
// parts of Cyrus that decide what memcached answers, checked against it
// by tools/difftest's SASL run.

// ParseSASLPlain reads a SASL PLAIN message (RFC 4616: [authzid] NUL
// authcid NUL passwd) as Cyrus' PLAIN plugin and its default user
// canonicalisation do, and returns the username to check and the
// password; both alias msg. ok is false when Cyrus refuses the message
// whatever the password: not exactly two NULs, an authcid that is empty
// or all white space, or an authzid other than the authcid. White space
// (C's isspace) around the authcid is not part of the username, and an
// authzid names the same user when it does so after that trimming.
// Cyrus' realms (user@realm) are not modelled: memhive has none.
func ParseSASLPlain(msg []byte) (username, password []byte, ok bool) {
	i := bytes.IndexByte(msg, 0)
	if i < 0 {
		return nil, nil, false
	}
	rest := msg[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return nil, nil, false
	}
	authzid, authcid, password := msg[:i], rest[:j], rest[j+1:]
	if bytes.IndexByte(password, 0) >= 0 {
		return nil, nil, false
	}
	username = trimSpaceC(authcid)
	if len(username) == 0 {
		return nil, nil, false
	}
	if len(authzid) > 0 && !bytes.Equal(authzid, authcid) && !bytes.Equal(trimSpaceC(authzid), username) {
		return nil, nil, false
	}
	return username, password, true
}

// trimSpaceC trims what C's isspace calls white space in the C locale,
// as Cyrus' canonicalisation of a username does.
func trimSpaceC(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// IsSASLPlainMech reports whether Cyrus takes mech, a SASL AUTH key, for
// the PLAIN mechanism: memcached passes the key as a C string (it ends at
// the first NUL), and Cyrus compares it without regard to case, with an
// optional "-PLUS" suffix (channel binding, which PLAIN does not use).
func IsSASLPlainMech(mech []byte) bool {
	if i := bytes.IndexByte(mech, 0); i >= 0 {
		mech = mech[:i]
	}
	if len(mech) > 5 && bytes.EqualFold(mech[len(mech)-5:], []byte("-PLUS")) {
		mech = mech[:len(mech)-5]
	}
	return bytes.EqualFold(mech, []byte("PLAIN"))
}

// saslTooLarge reports whether memcached refuses a SASL AUTH or STEP with
// a nkey-byte mechanism and vlen bytes of data as out of memory: it reads
// them into an item (key, data and "\r\n", with a 56-byte header and the
// key's NUL), which must fit in one slab chunk. Chunks are at most half
// of memcached's 1 MiB slab page whatever its item size limit (-I), and
// no larger than that limit: with the defaults, 524,229 bytes of key and
// data pass and one more is refused.
func (p *Parser) saslTooLarge(nkey, vlen int) bool {
	const itemOverhead = 56 + 1 + 2
	chunk := min(saslChunkMax, p.maxItem())
	return vlen < 0 || nkey+vlen+itemOverhead > chunk
}

// saslChunkMax is memcached's largest slab chunk (slab_chunk_size_max).
const saslChunkMax = 512 << 10
