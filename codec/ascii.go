package codec

import (
	"bytes"
	"math"
)

// Error lines the parser answers with. They are static: a Request's
// ErrReply points into them and must not be modified.
var (
	errLineError         = []byte(ReplyError)
	errLineBadFormat     = []byte(ReplyBadFormat)
	errLineBadDataChunk  = []byte(ReplyBadDataChunk)
	errLineTooLarge      = []byte(ReplyTooLarge)
	errLineInvalidExp    = []byte(ReplyInvalidExptime)
	errLineInvalidDelta  = []byte(ReplyInvalidDelta)
	errLineDeleteUsage   = []byte(ReplyDeleteUsage)
	errLineShutdownNotOn = []byte(ReplyShutdownDisabled)
)

// field is one space-separated token of a command line: line[off:end].
type field struct{ off, end int }

// lineTokens mirrors memcached's tokenize_command with MAX_TOKENS = 24: at
// most 23 real tokens; ntokens counts the terminal token too, as memcached
// does, so the token-count checks below read like memcached's.
type lineTokens struct {
	line    []byte
	f       [maxTokens - 1]field
	ntokens int // real tokens + 1
}

func (t *lineTokens) tok(i int) []byte { return t.line[t.f[i].off:t.f[i].end] }

// last is memcached's tokens[ntokens-2]: the last real token.
func (t *lineTokens) last() []byte { return t.tok(t.ntokens - 2) }

