package codec

import (
	"encoding/binary"
	"strconv"
)

// Fixed ASCII replies, exactly as memcached 1.6.18 writes them.
const (
	ReplyStored    = "STORED\r\n"
	ReplyNotStored = "NOT_STORED\r\n"
	ReplyExists    = "EXISTS\r\n"
	ReplyNotFound  = "NOT_FOUND\r\n"
	ReplyDeleted   = "DELETED\r\n"
	ReplyTouched   = "TOUCHED\r\n"
	ReplyOK        = "OK\r\n"
	ReplyEnd       = "END\r\n"
	ReplyError     = "ERROR\r\n"
	ReplyReset     = "RESET\r\n"
	// ReplyVersionPrefix starts the version reply: "VERSION 1.6.18\r\n".
	ReplyVersionPrefix = "VERSION "

	// Parse-time errors (the parser puts these in Request.ErrReply).
	ReplyBadFormat        = "CLIENT_ERROR bad command line format\r\n"
	ReplyBadDataChunk     = "CLIENT_ERROR bad data chunk\r\n"
	ReplyInvalidExptime   = "CLIENT_ERROR invalid exptime argument\r\n"
	ReplyInvalidDelta     = "CLIENT_ERROR invalid numeric delta argument\r\n"
	ReplyDeleteUsage      = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
	ReplyTooLarge         = "SERVER_ERROR object too large for cache\r\n"
	ReplyShutdownDisabled = "ERROR: shutdown not enabled\r\n"

	// Execution-time errors.
	ReplyNonNumeric       = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
	ReplyOutOfMemoryStore = "SERVER_ERROR out of memory storing object\r\n"
	ReplyOutOfMemoryDelta = "SERVER_ERROR out of memory\r\n" // incr/decr
	ReplyOutOfMemoryGet   = "SERVER_ERROR out of memory writing get response\r\n"
	ReplyOutOfMemoryStats = "SERVER_ERROR out of memory writing stats\r\n"
	ReplyUnhandledStore   = "SERVER_ERROR Unhandled storage type.\r\n"
	ReplyFlushDisabled    = "CLIENT_ERROR flush_all not allowed\r\n"
	ReplyStatsDetailUsage = "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
	ReplyBadCommandLine   = "CLIENT_ERROR bad command line\r\n" // stats cachedump with too few arguments
	ReplyIllegalSlabID    = "CLIENT_ERROR Illegal slab id\r\n"

	// ReplyOutOfMemoryVivify answers an ma with N that could not create
	// its item.
	ReplyOutOfMemoryVivify = "SERVER_ERROR Out of memory allocating new item\r\n"

	// Text-protocol authentication (memcached -Y, MemCachier's scheme).
	ReplyUnauthenticated   = "CLIENT_ERROR unauthenticated\r\n"
	ReplyAuthFailure       = "CLIENT_ERROR authentication failure\r\n"
	ReplyBadAuthFormat     = "CLIENT_ERROR bad authentication token format\r\n"
	ReplyBadLineTerminator = "CLIENT_ERROR bad command line termination\r\n"

	// Connection-level answers, each followed by a close: a connection
	// past -c, one that arrives while the server stops (memhive's own),
	// and one whose unprocessed input outgrew its bound (a multi-get
	// line longer than the largest item, or requests sent while the
	// replies to earlier ones are not being read).
	ReplyTooManyConns  = "ERROR Too many open connections\r\n"
	ReplyShuttingDown  = "SERVER_ERROR shutting down\r\n"
	ReplyInputTooLarge = "SERVER_ERROR out of memory reading request\r\n"
)

// The meta commands' status codes, which flags and "\r\n" (or a value's
// length) follow: HD (done), VA (a value follows), EN (a miss, mg), NF
// (not found), NS (not stored), EX (exists: a CAS mismatch), ME (meta
// debug's answer).
const (
	MetaHD = "HD"
	MetaVA = "VA "
	MetaEN = "EN"
	MetaNF = "NF"
	MetaNS = "NS"
	MetaEX = "EX"
	MetaME = "ME "
)

