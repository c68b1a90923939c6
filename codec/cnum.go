package codec

// memhive's one decimal number parser, reading numbers exactly as
// memcached 1.6.18 does: its safe_strtoull, safe_strtoul and safe_strtol
// (util.c) over glibc's strtoull and strtol on 64-bit Linux, quirks
// included. Leading white space and a sign are accepted, the number may be
// followed by white space and anything after it, a '-' negates an unsigned
// number modulo 2^64, and the 32-bit variants silently truncate a 64-bit
// result.
//
// memhive must accept and refuse the numbers memcached does in two places:
// the numbers of a command line (here) and the value an incr or decr reads
// (engine). The engine imports nothing of the protocol's, so the server
// hands it SafeStrtoull with each incr and decr
// (engine.DeltaOptions.ParseValue): the two cannot drift apart.
//
// Each function reads s as a C string: it ends at its first NUL byte, or
// at len(s), which counts as the NUL (a token of a command line) or as
// white space (an item's value, which memcached follows with "\r\n").
// None of them allocates or keeps s.

import "bytes"

// isSpace is C's isspace in the "C" locale: space, \t, \n, \v, \f, \r.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// SafeStrtoull is memcached's safe_strtoull: strtoull(s, &end, 10), which
// must read a digit without overflowing 64 bits (ERANGE) and stop at white
// space or the end of the string; a number of 2^63 or more is refused when
// the string holds a '-' (one negated from a smaller magnitude).
func SafeStrtoull(s []byte) (uint64, bool) {
	// strtoull: white space, a sign, decimal digits; a '-' negates
	// modulo 2^64. It runs on every number of a command line and every
	// incr, so it is written out here rather than called.
	i, neg := sign(s)
	start := i
	var v uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false // ERANGE
		}
		v = v*10 + d
	}
	if i == start || !endsNumber(s, i) {
		return 0, false
	}
	if neg {
		v = -v
	}
	if int64(v) < 0 && bytes.IndexByte(cString(s), '-') >= 0 {
		return 0, false
	}
	return v, true
}

// safeStrtoul is memcached's safe_strtoul: an unsigned long (64 bits)
// stored into a uint32.
func safeStrtoul(s []byte) (uint32, bool) {
	v, ok := SafeStrtoull(s)
	return uint32(v), ok
}

// safeStrtol is memcached's safe_strtol: strtol(s, &end, 10) with a 64-bit
// long, which must read a digit without overflowing (ERANGE) and stop at
// white space or the end of the string, stored into an int32.
func safeStrtol(s []byte) (int32, bool) {
	i, neg := sign(s)
	start := i
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	var mag uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if mag > (limit-d)/10 {
			return 0, false // ERANGE
		}
		mag = mag*10 + d
	}
	if i == start || !endsNumber(s, i) {
		return 0, false
	}
	if neg {
		mag = -mag
	}
	return int32(int64(mag)), true
}

// sign skips the white space and the optional sign strtoull and strtol
// accept before the digits: it returns where the digits start and whether
// the sign was '-'.
func sign(s []byte) (i int, neg bool) {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		return i + 1, s[i] == '-'
	}
	return i, false
}

// endsNumber is the check memcached makes after strto*: the number must be
// followed by white space or the end of the C string (a NUL, or len(s)).
func endsNumber(s []byte, end int) bool {
	return end == len(s) || isSpace(s[end]) || s[end] == 0
}

// cString is s up to its first NUL byte: what C's strchr searches.
func cString(s []byte) []byte {
	if z := bytes.IndexByte(s, 0); z >= 0 {
		return s[:z]
	}
	return s
}