func (t *lineTokens) split(line []byte) {
	t.line = line
	n := 0
	start := -1
	for i := 0; i < len(line); i++ {
		if line[i] == ' ' {
			if start >= 0 {
				t.f[n] = field{start, i}
				n++
				start = -1
				if n == maxTokens-1 {
					break
				}
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 && n < maxTokens-1 {
		t.f[n] = field{start, len(line)}
		n++
	}
	t.ntokens = n + 1
}

// ParseASCII parses one text-protocol request at the start of buf into req
// and returns how many bytes it used. It returns ErrIncomplete with n == 0
// when buf holds only part of a request, and never any other error:
// protocol errors are requests with Cmd == CmdError (see the package
// documentation for what the caller does with each field).
//
// Storage commands are returned only with their whole data block buffered
// (n covers the line and the block) unless refused first, so a prefix of a
// valid request always yields ErrIncomplete.
func (p *Parser) ParseASCII(buf []byte, req *Request) (n int, err error) {
	req.reset()
	if len(buf) == 0 {
		return 0, ErrIncomplete
	}
	window := buf
	if len(window) > readBufferSize {
		window = window[:readBufferSize]
	}
	eol := bytes.IndexByte(window, '\n')
	if eol < 0 {
		// memcached's try_read_command_ascii: past 2048 bytes without a
		// newline only a huge multi-get is allowed to go on.
		if len(window) <= longLine {
			return 0, ErrIncomplete
		}
		if !longGetLine(buf) {
			req.Cmd = CmdError
			req.Close = true
			req.Abort = true
			return len(buf), nil
		}
		if eol = bytes.IndexByte(buf, '\n'); eol < 0 {
			return 0, ErrIncomplete
		}
	}
	n = eol + 1
	line := buf[:eol]
	if eol > 1 && line[eol-1] == '\r' {
		line = line[:eol-1]
	}
	// memcached treats the line as a C string.
	if z := bytes.IndexByte(line, 0); z >= 0 {
		line = line[:z]
	}
	var t lineTokens
	t.split(line)
	return p.dispatchASCII(buf, n, &t, req)
}

// longGetLine reports whether a line with no newline yet may keep growing:
// memcached allows that only for "get " and "gets " after at most 100
// leading spaces.
func longGetLine(buf []byte) bool {
	i := 0
	for i < len(buf) && buf[i] == ' ' {
		i++
	}
	if i > 100 {
		return false
	}
	rest := buf[i:]
	return bytes.HasPrefix(rest, []byte("get ")) || bytes.HasPrefix(rest, []byte("gets "))
}

// dispatchASCII follows process_command_ascii's decision tree: by first
// letter, then by name, then by token count.
func (p *Parser) dispatchASCII(buf []byte, n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens < 2 || t.f[0].end-t.f[0].off < 2 {
		return errorLine(req, n, errLineError)
	}
	cmd := t.tok(0)
	switch first := cmd[0]; {
	case first == 'm' && len(cmd) == 2:
		return p.metaASCII(buf, n, t, req)
	case first == 'g':
		if t.ntokens < 3 {
			return errorLine(req, n, errLineError)
		}
		switch string(cmd) {
		case "get":
			return retrieveASCII(n, t, req, CmdGet)
		case "gets":
			return retrieveASCII(n, t, req, CmdGets)
		case "gat":
			return retrieveASCII(n, t, req, CmdGat)
		case "gats":
			return retrieveASCII(n, t, req, CmdGats)
		}
		return errorLine(req, n, errLineError)
	case first == 's':
		switch string(cmd) {
		case "set":
			return p.updateASCII(buf, n, t, req, CmdSet)
		case "stats":
			req.Cmd = CmdStats
			appendArgs(t, req)
			return n, nil
		case "shutdown":
			// memhive never enables memcached's -A.
			return errorLine(req, n, errLineShutdownNotOn)
		case "slabs":
			return admin(n, t, req)
		}
		return errorLine(req, n, errLineError)
	case first == 'a':
		switch string(cmd) {
		case "add":
			return p.updateASCII(buf, n, t, req, CmdAdd)
		case "append":
			return p.updateASCII(buf, n, t, req, CmdAppend)
		}
		return errorLine(req, n, errLineError)
	case first == 'c':
		switch string(cmd) {
		case "cas":
			return p.updateASCII(buf, n, t, req, CmdCas)
		case "cache_memlimit":
			if t.ntokens != 3 && t.ntokens != 4 {
				return errorLine(req, n, errLineError)
			}
			return admin(n, t, req)
		}
		return errorLine(req, n, errLineError)
	case first == 'i':
		if string(cmd) == "incr" {
			return arithmeticASCII(n, t, req, CmdIncr)
		}
		return errorLine(req, n, errLineError)
	case first == 'd':
		switch string(cmd) {
		case "delete":
			return deleteASCII(n, t, req)
		case "decr":
			return arithmeticASCII(n, t, req, CmdDecr)
		}
		return errorLine(req, n, errLineError)
	case first == 't':
		if string(cmd) == "touch" {
			return touchASCII(n, t, req)
		}
		return errorLine(req, n, errLineError)
	}
	switch string(cmd) {
	case "replace":
		return p.updateASCII(buf, n, t, req, CmdReplace)
	case "prepend":
		return p.updateASCII(buf, n, t, req, CmdPrepend)
	case "bget":
		// An ancient alias memcached still answers like get.
		if t.ntokens < 3 {
			return errorLine(req, n, errLineError)
		}
		return retrieveASCII(n, t, req, CmdGet)
	case "flush_all":
		return flushAllASCII(n, t, req)
	case "version":
		req.Cmd = CmdVersion
		return n, nil
	case "quit":
		req.Cmd = CmdQuit
		req.Flush = true
		return n, nil
	case "verbosity":
		return verbosityASCII(n, t, req)
	case "lru", "extstore":
		if t.ntokens < 3 {
			return errorLine(req, n, errLineError)
		}
		return admin(n, t, req)
	case "lru_crawler", "watch", "refresh_certs":
		return admin(n, t, req)
	}
	// memcached hangs up on what looks like an HTTP request line.
	if bytes.HasPrefix(t.last(), []byte("HTTP/")) {
		req.Cmd = CmdError
		req.Close = true
		req.Abort = true
		return n, nil
	}
	return errorLine(req, n, errLineError)
}

// errorLine makes req a protocol error answered by reply (nil: nothing).
func errorLine(req *Request, n int, reply []byte) (int, error) {
	req.Cmd = CmdError
	req.ErrReply = reply
	return n, nil
}

// failASCII is errorLine for commands that honour noreply: memcached's
// out_string writes nothing once noreply was seen, errors included.
func failASCII(req *Request, n int, reply []byte) (int, error) {
	if req.NoReply {
		reply = nil
	}
	return errorLine(req, n, reply)
}

// noreply mirrors set_noreply_maybe: only the last token counts.
func noreply(t *lineTokens) bool {
	return string(t.last()) == "noreply"
}

// appendArgs puts the tokens after the command name in req.Keys.
func appendArgs(t *lineTokens, req *Request) {
	for i := 1; i < t.ntokens-1; i++ {
		req.Keys = append(req.Keys, t.tok(i))
	}
}

func admin(n int, t *lineTokens, req *Request) (int, error) {
	req.Cmd = CmdAdmin
	req.Key = t.tok(0)
	appendArgs(t, req)
	return n, nil
}

// retrieveASCII is process_get_command: keys are every space-separated
// field after the command (and after gat's exptime), however many; a key
// over 250 bytes stops the scan with an error after the keys before it.
func retrieveASCII(n int, t *lineTokens, req *Request, cmd Command) (int, error) {
	req.Cmd = cmd
	pos := t.f[1].off
	if cmd == CmdGat || cmd == CmdGats {
		exp, ok := safeStrtol(t.tok(1))
		if !ok {
			return errorLine(req, n, errLineInvalidExp)
		}
		req.Exptime = int64(exp)
		pos = t.f[1].end
	}
	line := t.line
	for pos < len(line) {
		if line[pos] == ' ' {
			pos++
			continue
		}
		end := pos + 1
		for end < len(line) && line[end] != ' ' {
			end++
		}
		if end-pos > MaxKeyLen {
			req.ErrReply = errLineBadFormat
			break
		}
		req.Keys = append(req.Keys, line[pos:end:end])
		pos = end
	}
	if len(req.Keys) > 0 {
		req.Key = req.Keys[0]
	}
	req.Flush = req.ErrReply == nil
	return n, nil
}

// updateASCII is process_update_command plus complete_nread_ascii.
func (p *Parser) updateASCII(buf []byte, n int, t *lineTokens, req *Request, cmd Command) (int, error) {
	want := 6
	if cmd == CmdCas {
		want = 7
	}
	if t.ntokens != want && t.ntokens != want+1 {
		return errorLine(req, n, errLineError)
	}
	req.NoReply = noreply(t)
	key := t.tok(1)
	if len(key) > MaxKeyLen {
		return failASCII(req, n, errLineBadFormat)
	}
	flags, ok1 := safeStrtoul(t.tok(2))
	exptime, ok2 := safeStrtol(t.tok(3))
	vlen, ok3 := safeStrtol(t.tok(4))
	if !ok1 || !ok2 || !ok3 {
		return failASCII(req, n, errLineBadFormat)
	}
	var cas uint64
	if cmd == CmdCas {
		var ok bool
		if cas, ok = SafeStrtoull(t.tok(5)); !ok {
			return failASCII(req, n, errLineBadFormat)
		}
	}
	if vlen < 0 || vlen > math.MaxInt32-2 {
		return failASCII(req, n, errLineBadFormat)
	}
	size := int(vlen)
	if p.tooLarge(len(key), size) {
		req.Swallow = size + 2
		req.Refused = cmd
		req.Key = key
		return failASCII(req, n, errLineTooLarge)
	}
	end := n + size + 2
	if len(buf) < end {
		req.reset()
		return 0, ErrIncomplete
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		req.BadData = true
		req.Key = key
		req.Value = buf[n : n+size : n+size]
		return failASCII(req, end, errLineBadDataChunk)
	}
	req.Cmd = cmd
	req.Key = key
	req.Flags = flags
	req.Exptime = int64(exptime)
	req.CAS = cas
	req.Value = buf[n : n+size : n+size]
	return end, nil
}

func touchASCII(n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens != 4 && t.ntokens != 5 {
		return errorLine(req, n, errLineError)
	}
	req.NoReply = noreply(t)
	key := t.tok(1)
	if len(key) > MaxKeyLen {
		return failASCII(req, n, errLineBadFormat)
	}
	exp, ok := safeStrtol(t.tok(2))
	if !ok {
		return failASCII(req, n, errLineInvalidExp)
	}
	req.Cmd = CmdTouch
	req.Key = key
	req.Exptime = int64(exp)
	return n, nil
}

func arithmeticASCII(n int, t *lineTokens, req *Request, cmd Command) (int, error) {
	if t.ntokens != 4 && t.ntokens != 5 {
		return errorLine(req, n, errLineError)
	}
	req.NoReply = noreply(t)
	key := t.tok(1)
	if len(key) > MaxKeyLen {
		return failASCII(req, n, errLineBadFormat)
	}
	delta, ok := SafeStrtoull(t.tok(2))
	if !ok {
		return failASCII(req, n, errLineInvalidDelta)
	}
	req.Cmd = cmd
	req.Key = key
	req.Delta = delta
	return n, nil
}

// deleteASCII is process_delete_command: "delete <key> [0] [noreply]", the
// 0 being what is left of the old hold time.
func deleteASCII(n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens < 3 || t.ntokens > 5 {
		return errorLine(req, n, errLineError)
	}
	if t.ntokens > 3 {
		holdIsZero := string(t.tok(2)) == "0"
		req.NoReply = noreply(t)
		valid := (t.ntokens == 4 && (holdIsZero || req.NoReply)) ||
			(t.ntokens == 5 && holdIsZero && req.NoReply)
		if !valid {
			return failASCII(req, n, errLineDeleteUsage)
		}
	}
	key := t.tok(1)
	if len(key) > MaxKeyLen {
		return failASCII(req, n, errLineBadFormat)
	}
	req.Cmd = CmdDelete
	req.Key = key
	return n, nil
}

func verbosityASCII(n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens != 3 && t.ntokens != 4 {
		return errorLine(req, n, errLineError)
	}
	req.NoReply = noreply(t)
	level, ok := safeStrtoul(t.tok(1))
	if !ok {
		return failASCII(req, n, errLineBadFormat)
	}
	req.Cmd = CmdVerbosity
	req.Delta = uint64(level)
	return n, nil
}

// flushAllASCII is process_flush_all_command: the delay is read only when
// the token count says there is one, so "flush_all 10 x" flushes in 10 s.
func flushAllASCII(n int, t *lineTokens, req *Request) (int, error) {
	if t.ntokens < 2 || t.ntokens > 4 {
		return errorLine(req, n, errLineError)
	}
	req.NoReply = noreply(t)
	without := 2
	if req.NoReply {
		without = 3
	}
	if t.ntokens != without {
		exp, ok := safeStrtol(t.tok(1))
		if !ok {
			req.BadFlush = true
			return failASCII(req, n, errLineInvalidExp)
		}
		req.Exptime = int64(exp)
	}
	req.Cmd = CmdFlushAll
	return n, nil
}