// The meta commands' fixed replies and parse errors, as memcached 1.6.18
// writes them.
const (
	ReplyMetaNoop = "MN\r\n"
	ReplyMetaMiss = "EN\r\n"
	// ReplyOpaqueTooLong answers a meta command with an O token over 32
	// bytes.
	ReplyOpaqueTooLong = "CLIENT_ERROR opaque token too long\r\n"

	ReplyMetaOptionsTooLongGet = "CLIENT_ERROR options flags are too long\r\n" // mg
	ReplyMetaOptionsTooLong    = "CLIENT_ERROR options flags too long\r\n"     // ms, md, ma
	ReplyMetaInvalidOrDupFlag  = "CLIENT_ERROR invalid or duplicate flag\r\n"
	ReplyMetaDuplicateFlag     = "CLIENT_ERROR duplicate flag\r\n"
	ReplyMetaInvalidFlag       = "CLIENT_ERROR invalid flag\r\n"
	ReplyMetaBadToken          = "CLIENT_ERROR bad token in command line format\r\n"
	ReplyMetaDecodingKey       = "CLIENT_ERROR error decoding key\r\n"
	ReplyMetaMLength           = "CLIENT_ERROR incorrect length for M token\r\n"
	ReplyMetaBadInitial        = "CLIENT_ERROR invalid numeric initial value\r\n"
	ReplyMetaBadDelta          = "CLIENT_ERROR invalid numeric delta value\r\n"
	ReplyMetaInvalidModeSet    = "CLIENT_ERROR invalid mode for ms M token\r\n"
	ReplyMetaInvalidModeArith  = "CLIENT_ERROR invalid mode for ma M token\r\n"
)

// memhive's own ASCII answers, where memcached has none: a credential
// lacking the capability a command needs (a credential without write
// may read its cache's counters but not wipe them: the dashboard's
// history and hit rates are built on them), a login refused by the
// throttle (the connection then closes), and stats cachedump, which would
// list a cache's keys, its users' data.
const (
	ReplyFlushDenied      = "CLIENT_ERROR flush_all needs the flush capability, which this credential lacks\r\n"
	ReplyStatsResetDenied = "CLIENT_ERROR stats reset needs the write capability, which this credential lacks\r\n"
	ReplyThrottled        = "CLIENT_ERROR too many authentication failures from this address; try again later\r\n"
	ReplyCachedumpDenied  = "CLIENT_ERROR stats cachedump not allowed\r\n"
)

// memhive's answers in a cluster that routes keys to their owners: a
// write whose owner node did not answer within the forward timeout (or
// could not be reached), and a forwarded request for a cache the owner
// does not serve (yet: the control plane's change has not reached it).
const (
	ReplyForwardFailed = "SERVER_ERROR owner node unavailable\r\n"
	ReplyUnknownCache  = "SERVER_ERROR cache not served by this node\r\n"
)

// Binary response bodies other than BinaryStatusText's: memcached's for
// SASL and for a store that finds no memory, then memhive's own beside
// the ASCII answers above.
const (
	BinarySASLMechs        = "PLAIN"         // SASL LIST MECHS
	BinaryAuthenticated    = "Authenticated" // a SASL AUTH or STEP that logged in
	BinaryAuthFailure      = "Auth failure." // one that did not
	BinaryOutOfMemoryStore = "out of memory storing object"

	BinaryFlushDenied      = "flush_all needs the flush capability"
	BinaryStatsResetDenied = "stats reset needs the write capability"
	BinaryThrottled        = "Too many authentication failures from this address; try again later."
)

// AppendValue appends one retrieval hit:
// "VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n".
func AppendValue(dst, key []byte, flags uint32, value []byte, cas uint64, withCAS bool) []byte {
	dst = append(dst, "VALUE "...)
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(flags), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(len(value)), 10)
	if withCAS {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, cas, 10)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// AppendEnd appends "END\r\n", the end of a retrieval or stats reply.
func AppendEnd(dst []byte) []byte { return append(dst, ReplyEnd...) }

// AppendUint appends "<v>\r\n", the reply to a successful incr or decr.
func AppendUint(dst []byte, v uint64) []byte {
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, "\r\n"...)
}

// AppendVersion appends "VERSION <version>\r\n".
func AppendVersion(dst []byte, version string) []byte {
	dst = append(dst, ReplyVersionPrefix...)
	dst = append(dst, version...)
	return append(dst, "\r\n"...)
}

// AppendStat appends one ASCII stats line: "STAT <name> <value>\r\n".
func AppendStat(dst []byte, name string, value []byte) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// AppendStatUint appends "STAT <name> <v>\r\n".
func AppendStatUint(dst []byte, name string, v uint64) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, "\r\n"...)
}

// AppendStatInt appends "STAT <name> <v>\r\n" for a signed value.
func AppendStatInt(dst []byte, name string, v int64) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, "\r\n"...)
}

// BinaryStatusText is the body memcached's write_bin_error sends for a
// status when it has no more specific message ("" for success and for
// AUTH_CONTINUE, which carries the SASL challenge instead).
func BinaryStatusText(status uint16) string {
	switch status {
	case StatusOK, StatusAuthContinue:
		return ""
	case StatusKeyNotFound:
		return "Not found"
	case StatusKeyExists:
		return "Data exists for key."
	case StatusTooLarge:
		return "Too large."
	case StatusInvalid:
		return "Invalid arguments"
	case StatusNotStored:
		return "Not stored."
	case StatusNonNumeric:
		return "Non-numeric server-side value for incr or decr"
	case StatusAuthError:
		return BinaryAuthFailure
	case StatusUnknownCommand:
		return "Unknown command"
	case StatusOutOfMemory:
		return "Out of memory"
	case StatusTemporaryFailure:
		return "Temporary failure"
	}
	return "UNHANDLED ERROR"
}

