package codec

import (
	"encoding/base64"
	"math"
)

// The meta commands (mg, ms, md, ma, mn, me), parsed as memcached 1.6.18's
// proto_text.c does, with E (an explicit CAS value for the stored item)
// from later versions of protocol.txt.

// maxMetaTokens is MFLAG_MAX_OPT_LENGTH: a meta line of more tokens
// (counting the command, the key and memcached's terminal token) is refused.
const maxMetaTokens = 20

// MaxOpaqueLen is the longest O token memcached echoes, counting the 'O'
// (MFLAG_MAX_OPAQUE_LENGTH).
const MaxOpaqueLen = 32

// Meta holds what a meta command asks besides Request's Key, Value, Flags
// (F), Exptime (T), CAS (C), Delta (D), Initial (J) and NoReply (q).
type Meta struct {
	// Tokens are the flag tokens in request order (ms: after the data
	// length): the reply echoes O and k and reports the return flags in
	// this order.
	Tokens [maxMetaTokens][]byte
	NTok   int

	Base64   bool  // b: Key was sent base64-encoded (Key holds it decoded)
	Value    bool  // v: return the value
	NoBump   bool  // u: no LRU bump, no fetched mark
	Stale    bool  // I: invalidate (md) or store a stale value (ms with C)
	HasCAS   bool  // C: compare with CAS
	NewTTL   bool  // T: Exptime is a new expiry
	Vivify   bool  // N: create on miss with VivifyExptime
	Recache  bool  // R: win a recache token below RecacheExptime
	SetCAS   bool  // E: store with CASValue instead of a new one
	Mode     byte  // M's argument, 0 when absent
	Vivified int64 // N's argument
	RecacheT int64 // R's argument
	CASValue uint64

	// OpaqueTooLong: an O token is longer than 32 bytes. memcached finds
	// this while building the reply of mg and ma, after running the
	// command: the caller runs it, then answers ReplyOpaqueTooLong.
	OpaqueTooLong bool

	keyBuf [MaxKeyLen]byte
}

// The meta parser's error lines, static like ascii.go's.
var (
	errLineOptionsTooLongGet = []byte(ReplyMetaOptionsTooLongGet)
	errLineOptionsTooLong    = []byte(ReplyMetaOptionsTooLong)
	errLineInvalidOrDup      = []byte(ReplyMetaInvalidOrDupFlag)
	errLineDuplicateFlag     = []byte(ReplyMetaDuplicateFlag)
	errLineInvalidFlag       = []byte(ReplyMetaInvalidFlag)
	errLineBadToken          = []byte(ReplyMetaBadToken)
	errLineDecodingKey       = []byte(ReplyMetaDecodingKey)
	errLineMLength           = []byte(ReplyMetaMLength)
	errLineBadInitial        = []byte(ReplyMetaBadInitial)
	errLineBadDelta          = []byte(ReplyMetaBadDelta)
	errLineOpaqueTooLong     = []byte(ReplyOpaqueTooLong)
	errLineInvalidModeSet    = []byte(ReplyMetaInvalidModeSet)
	errLineInvalidModeArith  = []byte(ReplyMetaInvalidModeArith)
)

// Meta returns the request's meta flags, valid for the meta commands.
func (req *Request) Meta() *Meta { return req.meta }

// metaASCII dispatches the two-letter commands that start with m.
func (p *Parser) metaASCII(buf []byte, n int, t *lineTokens, req *Request) (int, error) {
	switch t.tok(0)[1] {
	case 'g':
		return p.metaCommand(buf, n, t, req, CmdMetaGet)
	case 's':
		return p.metaCommand(buf, n, t, req, CmdMetaSet)
	case 'd':
		return p.metaCommand(buf, n, t, req, CmdMetaDelete)
	case 'a':
		return p.metaCommand(buf, n, t, req, CmdMetaArith)
	case 'n':
		req.Cmd = CmdMetaNoop
		req.Flush = true // mn makes memcached write out what it has queued
		return n, nil
	case 'e':
		return metaDebug(n, t, req)
	}
	return errorLine(req, n, errLineError)
}

// metaDebug is process_meta_command (me): a key, and an optional b.
func metaDebug(n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens < 3 || len(t.tok(1)) > MaxKeyLen {
		return errorLine(req, n, errLineBadFormat)
	}
	m := req.metaFlags()
	req.Cmd = CmdMetaDebug
	req.Key = t.tok(1)
	if t.ntokens >= 4 && string(t.tok(2)) == "b" {
		k, ok := decodeKey(req.Key, m.keyBuf[:])
		if !ok {
			return errorLine(req, n, errLineBadFormat)
		}
		req.Key, m.Base64 = k, true
	}
	return n, nil
}

