package e2e

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// memcached 1.6's own text login (memcached -Y): the first command is a
// set of any key whose value is "<username> <password>". memhive takes it
// beside MemCachier's (key = username, value = password), telling the two
// apart by the space in the value, and answers it as memcached -Y does.
// These tests run memhive in SASL mode and memcached -Y with an auth file
// holding the same username and password as a memhive credential, send
// both the same bytes and compare the replies byte for byte, and whether
// the connection closes.

// textAuthPair is a memhive in SASL mode with one cache and a memcached -Y
// whose auth file holds that cache's credential.
type textAuthPair struct {
	mh, mc *testserver.Server
	login  testserver.Login
}

func startTextAuthPair(t *testing.T, extra ...string) textAuthPair {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	l := testserver.CreateMemhiveCache(t, data, "textauth", 16)
	args := append([]string{"--auth", "sasl", "--data", data, "--max-item-size", "1m"}, extra...)
	mh := testserver.StartMemhive(t, args...)
	mc := testserver.StartMemcachedAuthfile(t, []testserver.Login{l}, "-m", "64", "-I", "1m")
	return textAuthPair{mh: mh, mc: mc, login: l}
}

// authSet is a set of key carrying value, memcached -Y's login when value
// is "<username> <password>"; extra goes after the length (" noreply").
func authSet(key, value string, extra ...string) []byte {
	return fmt.Appendf(nil, "set %s 0 0 %d%s\r\n%s\r\n", key, len(value), strings.Join(extra, ""), value)
}

// compareTextAuth sends phases, in turn, on one connection to memhive and
// one to memcached -Y, each phase when the last has been answered, and
// reports where the replies or the connection's state differ. It returns
// what memhive said and whether it closed.
func compareTextAuth(t *testing.T, p textAuthPair, phases ...[]byte) ([]byte, bool) {
	t.Helper()
	ref := dialHostile(t, p.mc.Addr)
	got := dialHostile(t, p.mh.Addr)
	for i, b := range phases {
		var wg sync.WaitGroup
		for _, peer := range []*hostilePeer{ref, got} {
			if peer.eof {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				peer.write(b)
				peer.collect(hostileIdle, 10*time.Second)
			}()
		}
		wg.Wait()
		// A slow reply is not a missing one.
		for start := time.Now(); time.Since(start) < hostileCatchUp; {
			if hostileLags(got.got, got.eof, ref.got, ref.eof) {
				got.collect(50*time.Millisecond, hostileCatchUp)
			} else if hostileLags(ref.got, ref.eof, got.got, got.eof) {
				ref.collect(50*time.Millisecond, hostileCatchUp)
			} else {
				break
			}
		}
		if !bytes.Equal(got.got, ref.got) || got.eof != ref.eof {
			t.Errorf("after phase %d (%s):\nmemcached -Y: %s (closed: %v)\nmemhive:      %s (closed: %v)",
				i, hostileQuote(b), hostileQuote(ref.got), ref.eof, hostileQuote(got.got), got.eof)
			break
		}
	}
	t.Logf("memhive said %s (closed: %v)", hostileQuote(got.got), got.eof)
	return got.got, got.eof
}