// AppendBinaryHeader appends a 24-byte response header (magic 0x81, data
// type 0). The caller appends extlen+keylen+... bodylen bytes of body after
// it.
func AppendBinaryHeader(dst []byte, opcode uint8, keylen uint16, extlen uint8, status uint16, bodylen uint32, opaque uint32, cas uint64) []byte {
	var h [BinaryHeaderLen]byte
	h[0] = MagicResponse
	h[1] = opcode
	binary.BigEndian.PutUint16(h[2:4], keylen)
	h[4] = extlen
	binary.BigEndian.PutUint16(h[6:8], status)
	binary.BigEndian.PutUint32(h[8:12], bodylen)
	binary.BigEndian.PutUint32(h[12:16], opaque)
	binary.BigEndian.PutUint64(h[16:24], cas)
	return append(dst, h[:]...)
}

// AppendBinaryStatus appends a response with status and, as body,
// memcached's message for it (BinaryStatusText), e.g. "Not found". The
// CAS is 0, as in every memcached error response.
func AppendBinaryStatus(dst []byte, opcode uint8, status uint16, opaque uint32) []byte {
	msg := BinaryStatusText(status)
	dst = AppendBinaryHeader(dst, opcode, 0, 0, status, uint32(len(msg)), opaque, 0)
	return append(dst, msg...)
}

// AppendBinaryError appends a response with status and a specific message
// body; memcached uses these for out-of-memory errors, e.g. "Out of memory
// allocating item" (its ASCII text without "SERVER_ERROR ").
func AppendBinaryError(dst []byte, opcode uint8, status uint16, opaque uint32, msg string) []byte {
	dst = AppendBinaryHeader(dst, opcode, 0, 0, status, uint32(len(msg)), opaque, 0)
	return append(dst, msg...)
}

// AppendBinaryOK appends a success response with an empty body (stored,
// deleted, flushed, NOOP, QUIT).
func AppendBinaryOK(dst []byte, opcode uint8, opaque uint32, cas uint64) []byte {
	return AppendBinaryHeader(dst, opcode, 0, 0, StatusOK, 0, opaque, cas)
}

// AppendBinaryGet appends a GET/GAT/TOUCH hit: 4 bytes of flags as extras,
// then key (only when non-nil: the K variants), then value (nil for TOUCH).
func AppendBinaryGet(dst []byte, opcode uint8, opaque uint32, cas uint64, flags uint32, key, value []byte) []byte {
	body := 4 + len(key) + len(value)
	dst = AppendBinaryHeader(dst, opcode, uint16(len(key)), 4, StatusOK, uint32(body), opaque, cas)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	dst = append(dst, key...)
	return append(dst, value...)
}

// AppendBinaryMiss appends the miss reply of GETK and GATK: status
// "key not found" whose key and body are the key itself, without text.
func AppendBinaryMiss(dst []byte, opcode uint8, opaque uint32, key []byte) []byte {
	if len(key) == 0 {
		return AppendBinaryStatus(dst, opcode, StatusKeyNotFound, opaque)
	}
	dst = AppendBinaryHeader(dst, opcode, uint16(len(key)), 0, StatusKeyNotFound, uint32(len(key)), opaque, 0)
	return append(dst, key...)
}

// AppendBinaryCounter appends an INCREMENT/DECREMENT success: the new
// value as an 8-byte body.
func AppendBinaryCounter(dst []byte, opcode uint8, opaque uint32, cas uint64, v uint64) []byte {
	dst = AppendBinaryHeader(dst, opcode, 0, 0, StatusOK, 8, opaque, cas)
	return binary.BigEndian.AppendUint64(dst, v)
}

// AppendBinaryValue appends a response whose body is value, without
// extras or key: VERSION, SASL LIST MECHS ("PLAIN"), SASL AUTH
// ("Authenticated"), AUTH_CONTINUE challenges.
func AppendBinaryValue(dst []byte, opcode uint8, status uint16, opaque uint32, cas uint64, value []byte) []byte {
	dst = AppendBinaryHeader(dst, opcode, 0, 0, status, uint32(len(value)), opaque, cas)
	return append(dst, value...)
}

// AppendBinaryStat appends one STAT response packet carrying name and
// value; nil, nil makes the empty packet that ends a stats reply.
func AppendBinaryStat(dst []byte, opaque uint32, key, value []byte) []byte {
	dst = AppendBinaryHeader(dst, OpStat, uint16(len(key)), 0, StatusOK, uint32(len(key)+len(value)), opaque, 0)
	dst = append(dst, key...)
	return append(dst, value...)
}