// metaCommand parses mg, ms, md and ma: the checks before the flags, in
// each command's order, then _meta_flag_preparse, then what each command
// checks of the flags before it runs.
func (p *Parser) metaCommand(buf []byte, n int, t *lineTokens, req *Request, cmd Command) (int, error) {
	if t.ntokens < 3 {
		return errorLine(req, n, errLineError)
	}
	key := t.tok(1)
	if len(key) > MaxKeyLen {
		return errorLine(req, n, errLineBadFormat)
	}
	first := 2 // the first flag token
	vlen := 0
	switch cmd {
	case CmdMetaGet:
		if t.ntokens > maxMetaTokens {
			return errorLine(req, n, errLineOptionsTooLongGet)
		}
	case CmdMetaSet:
		if t.ntokens == 3 {
			return errorLine(req, n, errLineBadFormat)
		}
		if t.ntokens > maxMetaTokens {
			return errorLine(req, n, errLineOptionsTooLong)
		}
		v, ok := safeStrtol(t.tok(2))
		if !ok || v < 0 || v > math.MaxInt32-2 {
			return errorLine(req, n, errLineBadFormat)
		}
		vlen, first = int(v), 3
	default:
		if t.ntokens > maxMetaTokens {
			return errorLine(req, n, errLineOptionsTooLong)
		}
	}
	m := req.metaFlags()
	req.Key = key
	if cmd == CmdMetaArith {
		req.Delta = 1
	}
	errReply := preparseMeta(t, first, req, m)
	switch cmd {
	case CmdMetaDelete, CmdMetaArith:
		if errReply != nil {
			return errorLine(req, n, errLineInvalidOrDup)
		}
	case CmdMetaGet:
		if errReply != nil {
			return errorLine(req, n, errReply)
		}
	case CmdMetaSet:
		// memcached notes a long opaque, then checks the mode: a bad
		// mode is the error it reports.
		if errReply == nil {
			switch m.Mode {
			case 0, 'E', 'A', 'P', 'R', 'S':
			default:
				errReply = errLineInvalidModeSet
			}
		}
		if errReply == nil && m.OpaqueTooLong {
			errReply = errLineOpaqueTooLong
		}
		if errReply == nil && p.tooLarge(len(req.Key), vlen) {
			req.Refused = CmdMetaSet
			errReply = errLineTooLarge
		}
		if errReply != nil {
			req.Swallow = vlen + 2
			return errorLine(req, n, errReply)
		}
		end := n + vlen + 2
		if len(buf) < end {
			req.reset()
			return 0, ErrIncomplete
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			// Meta always reports it, q or not.
			req.NoReply = false
			req.BadData = true
			req.Value = buf[n : end-2 : end-2]
			return errorLine(req, end, errLineBadDataChunk)
		}
		req.Cmd = cmd
		req.Value = buf[n : end-2 : end-2]
		return end, nil
	}
	if cmd == CmdMetaDelete && m.OpaqueTooLong {
		return errorLine(req, n, errLineOpaqueTooLong)
	}
	if cmd == CmdMetaArith {
		switch m.Mode {
		case 0, 'I', '+', 'D', '-':
		default:
			return errorLine(req, n, errLineInvalidModeArith)
		}
	}
	req.Cmd = cmd
	return n, nil
}

