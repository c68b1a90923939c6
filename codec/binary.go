package codec

import "encoding/binary"

// Binary protocol magic bytes.
const (
	MagicRequest  = 0x80
	MagicResponse = 0x81
)

// BinaryHeaderLen is the length of a binary request or response header.
const BinaryHeaderLen = 24

// Binary opcodes (protocol_binary.h).
const (
	OpGet        = 0x00
	OpSet        = 0x01
	OpAdd        = 0x02
	OpReplace    = 0x03
	OpDelete     = 0x04
	OpIncrement  = 0x05
	OpDecrement  = 0x06
	OpQuit       = 0x07
	OpFlush      = 0x08
	OpGetQ       = 0x09
	OpNoop       = 0x0a
	OpVersion    = 0x0b
	OpGetK       = 0x0c
	OpGetKQ      = 0x0d
	OpAppend     = 0x0e
	OpPrepend    = 0x0f
	OpStat       = 0x10
	OpSetQ       = 0x11
	OpAddQ       = 0x12
	OpReplaceQ   = 0x13
	OpDeleteQ    = 0x14
	OpIncrementQ = 0x15
	OpDecrementQ = 0x16
	OpQuitQ      = 0x17
	OpFlushQ     = 0x18
	OpAppendQ    = 0x19
	OpPrependQ   = 0x1a
	// OpVerbosity is in the protocol specification, but memcached 1.6.18
	// answers it, like the range opcodes 0x30-0x3c, with Unknown command.
	OpVerbosity     = 0x1b
	OpTouch         = 0x1c
	OpGAT           = 0x1d
	OpGATQ          = 0x1e
	OpSASLListMechs = 0x20
	OpSASLAuth      = 0x21
	OpSASLStep      = 0x22
	OpGATK          = 0x23
	OpGATKQ         = 0x24
)

// Binary response statuses (protocol_binary.h).
const (
	StatusOK             uint16 = 0x00
	StatusKeyNotFound    uint16 = 0x01
	StatusKeyExists      uint16 = 0x02
	StatusTooLarge       uint16 = 0x03
	StatusInvalid        uint16 = 0x04
	StatusNotStored      uint16 = 0x05
	StatusNonNumeric     uint16 = 0x06
	StatusAuthError      uint16 = 0x20
	StatusAuthContinue   uint16 = 0x21
	StatusUnknownCommand uint16 = 0x81
	StatusOutOfMemory    uint16 = 0x82
	// StatusTemporaryFailure answers a forwarded request whose owner node
	// did not answer in time or could not be reached (memhive's use of
	// the spec's 0x86): the client may retry.
	StatusTemporaryFailure uint16 = 0x86
)

// IsBinary reports whether a connection whose first byte is first speaks
// the binary protocol; memcached decides once per connection this way.
func IsBinary(first byte) bool { return first == MagicRequest }

// binaryOp describes how dispatch_bin_command treats an opcode.
type binaryOp struct {
	cmd     Command
	quiet   bool
	withKey bool
	shape   uint8
}

// Request shapes: the extras/key/body combinations memcached accepts for
// an opcode; anything else is answered "Invalid arguments" and closes the
// connection.
const (
	shapeUnknown uint8 = iota // not an opcode memcached handles
	shapeEmpty                // no extras, key or body (VERSION, NOOP, QUIT, SASL LIST)
	shapeFlush                // no key, body == extras, extras 0 or 4
	shapeStore                // extras 8, key, body >= key+8; value follows
	shapeGet                  // no extras, key, body == key
	shapeDelete               // as shapeGet
	shapeArith                // extras 20, key, body == key+20
	shapeConcat               // no extras, key; value follows (APPEND, PREPEND)
	shapeStat                 // no extras; optional key; the rest of the body is left unread
	shapeSASL                 // no extras, key (mechanism); data follows
	shapeTouch                // extras 4, key; the rest of the body is left unread
)

