package codec

import (
	"bytes"
	"errors"
	"testing"
)

// The fuzz targets take a request stream and extra bytes to append to it.
// Seeds live in testdata/fuzz/<target>/ and cover every command.

func FuzzParseASCII(f *testing.F) {
	f.Add([]byte("get a b\r\n"), []byte("get x\r\n"))
	f.Fuzz(func(t *testing.T, data, extra []byte) {
		fuzzParser(t, data, extra, (*Parser).ParseASCII)
	})
}

// FuzzParseMeta is FuzzParseASCII seeded with meta commands: every flag
// of mg, ms, md and ma, base64 keys, modes, quiet mode and errors.
func FuzzParseMeta(f *testing.F) {
	seeds := []string{
		"mg k v s t c f l h k O123 q u T30 N30 R30 E5\r\n",
		"mg a2V5 b v k\r\n",
		"ms k 3 T0 F5 C1 I q O1 k c b MS\r\nabc\r\n",
		"ms k 3 ME\r\nabc\r\n", "ms k 3 MA q\r\nabc\r\n", "ms k 3 MX\r\nabc\r\n",
		"md k q C5 I T10 O9 k b\r\n",
		"ma k N0 J10 D5 T0 MD q O1 k c t v\r\n", "ma k M+\r\n",
		"mn\r\n", "me k\r\n", "me a2V5 b\r\n",
		"mg k v v\r\n", "mg k Z\r\n", "ms k x\r\nab\r\n", "mg a2V b\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), []byte("mn\r\n"))
	}
	f.Fuzz(func(t *testing.T, data, extra []byte) {
		fuzzParser(t, data, extra, (*Parser).ParseASCII)
		var p Parser
		var r Request
		if n, err := p.ParseASCII(data, &r); err == nil && r.Cmd >= CmdMetaGet && r.Cmd <= CmdMetaArith {
			m := r.Meta()
			if m == nil || m.NTok > len(m.Tokens) || len(r.Key) > MaxKeyLen || n > len(data) {
				t.Fatalf("meta request out of bounds: %+v", r)
			}
			for _, tok := range m.Tokens[:m.NTok] {
				if len(tok) == 0 {
					t.Fatal("empty meta flag token")
				}
			}
		}
	})
}

func FuzzParseBinary(f *testing.F) {
	f.Add(pkt{op: OpGet, key: "k"}.bytes(), pkt{op: OpNoop}.bytes())
	f.Fuzz(func(t *testing.T, data, extra []byte) {
		fuzzParser(t, data, extra, (*Parser).ParseBinary)
	})
}

type parseFunc func(*Parser, []byte, *Request) (int, error)

// fuzzParser asserts the parser's invariants on data: no panic; n within
// [0, len]; n == 0 exactly when ErrIncomplete; keys within limits; a
// result that depends only on the n bytes it used (prefix-stable: the same
// with extra appended, and the same on data[:n]); and a whole stream
// parses to its end.
func fuzzParser(t *testing.T, data, extra []byte, parse parseFunc) {
	p := Parser{MaxItemSize: 1 << 12}
	var r, r2 Request
	n, err := parse(&p, data, &r)
	checkInvariants(t, data, n, err, &r)
	if err == nil && !(r.Abort && n == len(data)) {
		// The long-line and oversized-header closes depend on how much is
		// buffered, as memcached's do; every other result must not.
		more := append(append([]byte{}, data...), extra...)
		n2, err2 := parse(&p, more, &r2)
		if n2 != n || err2 != nil || !sameRequest(&r, &r2) {
			t.Fatalf("not prefix-stable: %q\n  alone: %s\n  +extra: %s", data, describe(n, err, &r), describe(n2, err2, &r2))
		}
		n2, err2 = parse(&p, data[:n], &r2)
		if n2 != n || err2 != nil || !sameRequest(&r, &r2) {
			t.Fatalf("depends on bytes after n: %q\n  alone: %s\n  cut: %s", data, describe(n, err, &r), describe(n2, err2, &r2))
		}
	}
	// Re-encoding what was parsed must work too.
	if err == nil && r.Cmd != CmdError {
		var out []byte
		out = AppendValue(out, r.Key, r.Flags, r.Value, r.CAS, true)
		out = AppendBinaryGet(out, r.Opcode, r.Opaque, r.CAS, r.Flags, r.Key, r.Value)
		if !bytes.Contains(out, r.Value) {
			t.Fatal("encoded value missing")
		}
	}
	// A stream: parse, skip what is swallowed, until incomplete or closed.
	stream := append(append([]byte{}, data...), extra...)
	for len(stream) > 0 {
		n, err := parse(&p, stream, &r)
		checkInvariants(t, stream, n, err, &r)
		if errors.Is(err, ErrIncomplete) || r.Close || r.Abort {
			break
		}
		stream = stream[n:]
		stream = stream[min(r.Swallow, len(stream)):]
	}
}
