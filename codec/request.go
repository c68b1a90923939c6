package codec

import "errors"

// ErrIncomplete is returned, with n == 0, when buf ends before the request
// does. Nothing was used: parse again from the same offset with more bytes.
var ErrIncomplete = errors.New("codec: incomplete request")

// Command is what a parsed request asks for.
type Command uint8

// Commands. The ASCII and binary protocols share them; Request.Binary and
// Request.Opcode tell the protocols apart.
const (
	CmdNone Command = iota

	// Retrieval. ASCII: Keys holds the keys (Key == Keys[0], nil when a
	// gat/gats line names no key). Binary: Key; WithKey for GETK/GATK(Q).
	CmdGet  // ASCII get and bget; binary GET, GETQ, GETK, GETKQ
	CmdGets // ASCII gets
	CmdGat  // ASCII gat; binary GAT, GATQ, GATK, GATKQ
	CmdGats // ASCII gats

	// Storage: Key, Flags, Exptime, Value; CAS for ASCII cas and from the
	// binary header (binary has no CmdCas: a non-zero CAS on SET, ADD or
	// REPLACE makes memcached compare-and-swap).
	CmdSet
	CmdAdd
	CmdReplace
	CmdAppend
	CmdPrepend
	CmdCas

	CmdTouch  // Key, Exptime; binary TOUCH answers flags but no value
	CmdDelete // Key; binary: CAS (non-zero must match)
	CmdIncr   // Key, Delta; binary: Initial, Exptime (0xffffffff: do not create), CAS
	CmdDecr   // as CmdIncr

	CmdFlushAll  // Exptime: the delay (<= 0 means now)
	CmdStats     // ASCII: Keys holds the arguments (at most 22, as memcached tokenizes); binary: Key is the group (nil for all)
	CmdVersion   // no arguments
	CmdVerbosity // ASCII only: Delta is the level (memcached caps it at 2)
	CmdQuit      // close without a reply (binary QUIT answers first unless Quiet)

	CmdNoop     // binary NOOP
	CmdSASLList // binary SASL LIST MECHS
	CmdSASLAuth // binary SASL AUTH: Key is the mechanism, Value the data
	CmdSASLStep // binary SASL STEP: Key is the mechanism, Value the data

	CmdError // protocol error: see Request.ErrReply, Status, Swallow, Close, Abort

	// The meta commands (ASCII only): Key (decoded when base64), and
	// Request.Meta for the flags; ms has Value, and Flags, Exptime, CAS
	// from F, T, C; ma has Delta (D, default 1) and Initial (J).
	CmdMetaGet    // mg
	CmdMetaSet    // ms
	CmdMetaDelete // md
	CmdMetaArith  // ma
	CmdMetaNoop   // mn
	CmdMetaDebug  // me

	// CmdAdmin is an ASCII operator command memcached 1.6.18 has but the
	// codec does not interpret: Key is its name (slabs, cache_memlimit,
	// lru_crawler, watch, lru, extstore, refresh_certs) and Keys its
	// argument tokens. The token counts memcached requires first are already
	// checked (a wrong count is CmdError "ERROR").
	CmdAdmin
)

var commandNames = [...]string{
	CmdNone: "none", CmdGet: "get", CmdGets: "gets", CmdGat: "gat", CmdGats: "gats",
	CmdSet: "set", CmdAdd: "add", CmdReplace: "replace", CmdAppend: "append",
	CmdPrepend: "prepend", CmdCas: "cas", CmdTouch: "touch", CmdDelete: "delete",
	CmdIncr: "incr", CmdDecr: "decr", CmdFlushAll: "flush_all", CmdStats: "stats",
	CmdVersion: "version", CmdVerbosity: "verbosity", CmdQuit: "quit", CmdNoop: "noop",
	CmdSASLList: "sasl_list", CmdSASLAuth: "sasl_auth", CmdSASLStep: "sasl_step",
	CmdError: "error", CmdAdmin: "admin",
	CmdMetaGet: "mg", CmdMetaSet: "ms", CmdMetaDelete: "md", CmdMetaArith: "ma",
	CmdMetaNoop: "mn", CmdMetaDebug: "me",
}

// String returns the command's lower-case name, for logs and tests.
func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "unknown"
}

// Limits that memcached 1.6.18 applies and the parser mirrors.
const (
	// MaxKeyLen is the longest key memcached accepts (KEY_MAX_LENGTH).
	MaxKeyLen = 250
	// DefaultMaxItemSize is the key+value limit when Parser.MaxItemSize
	// is 0: key + value must be less than it.
	DefaultMaxItemSize = 1 << 20
	// readBufferSize is memcached's per-connection read buffer
	// (READ_BUFFER_SIZE): it never looks further ahead than this for a
	// command line or a binary header+extras+key.
	readBufferSize = 16384
	// longLine is how many buffered bytes without "\n" memcached tolerates
	// before it closes the connection (unless the line is a get/gets).
	longLine = 2048
	// maxTokens is memcached's MAX_TOKENS: a line is split into at most 23
	// tokens plus a terminal one that holds the rest.
	maxTokens = 24
	// maxSASLMechLen is memcached's MAX_SASL_MECH_LEN.
	maxSASLMechLen = 32
)

