package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// hive is a memhive started in SASL mode with its admin API on a free
// loopback port.
type hive struct {
	*testserver.Server
	t     testing.TB
	http  string
	token string
	data  string
}

const adminToken = "test-admin-token"

// startHive starts `memhive serve --auth sasl` on data (a new temporary
// directory if empty) with extra flags.
func startHive(t testing.TB, data string, extra ...string) *hive {
	t.Helper()
	return startHiveOn(t, 0, "", data, extra...)
}

// startHiveOn is startHive listening on port and serving HTTP on
// httpAddr, each chosen free when zero: a restarted node of a cluster
// comes back where it was. It waits up to 30 s for the server to
// announce itself, as a cluster node restarted after a kill -9 may wait
// for its old membership lease.
func startHiveOn(t testing.TB, port int, httpAddr, data string, extra ...string) *hive {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	if httpAddr == "" {
		httpAddr = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	}
	args := append([]string{"--auth", "sasl", "--http", httpAddr, "--admin-token", adminToken, "--data", data}, extra...)
	s := testserver.StartMemhiveOn(t, port, args...)
	if err := s.WaitOutput("dashboard: ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return &hive{Server: s, t: t, http: httpAddr, token: adminToken, data: data}
}

// printed returns the value of a NAME=value line serve printed.
func (h *hive) printed(name string) string {
	for _, line := range strings.Split(h.Output(), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	h.t.Fatalf("serve did not print %s; output:\n%s", name, h.Output())
	return ""
}

// admin calls the admin API and decodes a JSON answer into out (if not
// nil); it returns the status code.
func (h *hive) admin(method, path string, body, out any) int {
	h.t.Helper()
	status, err := h.tryAdmin(method, path, body, out)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return status
}

func (h *hive) tryAdmin(method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+h.http+path, rd)
	req.Header.Set("Authorization", "Bearer "+h.token)
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding %q: %v", raw, err)
		}
	}
	return resp.StatusCode, nil
}

// login is a cache's id and a credential of it.
type login struct {
	CacheID  uint32 `json:"cache_id"`
	ID       uint32 `json:"id"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// createCache makes a cache of mb MiB and returns its primary credential.
func (h *hive) createCache(name string, mb int) login {
	h.t.Helper()
	var l login
	if st := h.admin("POST", "/admin/v1/caches", map[string]any{"name": name, "memory_limit_mb": mb}, &l); st != 201 {
		h.t.Fatalf("creating cache %s (%d MiB): status %d", name, mb, st)
	}
	return l
}

// createCred adds a credential with the given capabilities to a cache.
func (h *hive) createCred(cacheID uint32, write, flush, api bool) login {
	h.t.Helper()
	var l login
	body := map[string]any{"write": write, "flush": flush, "api": api}
	if st := h.admin("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", cacheID), body, &l); st != 201 {
		h.t.Fatalf("creating a credential: status %d", st)
	}
	l.CacheID = cacheID
	return l
}

// resize sets a cache's limit.
func (h *hive) resize(cacheID uint32, mb int) {
	h.t.Helper()
	if st := h.admin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", cacheID), map[string]any{"memory_limit_mb": mb}, nil); st != 200 {
		h.t.Fatalf("resizing cache %d to %d MiB: status %d", cacheID, mb, st)
	}
}

// textConn is a raw text-protocol connection.
type textConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialText(t testing.TB, addr string) *textConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

// asciiLogin logs in with MemCachier's set extension; it returns the reply.
func (tc *textConn) asciiLogin(l login) string {
	return tc.cmd(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", l.Username, len(l.Password), l.Password))
}

// cmd sends raw text and returns the first reply line.
func (tc *textConn) cmd(s string) string {
	tc.t.Helper()
	tc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc.c, s); err != nil {
		return "write error: " + err.Error()
	}
	return tc.line()
}

func (tc *textConn) line() string {
	tc.c.SetDeadline(time.Now().Add(5 * time.Second))
	l, err := tc.r.ReadString('\n')
	if err != nil {
		return "read error: " + err.Error()
	}
	return strings.TrimRight(l, "\r\n")
}

// stats reads "stats" into a map.
func (tc *textConn) stats() map[string]string {
	tc.t.Helper()
	m := map[string]string{}
	first := tc.cmd("stats\r\n")
	for l := first; l != "END"; l = tc.line() {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "STAT" {
			tc.t.Fatalf("stats: unexpected line %q", l)
		}
		m[f[1]] = f[2]
	}
	return m
}

// closedByPeer reports whether the server closed the connection within limit.
func (tc *textConn) closedByPeer(limit time.Duration) bool {
	tc.c.SetReadDeadline(time.Now().Add(limit))
	_, err := tc.r.ReadByte()
	return err == io.EOF
}