// preparseMeta is _meta_flag_preparse: it reads the flag tokens from
// first on into req and m, and returns the error line memcached would
// answer, or nil. Like memcached it goes on after most errors, so the last
// one wins, but stops at a duplicate or unknown flag.
func preparseMeta(t *lineTokens, first int, req *Request, m *Meta) []byte {
	var seen [128]bool
	var errReply []byte
	failed := false
	fail := func(e []byte) {
		failed = true
		if e != nil {
			errReply = e
		}
	}
	for i := first; i < t.ntokens-1; i++ {
		tok := t.tok(i)
		if len(tok) == 0 {
			continue
		}
		o := tok[0]
		if o >= 127 || seen[o] {
			return errLineDuplicateFlag
		}
		seen[o] = true
		if m.NTok < len(m.Tokens) {
			m.Tokens[m.NTok] = tok
			m.NTok++
		}
		arg := tok[1:]
		switch o {
		case 'b':
			k, ok := decodeKey(req.Key, m.keyBuf[:])
			if !ok {
				fail(errLineDecodingKey)
			}
			req.Key, m.Base64 = k, true
		case 'N':
			m.Vivify = true
			if v, ok := safeStrtol(arg); ok {
				m.Vivified = int64(v)
			} else {
				fail(errLineBadToken)
			}
		case 'T':
			if v, ok := safeStrtol(arg); ok {
				req.Exptime, m.NewTTL = int64(v), true
			} else {
				fail(errLineBadToken)
			}
		case 'R':
			if v, ok := safeStrtol(arg); ok {
				m.Recache, m.RecacheT = true, int64(v)
			} else {
				fail(errLineBadToken)
			}
		case 'O':
			if len(tok) > MaxOpaqueLen {
				m.OpaqueTooLong = true
			}
		case 'P', 'L', 'k', 's', 't', 'c', 'f', 'l', 'h':
		case 'v':
			m.Value = true
		case 'u':
			m.NoBump = true
		case 'q':
			req.NoReply = true
		case 'F':
			if v, ok := safeStrtoul(arg); ok {
				req.Flags = v
			} else {
				fail(nil)
			}
		case 'C':
			if v, ok := SafeStrtoull(arg); ok {
				req.CAS, m.HasCAS = v, true
			} else {
				fail(errLineBadToken)
			}
		case 'E':
			if v, ok := SafeStrtoull(arg); ok {
				m.CASValue, m.SetCAS = v, true
			} else {
				fail(errLineBadToken)
			}
		case 'M':
			if len(tok) != 2 {
				fail(errLineMLength)
			} else {
				m.Mode = tok[1]
			}
		case 'J':
			if v, ok := SafeStrtoull(arg); ok {
				req.Initial = v
			} else {
				fail(errLineBadInitial)
			}
		case 'D':
			if v, ok := SafeStrtoull(arg); ok {
				req.Delta = v
			} else {
				fail(errLineBadDelta)
			}
		case 'I':
			m.Stale = true
		default:
			return errLineInvalidFlag
		}
	}
	if failed {
		if errReply == nil {
			return errLineBadFormat
		}
		return errReply
	}
	return nil
}

// metaFlags returns the request's Meta, cleared, allocating it on a
// connection's first meta command (Request.reset keeps it).
func (req *Request) metaFlags() *Meta {
	if req.meta == nil {
		req.meta = new(Meta)
	} else {
		m := req.meta
		clear(m.Tokens[:m.NTok])
		*m = Meta{Tokens: m.Tokens}
	}
	return req.meta
}

// decodeKey is memcached's base64_decode of a key into dst: characters
// outside the alphabet are skipped, the rest must be whole quads, and '='
// pads the last one. It fails (false) where memcached returns 0.
func decodeKey(src, dst []byte) ([]byte, bool) {
	count := 0
	for _, c := range src {
		if decodeTable[c] != 0x80 {
			count++
		}
	}
	if count == 0 || count%4 != 0 || count/4*3 > len(dst) {
		return nil, false
	}
	var block [4]byte
	pos, k, pad := 0, 0, 0
	for _, c := range src {
		v := decodeTable[c]
		if v == 0x80 {
			continue
		}
		if c == '=' {
			pad++
		}
		block[k] = v
		k++
		if k < 4 {
			continue
		}
		dst[pos] = block[0]<<2 | block[1]>>4
		dst[pos+1] = block[1]<<4 | block[2]>>2
		dst[pos+2] = block[2]<<6 | block[3]
		pos += 3
		k = 0
		if pad > 0 {
			if pad > 2 {
				return nil, false
			}
			pos -= pad
			break
		}
	}
	if pos == 0 {
		return nil, false
	}
	return dst[:pos], true
}

// decodeTable maps base64 characters to their values, '=' to 0, anything
// else to 0x80.
var decodeTable = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x80
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t['='] = 0
	return t
}()

// AppendMetaKey appends " k<key>" to a meta reply, base64-encoded (and
// followed by " b") when the key is binary.
func AppendMetaKey(out, key []byte, binary bool) []byte {
	out = append(out, " k"...)
	if !binary {
		return append(out, key...)
	}
	out = base64.StdEncoding.AppendEncode(out, key)
	return append(out, " b"...)
}