// TestTextAuthLikeMemcached: memcached's form logs in, and a wrong one
// fails, with memcached -Y's replies and connection states.
func TestTextAuthLikeMemcached(t *testing.T) {
	t.Parallel()
	p := startTextAuthPair(t)
	u, pw := p.login.Username, p.login.Password
	right := authSet("anykey", u+" "+pw)
	use := []byte("set foo 0 0 5\r\nhello\r\nget foo\r\n")
	cases := []struct {
		name   string
		phases [][]byte
		want   string // memhive's whole transcript, checked besides
	}{
		{"login", [][]byte{right, use}, "STORED\r\nSTORED\r\nVALUE foo 0 5\r\nhello\r\nEND\r\n"},
		{"the key is ignored", [][]byte{authSet(u, u+" "+pw), use}, "STORED\r\nSTORED\r\nVALUE foo 0 5\r\nhello\r\nEND\r\n"},
		{"noreply still answers", [][]byte{authSet("k", u+" "+pw, " noreply"), use}, ""},
		{"wrong password, then right", [][]byte{authSet("k", u+" wrong"), right, use},
			"CLIENT_ERROR authentication failure\r\nSTORED\r\nSTORED\r\nVALUE foo 0 5\r\nhello\r\nEND\r\n"},
		{"unknown user, then right", [][]byte{authSet("k", "nosuchuser "+pw), right}, ""},
		{"failure with noreply", [][]byte{authSet("k", u+" wrong", " noreply"), right}, ""},
		{"empty user, then right", [][]byte{authSet("k", " "+pw), right}, ""},
		{"empty password, then right", [][]byte{authSet("k", u+" "), right}, ""},
		{"two spaces", [][]byte{authSet("k", u+"  "+pw), use}, ""},
		{"a third word is ignored", [][]byte{authSet("k", u+" "+pw+" extra"), use}, ""},
		{"a second set is a normal set", [][]byte{right, authSet("k", "a b"), []byte("get k\r\n")},
			"STORED\r\nSTORED\r\nVALUE k 0 3\r\na b\r\nEND\r\n"},
		{"the longest value memcached takes", [][]byte{authSet("k", u+" "+strings.Repeat("x", 16382-len(u)-1)), right}, ""},
		{"a byte longer closes", [][]byte{authSet("k", u+" "+strings.Repeat("x", 16383-len(u)-1))}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, _ := compareTextAuth(t, p, c.phases...)
			if c.want != "" && string(got) != c.want {
				t.Errorf("memhive said %s, want %q", hostileQuote(got), c.want)
			}
		})
	}
}

// TestTextAuthDifferences pins down where memhive departs from memcached
// -Y on purpose (README, "Compatibility"), on both servers, so that a
// change in either shows: a value without a space is MemCachier's login,
// which memcached -Y refuses as one word; a command other than a login
// gets memcached's reply but closes the connection, as MemCachier does.
func TestTextAuthDifferences(t *testing.T) {
	t.Parallel()
	p := startTextAuthPair(t)
	u, pw := p.login.Username, p.login.Password
	cases := []struct {
		name         string
		phases       [][]byte
		mc, mh       string
		mcEOF, mhEOF bool
	}{
		{"MemCachier's form", [][]byte{authSet(u, pw), []byte("get k\r\n")},
			"CLIENT_ERROR bad authentication token format\r\nCLIENT_ERROR unauthenticated\r\n", "STORED\r\nEND\r\n", false, false},
		{"MemCachier's form, wrong", [][]byte{authSet(u, "wrong"), []byte("get k\r\n")},
			"CLIENT_ERROR bad authentication token format\r\nCLIENT_ERROR unauthenticated\r\n", "CLIENT_ERROR authentication failure\r\n", false, true},
		{"get first", [][]byte{[]byte("get k\r\n")}, "CLIENT_ERROR unauthenticated\r\n", "CLIENT_ERROR unauthenticated\r\n", false, true},
		{"get after a failure", [][]byte{authSet("k", u+" wrong"), []byte("get k\r\n")},
			"CLIENT_ERROR authentication failure\r\nCLIENT_ERROR unauthenticated\r\n",
			"CLIENT_ERROR authentication failure\r\nCLIENT_ERROR unauthenticated\r\n", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, side := range []struct {
				name string
				s    *testserver.Server
				want string
				eof  bool
			}{{"memcached -Y", p.mc, c.mc, c.mcEOF}, {"memhive", p.mh, c.mh, c.mhEOF}} {
				peer := dialHostile(t, side.s.Addr)
				for _, b := range c.phases {
					if peer.eof {
						break
					}
					peer.write(b)
					peer.collect(hostileIdle, 10*time.Second)
				}
				if string(peer.got) != side.want || peer.eof != side.eof {
					t.Errorf("%s said %s (closed: %v), want %q (closed: %v)", side.name, hostileQuote(peer.got), peer.eof, side.want, side.eof)
				}
			}
		})
	}
}
