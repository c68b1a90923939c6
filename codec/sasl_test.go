package codec

import (
	"bytes"
	"strings"
	"testing"
)

// The expectations are memcached 1.6.18 -S with Cyrus SASL 2.1.28 and a
// sasldb holding "user" / "pass": ok is whether it can log in, given the
// right password.
func TestParseSASLPlain(t *testing.T) {
	cases := []struct {
		msg        string
		user, pass string
		ok         bool
	}{
		{"\x00user\x00pass", "user", "pass", true},
		{"user\x00user\x00pass", "user", "pass", true},
		{"\x00user\x00", "user", "", true},
		{"\x00 user\t\x00pass", "user", "pass", true},      // Cyrus trims white space
		{"\x00\vuser\r\n\x00pass", "user", "pass", true},   // all of C's isspace
		{" user\x00user\x00pass", "user", "pass", true},    // authzid trimmed too
		{"user \x00 user\x00pass", "user", "pass", true},   // both trimmed, then equal
		{"\x00user\x00 pass", "user", " pass", true},       // the password is not trimmed
		{"other\x00user\x00pass", "", "", false},           // authzid not the user
		{"  \x00user\x00pass", "", "", false},              // all-white-space authzid
		{"\x00\x00pass", "", "", false},                    // no username
		{"\x00 \t \x00pass", "", "", false},                // all white space
		{"user\x00pass", "", "", false},                    // one NUL
		{"userpass", "", "", false},                        // none
		{"", "", "", false},                                // empty
		{"\x00user\x00pa\x00ss", "", "", false},            // NUL in the password
		{"\x00user\x00pass\x00", "", "", false},            // three NULs
		{"\x00us\xa0er\x00pass", "us\xa0er", "pass", true}, // only ASCII white space
	}
	for _, c := range cases {
		u, p, ok := ParseSASLPlain([]byte(c.msg))
		if ok != c.ok || string(u) != c.user || string(p) != c.pass {
			t.Errorf("%q: got (%q,%q,%v) want (%q,%q,%v)", c.msg, u, p, ok, c.user, c.pass, c.ok)
		}
	}
}

// Cyrus takes PLAIN in any case, with an optional -PLUS, up to the first
// NUL (memcached passes the key as a C string); nothing else.
func TestIsSASLPlainMech(t *testing.T) {
	for mech, want := range map[string]bool{
		"PLAIN": true, "plain": true, "PlAiN": true, "PLAIN-PLUS": true, "plain-plus": true,
		"PLAIN\x00junk": true, "PLAIN-PLUS\x00x": true,
		"PLAINX": false, "PLAI": false, "PLAIN ": false, " PLAIN": false, "\x00PLAIN": false,
		"PLAIN-PLUSX": false, "PLAINPLUS": false, "-PLUS": false, "CRAM-MD5": false, "": false,
		"PLAIN-PLUS-PLUS": false,
	} {
		if got := IsSASLPlainMech([]byte(mech)); got != want {
			t.Errorf("IsSASLPlainMech(%q) = %v, want %v", mech, got, want)
		}
	}
}

// memcached 1.6.18 takes 524,229 bytes of mechanism and data in a SASL
// request and answers 0x82 (out of memory) to one more, swallowing the
// data; measured against it with mechanisms of 5, 10 and 32 bytes.
func TestSASLTooLarge(t *testing.T) {
	var p Parser
	for _, mech := range []string{"PLAIN", "plain-plus", strings.Repeat("P", 32)} {
		for _, c := range []struct {
			vlen   int
			status uint16
		}{{524229 - len(mech), StatusOK}, {524230 - len(mech), StatusOutOfMemory}} {
			b := pkt{op: OpSASLAuth, key: mech, val: strings.Repeat("x", c.vlen)}.bytes()
			var req Request
			n, err := p.ParseBinary(b, &req)
			if err != nil {
				t.Fatalf("%s with %d bytes: %v", mech, c.vlen, err)
			}
			switch c.status {
			case StatusOK:
				if req.Cmd != CmdSASLAuth || n != len(b) || len(req.Value) != c.vlen {
					t.Errorf("%s with %d bytes: cmd %v, n %d, value %d bytes", mech, c.vlen, req.Cmd, n, len(req.Value))
				}
			default:
				if req.Cmd != CmdError || req.Status != c.status || req.Swallow != c.vlen || req.Close {
					t.Errorf("%s with %d bytes: cmd %v status %#x swallow %d close %v, want out of memory swallowing the data", mech, c.vlen, req.Cmd, req.Status, req.Swallow, req.Close)
				}
			}
		}
	}
}

func FuzzParseSASLPlain(f *testing.F) {
	f.Add([]byte("\x00user\x00pass"))
	f.Add([]byte("a\x00b\x00c"))
	f.Add([]byte(" b\x00\tb \x00c"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		u, p, ok := ParseSASLPlain(msg)
		if !ok {
			return
		}
		// The username is the authcid without white space around it,
		// the password the tail after the second NUL, holding no NUL.
		if len(u) == 0 || isSpace(u[0]) || isSpace(u[len(u)-1]) || bytes.IndexByte(u, 0) >= 0 {
			t.Fatalf("%q: bad username %q", msg, u)
		}
		if bytes.Count(msg, []byte{0}) != 2 || !bytes.HasSuffix(msg, p) || bytes.IndexByte(p, 0) >= 0 {
			t.Fatalf("%q: bad password %q", msg, p)
		}
		if !bytes.Contains(msg, u) {
			t.Fatalf("%q: username %q is not in the message", msg, u)
		}
	})
}