// Request is one parsed request. Its byte-slice fields alias the buffer
// passed to the parser and are valid only until the caller consumes or
// discards that buffer; never keep them longer. The caller owns the Request
// and reuses it across calls: each parse resets every field, keeping only
// the capacity of Keys, so parsing does not allocate once Keys has grown to
// the longest multi-get seen. A Request is not safe for concurrent use.
type Request struct {
	Cmd    Command
	Binary bool

	Key     []byte   // the key; ASCII retrieval: Keys[0]; CmdAdmin: the command name
	Keys    [][]byte // ASCII retrieval keys; ASCII stats/admin: argument tokens. Reused: the parser appends to Keys[:0]
	Value   []byte   // data block without the trailing "\r\n"; SASL data
	Flags   uint32
	Exptime int64  // as sent: ASCII is a 32-bit signed value (may be negative), binary an unsigned 32-bit one
	CAS     uint64 // ASCII cas unique; binary header CAS
	Delta   uint64 // incr/decr amount; verbosity level
	Initial uint64 // binary incr/decr initial value
	NoReply bool   // ASCII "noreply": write nothing for this request (errors included)

	// Binary only.
	Opcode  uint8  // the request opcode, echoed in the reply header
	Opaque  uint32 // echoed in the reply header
	Quiet   bool   // a quiet opcode (GETQ, SETQ, ...): no reply on success, nor on a get miss
	WithKey bool   // GETK, GETKQ, GATK, GATKQ: the reply carries the key, also on a miss

	// Protocol errors (Cmd == CmdError), and the ASCII multi-get error.
	//
	// ErrReply is the exact ASCII text to write (nil or empty: write
	// nothing, as memcached does under noreply). It points to static
	// memory: do not modify it.
	ErrReply []byte
	// Status is the binary status to answer with AppendBinaryStatus; 0
	// means write nothing.
	Status uint16
	// Swallow is how many input bytes to discard after the n returned
	// (memcached's conn_swallow): the data of a refused storage command, the
	// body of an unknown binary command. It may exceed what is buffered.
	Swallow int
	// Close asks the caller to close the connection after writing the reply.
	Close bool
	// Abort asks the caller to close the connection at once: memcached
	// drops the replies it has not yet written (bad binary magic, an HTTP
	// request line, a text line too long).
	Abort bool
	// Flush reports that memcached writes out every reply it has queued
	// on the connection right after answering this request (conn_mwrite):
	// an ASCII retrieval answered with END and ASCII quit; binary NOOP and
	// QUIT, and the binary protocol errors answered without swallowing
	// (Invalid arguments, Unknown command with an empty body). memcached
	// also writes at the end of the buffered input (but not while it waits
	// for a data block or swallows), at the end of a batch of requests
	// handled in one read event (-R, 20 by default; see drive_machine's
	// nreqs), and, at execution time, after every binary reply with a
	// non-zero status except the key-carrying miss of GETK/GATK. Abort and
	// a multi-get key error drop only what was queued after the last such
	// point.
	Flush bool
	// Refused is the storage command memcached refused because its item
	// would exceed MaxItemSize (Key holds its key); CmdNone otherwise.
	// memcached then unlinks Key's current item when Refused is CmdSet
	// (ASCII set; binary SET and SETQ, with or without CAS), and the ASCII
	// protocol counts it in store_too_large (binary does not).
	Refused Command
	// BadData reports a text storage command (set, add, replace, append,
	// prepend, cas, ms) whose data block did not end in "\r\n", answered
	// with CLIENT_ERROR bad data chunk. memcached counts it in cmd_set
	// (complete_nread_ascii counts before it checks the block), so the
	// caller counts it too: Key is its key and Value its data block
	// (aliasing the input, like every slice here).
	BadData bool
	// BadFlush reports a flush_all refused for its delay (CLIENT_ERROR
	// invalid exptime argument): memcached counts it in cmd_flush, which
	// it counts before it reads the delay, so the caller counts it too.
	BadFlush bool

	meta *Meta // the meta commands' flags, allocated on first use
}

// Parser parses requests. Its fields are read-only after first use, so one
// Parser is safe for concurrent use by every connection.
type Parser struct {
	// MaxItemSize is the largest key+value a storage command may carry;
	// 0 means DefaultMaxItemSize. A larger one is refused before its data
	// arrives: the reply is memcached's too-large error and Swallow covers
	// the data.
	MaxItemSize int
}

func (p *Parser) maxItem() int {
	if p.MaxItemSize > 0 {
		return p.MaxItemSize
	}
	return DefaultMaxItemSize
}

// tooLarge reports whether an item of key+value bytes reaches the limit:
// MemCachier's rule is that the pair "must still be less than 1MB", so
// with the default limit 1,048,575 bytes are stored and 1,048,576 are not.
// memcached's own test (item_size_ok) also counts its ~50-byte item
// header; the boundary is ours to choose.
func (p *Parser) tooLarge(nkey, vlen int) bool {
	return nkey+vlen >= p.maxItem()
}

// reset clears req for a new parse, keeping Keys' storage.
func (req *Request) reset() {
	*req = Request{Keys: req.Keys[:0], meta: req.meta}
}