var binaryOps = func() (t [256]binaryOp) {
	set := func(op uint8, cmd Command, shape uint8, quiet, withKey bool) {
		t[op] = binaryOp{cmd: cmd, quiet: quiet, withKey: withKey, shape: shape}
	}
	set(OpGet, CmdGet, shapeGet, false, false)
	set(OpGetQ, CmdGet, shapeGet, true, false)
	set(OpGetK, CmdGet, shapeGet, false, true)
	set(OpGetKQ, CmdGet, shapeGet, true, true)
	set(OpSet, CmdSet, shapeStore, false, false)
	set(OpSetQ, CmdSet, shapeStore, true, false)
	set(OpAdd, CmdAdd, shapeStore, false, false)
	set(OpAddQ, CmdAdd, shapeStore, true, false)
	set(OpReplace, CmdReplace, shapeStore, false, false)
	set(OpReplaceQ, CmdReplace, shapeStore, true, false)
	set(OpAppend, CmdAppend, shapeConcat, false, false)
	set(OpAppendQ, CmdAppend, shapeConcat, true, false)
	set(OpPrepend, CmdPrepend, shapeConcat, false, false)
	set(OpPrependQ, CmdPrepend, shapeConcat, true, false)
	set(OpDelete, CmdDelete, shapeDelete, false, false)
	set(OpDeleteQ, CmdDelete, shapeDelete, true, false)
	set(OpIncrement, CmdIncr, shapeArith, false, false)
	set(OpIncrementQ, CmdIncr, shapeArith, true, false)
	set(OpDecrement, CmdDecr, shapeArith, false, false)
	set(OpDecrementQ, CmdDecr, shapeArith, true, false)
	set(OpQuit, CmdQuit, shapeEmpty, false, false)
	set(OpQuitQ, CmdQuit, shapeEmpty, true, false)
	set(OpFlush, CmdFlushAll, shapeFlush, false, false)
	set(OpFlushQ, CmdFlushAll, shapeFlush, true, false)
	set(OpNoop, CmdNoop, shapeEmpty, false, false)
	set(OpVersion, CmdVersion, shapeEmpty, false, false)
	set(OpStat, CmdStats, shapeStat, false, false)
	set(OpSASLListMechs, CmdSASLList, shapeEmpty, false, false)
	set(OpSASLAuth, CmdSASLAuth, shapeSASL, false, false)
	set(OpSASLStep, CmdSASLStep, shapeSASL, false, false)
	set(OpTouch, CmdTouch, shapeTouch, false, false)
	set(OpGAT, CmdGat, shapeTouch, false, false)
	set(OpGATQ, CmdGat, shapeTouch, true, false)
	set(OpGATK, CmdGat, shapeTouch, false, true)
	set(OpGATKQ, CmdGat, shapeTouch, true, true)
	return t
}()

