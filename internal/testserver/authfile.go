package testserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// StartMemcachedAuthfile starts Debian's memcached with -Y, its text
// protocol login, and an auth file holding logins as `username:password`
// lines, plus args. memcached reads at most 8 lines and splits each at its
// first colon, so a username must not hold one; a password holding a
// space can never log in, as the login's value is split on spaces.
func StartMemcachedAuthfile(t testing.TB, logins []Login, args ...string) *Server {
	t.Helper()
	if len(logins) > 8 {
		t.Fatalf("memcached -Y reads 8 logins; %d given", len(logins))
	}
	var b strings.Builder
	for _, l := range logins {
		if strings.Contains(l.Username, ":") {
			t.Fatalf("username %q holds a colon, which memcached's auth file cannot", l.Username)
		}
		b.WriteString(l.Username + ":" + l.Password + "\n")
	}
	path := filepath.Join(t.TempDir(), "authfile")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartMemcached(t, append([]string{"-Y", path}, args...)...)
}
