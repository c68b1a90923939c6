package codec

import "testing"

func TestParseSASLPlain(t *testing.T) {
	cases := []struct {
		msg               string
		authz, user, pass string
		ok                bool
	}{
		{"\x00user\x00pass", "", "user", "pass", true},
		{"user\x00user\x00pass", "user", "user", "pass", true},
		{"\x00user\x00", "", "user", "", true},
		{"\x00\x00pass", "", "", "", false},
		{"user\x00pass", "", "", "", false},
		{"", "", "", "", false},
		{"\x00user\x00pa\x00ss", "", "", "", false},
	}
	for _, c := range cases {
		a, u, p, ok := ParseSASLPlain([]byte(c.msg))
		if ok != c.ok || string(a) != c.authz || string(u) != c.user || string(p) != c.pass {
			t.Errorf("%q: got (%q,%q,%q,%v) want (%q,%q,%q,%v)", c.msg, a, u, p, ok, c.authz, c.user, c.pass, c.ok)
		}
	}
}

func FuzzParseSASLPlain(f *testing.F) {
	f.Add([]byte("\x00user\x00pass"))
	f.Add([]byte("a\x00b\x00c"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, u, p, ok := ParseSASLPlain(msg)
		if !ok {
			return
		}
		if len(u) == 0 || len(a)+len(u)+len(p)+2 != len(msg) {
			t.Fatalf("%q: parts %q %q %q do not make up the message", msg, a, u, p)
		}
	})
}