// ParseBinary parses one binary-protocol request at the start of buf into
// req and returns how many bytes it used. It returns ErrIncomplete with
// n == 0 when buf holds only part of a request, and never any other error:
// protocol errors are requests with Cmd == CmdError and Status set (0 when
// memcached closes without a reply).
//
// As in memcached's try_read_command_binary and dispatch_bin_command, a
// request is judged once its header, extras and key are buffered; a
// storage or SASL request is returned only with its whole value buffered,
// unless refused first. For TOUCH, GAT* and STAT memcached reads no more
// than header+extras+key: any further body bytes are the next request's.
func (p *Parser) ParseBinary(buf []byte, req *Request) (n int, err error) {
	req.reset()
	if len(buf) < BinaryHeaderLen {
		return 0, ErrIncomplete
	}
	req.Binary = true
	req.Opcode = buf[1]
	req.Opaque = binary.BigEndian.Uint32(buf[12:16])
	if buf[0] != MagicRequest {
		req.Cmd = CmdError
		req.Close = true
		req.Abort = true
		return BinaryHeaderLen, nil
	}
	keylen := int(binary.BigEndian.Uint16(buf[2:4]))
	extlen := int(buf[4])
	bodylen := binary.BigEndian.Uint32(buf[8:12])
	cas := binary.BigEndian.Uint64(buf[16:24])
	head := BinaryHeaderLen + extlen + keylen
	if head > readBufferSize {
		// memcached's read buffer can never hold it: it closes once the
		// buffer is full and one more byte arrives.
		if len(buf) > readBufferSize {
			req.Cmd = CmdError
			req.Close = true
			req.Abort = true
			return len(buf), nil
		}
		return 0, ErrIncomplete
	}
	if len(buf) < head {
		return 0, ErrIncomplete
	}
	if uint32(keylen+extlen) > bodylen {
		return binaryError(req, head, StatusUnknownCommand, 0, true, true)
	}
	if keylen > MaxKeyLen {
		return binaryError(req, head, StatusInvalid, 0, true, true)
	}
	op := &binaryOps[req.Opcode]
	ext := buf[BinaryHeaderLen : BinaryHeaderLen+extlen]
	key := buf[BinaryHeaderLen+extlen : head : head]
	body := int(bodylen)
	valid := false
	switch op.shape {
	case shapeUnknown:
		// memcached swallows the whole body after having read the extras
		// and key already: the extras+key bytes after the packet go too.
		swallow := cInt(bodylen)
		return binaryError(req, head, StatusUnknownCommand, swallow, false, swallow <= 0)
	case shapeEmpty:
		valid = extlen == 0 && keylen == 0 && body == 0
	case shapeFlush:
		valid = keylen == 0 && body == extlen && (extlen == 0 || extlen == 4)
	case shapeStore:
		valid = extlen == 8 && keylen != 0 && body >= keylen+8
	case shapeGet, shapeDelete:
		valid = extlen == 0 && body == keylen && keylen > 0
	case shapeArith:
		valid = keylen > 0 && extlen == 20 && body == keylen+extlen
	case shapeConcat, shapeSASL:
		valid = keylen > 0 && extlen == 0
	case shapeStat:
		valid = extlen == 0
	case shapeTouch:
		valid = extlen == 4 && keylen != 0
	}
	if !valid {
		return binaryError(req, head, StatusInvalid, 0, true, true)
	}
	req.Cmd = op.cmd
	req.Flush = op.cmd == CmdNoop || op.cmd == CmdQuit
	req.Quiet = op.quiet
	req.WithKey = op.withKey
	if keylen > 0 {
		req.Key = key
	}
	req.CAS = cas
	switch op.shape {
	case shapeFlush:
		if extlen == 4 {
			req.Exptime = int64(binary.BigEndian.Uint32(ext))
		}
	case shapeArith:
		req.Delta = binary.BigEndian.Uint64(ext[0:8])
		req.Initial = binary.BigEndian.Uint64(ext[8:16])
		req.Exptime = int64(binary.BigEndian.Uint32(ext[16:20]))
	case shapeTouch:
		req.Exptime = int64(binary.BigEndian.Uint32(ext))
	case shapeStore, shapeConcat:
		vlen := cInt(bodylen - uint32(keylen+extlen))
		if vlen < 0 || p.tooLarge(keylen, vlen) {
			req.Refused = op.cmd
			// No flush even without a swallow: process_bin_update
			// overrides write_bin_error's conn_mwrite with conn_swallow.
			return binaryError(req, head, StatusTooLarge, vlen, false, false)
		}
		if extlen == 8 {
			req.Flags = binary.BigEndian.Uint32(ext[0:4])
			req.Exptime = int64(binary.BigEndian.Uint32(ext[4:8]))
		}
		return binaryValue(buf, req, head, vlen)
	case shapeSASL:
		vlen := cInt(bodylen - uint32(keylen))
		if keylen > maxSASLMechLen {
			return binaryError(req, head, StatusInvalid, vlen, false, false)
		}
		if p.saslTooLarge(keylen, vlen) {
			return binaryError(req, head, StatusOutOfMemory, vlen, false, false)
		}
		return binaryValue(buf, req, head, vlen)
	}
	return head, nil
}

// cInt converts a length the way memcached stores it in a C int: 2^31 and
// more become negative, and memcached then swallows nothing.
func cInt(x uint32) int { return int(int32(x)) }

// binaryValue finishes a request whose value follows the key.
func binaryValue(buf []byte, req *Request, head, vlen int) (int, error) {
	end := head + vlen
	if len(buf) < end {
		req.reset()
		return 0, ErrIncomplete
	}
	req.Value = buf[head:end:end]
	return end, nil
}

// binaryError makes req a protocol error answered with status. The
// opcode, opaque and (for a refused item) key stay set for the reply.
func binaryError(req *Request, n int, status uint16, swallow int, closeAfter, flush bool) (int, error) {
	req.Cmd = CmdError
	req.Flush = flush
	req.Status = status
	req.Swallow = max(swallow, 0)
	req.Close = closeAfter
	req.Quiet = false
	req.WithKey = false
	if req.Refused == CmdNone {
		req.Key = nil
	}
	return n, nil
}
