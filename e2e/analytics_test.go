package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// apiGet calls the analytics API with a credential and decodes the answer.
func (h *hive) apiGet(l login, path string, out any) int {
	h.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+h.http+path, nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(l.Username+":"+l.Password)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// scriptedWorkload sends commands whose effect on every counter is known.
// gets of cas values are read back from the server, so it works against
// memhive and memcached alike.
func scriptedWorkload(t *testing.T, tc *textConn) {
	t.Helper()
	expect := func(cmd, want string) {
		t.Helper()
		if got := tc.cmd(cmd); got != want {
			t.Fatalf("%q: %q, want %q", cmd, got, want)
		}
	}
	for i := 0; i < 10; i++ {
		expect(fmt.Sprintf("set k%d 0 0 2\r\nv%d\r\n", i, i), "STORED") // 10 sets
	}
	for i := 0; i < 5; i++ {
		tc.cmd(fmt.Sprintf("get k%d\r\n", i)) // 5 hits
		tc.line()
		tc.line()
	}
	for i := 0; i < 3; i++ {
		expect(fmt.Sprintf("get m%d\r\n", i), "END") // 3 misses
	}
	expect("delete k9\r\n", "DELETED")       // delete hit
	expect("delete nope\r\n", "NOT_FOUND")   // delete miss
	expect("set n 0 0 1\r\n5\r\n", "STORED") // 11 sets
	expect("incr n 1\r\n", "6")
	expect("incr nope 1\r\n", "NOT_FOUND")
	expect("decr n 2\r\n", "4")
	expect("decr nope 1\r\n", "NOT_FOUND")
	expect("touch k0 100\r\n", "TOUCHED")
	expect("touch nope 100\r\n", "NOT_FOUND")
	line := tc.cmd("gets k1\r\n") // a hit: 6 hits
	tc.line()
	tc.line()
	cas := strings.Fields(line)[4]
	expect("cas k1 0 0 1 "+cas+"\r\nx\r\n", "STORED") // cas hit, 12 sets
	expect("cas k1 0 0 1 "+cas+"\r\nx\r\n", "EXISTS") // cas badval, 13 sets
	expect("cas nope 0 0 1 1\r\nx\r\n", "NOT_FOUND")  // cas miss, 14 sets
	// The server's clock ticks once a second: an item of 1 s set at
	// server time T is gone once the clock reads T+2. Waiting on the
	// clock through "stats" (which counts nothing) cannot race the tick
	// as a fixed sleep can.
	serverTime := func() int64 {
		v, err := strconv.ParseInt(tc.stats()["time"], 10, 64)
		if err != nil {
			t.Fatalf("stats time: %v", err)
		}
		return v
	}
	setAt := serverTime()
	for i := 0; i < 3; i++ {
		expect(fmt.Sprintf("set e%d 0 1 1\r\nx\r\n", i), "STORED") // 17 sets
	}
	for deadline := time.Now().Add(10 * time.Second); serverTime() < setAt+3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server clock did not pass %d within 10 s", setAt+3)
		}
	}
	for i := 0; i < 3; i++ {
		expect(fmt.Sprintf("get e%d\r\n", i), "END") // 3 expired: 6 misses
	}
	expect("flush_all 100\r\n", "OK") // a delayed flush: counted, changes nothing yet
}

// scriptedCounts is what scriptedWorkload leaves in the counters.
var scriptedCounts = map[string]uint64{
	"cmd_set": 17, "cmd_get": 12, "get_hits": 6, "get_misses": 6,
	"delete_hits": 1, "delete_misses": 1, "cmd_delete": 2,
	"incr_hits": 1, "incr_misses": 1, "decr_hits": 1, "decr_misses": 1,
	"touch_hits": 1, "touch_misses": 1, "cmd_touch": 2,
	"cas_hits": 1, "cas_badval": 1, "cas_misses": 1,
	"curr_items": 10, "total_items": 15, "cmd_flush": 1, "expired": 3, "evictions": 0,
}

// apiOnlyStats are the fields of MemCachier's stats API that memcached's
// "stats" does not print: the API sums them from memcached's counters.
var apiOnlyStats = map[string]bool{"cmd_delete": true, "expired": true}

func TestStatsAreExact(t *testing.T) {
	t.Parallel()
	h, a, _ := twoCaches(t, 8)
	tc := dialText(t, h.Addr)
	tc.asciiLogin(a)
	scriptedWorkload(t, tc)

	var api map[string]map[string]uint64
	if st := h.apiGet(a, fmt.Sprintf("/api/v1/%d/stats", a.CacheID), &api); st != 200 || len(api) != 1 {
		t.Fatalf("API stats: status %d, %d servers", st, len(api))
	}
	got := api[h.Addr]
	text := tc.stats()
	for name, want := range scriptedCounts {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("API %s = %d (present %v), want %d", name, v, ok, want)
		}
		v, ok := text[name]
		if !ok && !apiOnlyStats[name] {
			t.Errorf("stats over the memcache port has no %s", name)
		}
		if ok && v != strconv.FormatUint(got[name], 10) {
			t.Errorf("stats over the memcache port: %s = %s, API %d", name, v, got[name])
		}
	}
	for _, name := range []string{"auth_cmds", "curr_connections", "total_connections", "limit_maxbytes"} {
		if text[name] != strconv.FormatUint(got[name], 10) {
			t.Errorf("%s: stats %s, API %d", name, text[name], got[name])
		}
	}
	if got["auth_cmds"] != 1 || got["auth_errors"] != 0 || got["bytes_read"] == 0 || got["bytes_written"] == 0 {
		t.Errorf("auth and traffic: %v", got)
	}

	// memcached itself, given the same commands, counts the same.
	mc := testserver.StartMemcached(t, "-m", "64")
	ref := dialText(t, mc.Addr)
	scriptedWorkload(t, ref)
	refStats := ref.stats()
	for name, want := range scriptedCounts {
		v, ok := refStats[name]
		if !ok && !apiOnlyStats[name] {
			t.Errorf("memcached's stats have no %s", name)
		}
		if ok && v != strconv.FormatUint(want, 10) {
			t.Errorf("memcached counts %s = %s where memhive expects %d", name, v, want)
		}
	}

	// Evictions: write far more than a small cache holds; every key that is
	// gone was evicted, nothing else removed any.
	small := h.createCache("small", 2)
	w := newWriter(t, h.Addr, small, 3)
	n := w.fill("x", 12<<20, 10000)
	present := len(w.present("x", n))
	var after map[string]map[string]uint64
	h.apiGet(small, fmt.Sprintf("/api/v1/%d/stats", small.CacheID), &after)
	if ev := after[h.Addr]["evictions"]; ev != uint64(n-present) || ev == 0 {
		t.Fatalf("evictions %d, want %d (%d written, %d present)", ev, n-present, n, present)
	}
	if w.stat("evictions") != int64(n-present) {
		t.Fatalf("stats over the memcache port: evictions %d", w.stat("evictions"))
	}
}

func TestCredentialRotationThroughTheAPI(t *testing.T) {
	t.Parallel()
	h, a, _ := twoCaches(t, 8)
	do := func(method, path string, body string, out any) int {
		req, _ := http.NewRequest(method, "http://"+h.http+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password)))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var secondary struct {
		ID       uint32 `json:"id"`
		Username string `json:"sasl_username"`
		Password string `json:"sasl_password"`
	}
	base := fmt.Sprintf("/api/v1/%d/credentials", a.CacheID)
	if st := do("POST", base, "", &secondary); st != 200 || secondary.Password == "" {
		t.Fatalf("create a secondary: %d", st)
	}
	if st := do("POST", fmt.Sprintf("%s/primary/%d", base, secondary.ID), "", nil); st != 200 {
		t.Fatalf("promote: %d", st)
	}
	old := dialText(t, h.Addr)
	if got := old.asciiLogin(a); got != "STORED" {
		t.Fatalf("old primary before deletion: %q", got)
	}
	// The old primary deletes itself: the last call it makes.
	if st := do("DELETE", fmt.Sprintf("%s/%s", base, a.Username), "", nil); st != 200 {
		t.Fatalf("delete the old primary: %d", st)
	}
	if !old.closedByPeer(2 * time.Second) {
		t.Fatal("the old primary's connection stayed open")
	}
	if got := dialText(t, h.Addr).asciiLogin(a); got != "CLIENT_ERROR authentication failure" {
		t.Fatalf("old password on the memcache port: %q", got)
	}
	l := login{Username: secondary.Username, Password: secondary.Password}
	if got := dialText(t, h.Addr).asciiLogin(l); got != "STORED" {
		t.Fatalf("new primary on the memcache port: %q", got)
	}
	if st := h.apiGet(a, "/api/v1/login", nil); st != 403 {
		t.Fatalf("the deleted credential on the API: %d", st)
	}
	var who map[string]uint32
	if st := h.apiGet(l, "/api/v1/login", &who); st != 200 || who["cache_id"] != a.CacheID {
		t.Fatalf("the new primary on the API: %d %v", st, who)
	}
}

func TestHistorySurvivesARestart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	h := startHive(t, data, "--history-interval", "200ms")
	def := login{Username: h.printed("MEMCACHIER_USERNAME"), Password: h.printed("MEMCACHIER_PASSWORD")}
	tc := dialText(t, h.Addr)
	tc.asciiLogin(def)
	tc.cmd("set k 0 0 1\r\nv\r\n")
	// MemCachier's history gives the cache id and the timestamp as strings.
	type entry struct {
		MemcachierID uint32            `json:"memcachier_id,string"`
		Server       string            `json:"server"`
		Stats        map[string]uint64 `json:"stats"`
		Timestamp    int64             `json:"timestamp,string"`
	}
	var before []entry
	deadline := time.Now().Add(5 * time.Second)
	for len(before) < 3 || before[len(before)-1].Stats["cmd_set"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("history after 5 s: %+v", before)
		}
		time.Sleep(100 * time.Millisecond)
		h.apiGet(def, "/api/v1/1/history", &before)
	}
	for i := 1; i < len(before); i++ {
		if before[i].Timestamp <= before[i-1].Timestamp || before[i].Server != h.Addr || before[i].MemcachierID != 1 {
			t.Fatalf("history entries out of order or mislabelled: %+v", before[i-1:i+1])
		}
	}
	h.Stop()
	h2 := startHive(t, data, "--history-interval", "1h")
	var after []entry
	h2.apiGet(def, "/api/v1/1/history", &after)
	if len(after) < len(before) || after[len(before)-1].Timestamp != before[len(before)-1].Timestamp {
		t.Fatalf("history lost in a restart: %d samples before, %d after", len(before), len(after))
	}
}

// guideCall makes one analytics API request as a MemCachier client would
// (curl --user, curl -d) and returns the status and the body.
func (h *hive) guideCall(method, path string, as login, contentType, body string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://"+h.http+path, strings.NewReader(body))
	req.SetBasicAuth(as.Username, as.Password)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// TestAnalyticsAPIAnswersAsTheGuide walks every endpoint of MemCachier's
// analytics API guide against a running server over HTTP, checking each
// answer's exact status and body: the 200 rows, and the 403 rows a
// client can provoke (the 404 and 500 rows need a failing store or node:
// analytics.TestAPIGuideTables provokes those).
func TestAnalyticsAPIAnswersAsTheGuide(t *testing.T) {
	t.Parallel()
	h, a, b := twoCaches(t, 8, "--history-interval", "200ms")
	noFlush := h.createCred(a.CacheID, true, false, true)
	// The primary's id, which creating the cache does not answer.
	var adminCreds []struct {
		ID       uint32 `json:"id"`
		Username string `json:"username"`
	}
	if st := h.admin("GET", fmt.Sprintf("/admin/v1/caches/%d/credentials", a.CacheID), nil, &adminCreds); st != 200 || len(adminCreds) != 2 || adminCreds[0].Username != a.Username {
		t.Fatalf("the admin API's credentials of cache %d: %d %+v", a.CacheID, st, adminCreds)
	}
	a.ID = adminCreds[0].ID
	const forbidden = `"You are not authorized to perform this action."` + "\n"
	expect := func(what string, gotStatus int, gotBody string, status int, body string) {
		t.Helper()
		if gotStatus != status || gotBody != body {
			t.Fatalf("%s: %d %q, want %d %q", what, gotStatus, gotBody, status, body)
		}
	}
	cred := func(id uint32, user string, flush, write, api, primary bool) string {
		return fmt.Sprintf(`{"cache_id":%d,"flush_capability":%t,"id":%d,"sasl_username":%q,"uuid":null,"write_capability":%t,"api_capability":%t,"primary":%t}`,
			a.CacheID, flush, id, user, write, api, primary)
	}
	base := fmt.Sprintf("/api/v1/%d", a.CacheID)

	// Login, on the guide's example path and on its HTTP Request line's.
	for _, path := range []string{"/api/v1/login", "/api/login"} {
		st, body := h.guideCall("GET", path, a, "", "")
		expect("login "+path, st, body, 200, fmt.Sprintf(`{"cache_id":%d}`+"\n", a.CacheID))
	}
	st, body := h.guideCall("GET", "/api/v1/login", login{Username: a.Username, Password: "wrong"}, "", "")
	expect("login with a wrong password", st, body, 403, forbidden)

	// Stats: one entry, named by this node's host:port.
	tc := dialText(t, h.Addr)
	tc.asciiLogin(a)
	if got := tc.cmd("set probe 0 0 1\r\nv\r\n"); got != "STORED" {
		t.Fatalf("set probe: %q", got)
	}
	st, body = h.guideCall("GET", base+"/stats", a, "", "")
	var stats map[string]map[string]uint64
	if st != 200 || json.Unmarshal([]byte(body), &stats) != nil || len(stats) != 1 || stats[h.Addr]["cmd_set"] != 1 {
		t.Fatalf("stats: %d %s", st, body)
	}
	st, body = h.guideCall("GET", fmt.Sprintf("/api/v1/%d/stats", b.CacheID), a, "", "")
	expect("another cache's stats", st, body, 403, forbidden)

	// History: strings for the id and the timestamp, as in the guide.
	deadline := time.Now().Add(5 * time.Second)
	var hist []map[string]any
	for len(hist) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no history after 5 s: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
		st, body = h.guideCall("GET", base+"/history", a, "", "")
		if st != 200 || json.Unmarshal([]byte(body), &hist) != nil {
			t.Fatalf("history: %d %s", st, body)
		}
	}
	e := hist[0]
	if len(e) != 4 || e["memcachier_id"] != strconv.FormatUint(uint64(a.CacheID), 10) || e["server"] != h.Addr {
		t.Fatalf("a history entry: %v", e)
	}
	if ts, ok := e["timestamp"].(string); !ok || func() bool { _, err := strconv.ParseInt(ts, 10, 64); return err != nil }() {
		t.Fatalf("a history timestamp is not a string of milliseconds: %#v", e["timestamp"])
	}

	// Flush: 200 "", and 403 without the flush capability.
	st, body = h.guideCall("POST", base+"/flush", noFlush, "", "")
	expect("flush without the capability", st, body, 403, forbidden)
	if got := tc.cmd("get probe\r\n"); got == "END" {
		t.Fatal("the probe item is missing before the flush")
	}
	tc.line()
	tc.line()
	st, body = h.guideCall("POST", base+"/flush", a, "", "")
	expect("flush", st, body, 200, `""`+"\n")
	if got := tc.cmd("get probe\r\n"); got != "END" {
		t.Fatalf("after a flush: %q", got)
	}

	// Credentials: list, create (200, not 201), update with the guide's
	// example (curl -d sends its JSON as a form), promote, delete.
	st, body = h.guideCall("GET", base+"/credentials", a, "", "")
	expect("list", st, body, 200, "["+cred(a.ID, a.Username, true, true, true, true)+","+cred(noFlush.ID, noFlush.Username, false, true, true, false)+"]\n")
	st, body = h.guideCall("GET", fmt.Sprintf("/api/v1/%d/credentials", b.CacheID), a, "", "")
	expect("another cache's list", st, body, 403, forbidden)

	st, body = h.guideCall("POST", base+"/credentials", a, "", "")
	var made struct {
		ID       uint32 `json:"id"`
		Username string `json:"sasl_username"`
		Password string `json:"sasl_password"`
	}
	if st != 200 || json.Unmarshal([]byte(body), &made) != nil || made.Password == "" {
		t.Fatalf("create: %d %s", st, body)
	}
	want := cred(made.ID, made.Username, true, true, true, false)
	want = strings.Replace(want, `"uuid"`, fmt.Sprintf(`"sasl_password":%q,"uuid"`, made.Password), 1)
	expect("create", st, body, 200, want+"\n")
	fresh := login{CacheID: a.CacheID, ID: made.ID, Username: made.Username, Password: made.Password}

	st, body = h.guideCall("PATCH", base+"/credentials/"+made.Username, a, "application/x-www-form-urlencoded", `{"flush_capability":"false"}`)
	expect("update", st, body, 200, `{"flush_capability":false,"write_capability":true,"api_capability":true}`+"\n")
	st, body = h.guideCall("PATCH", fmt.Sprintf("%s/credentials/%d", base, b.ID), a, "", `{"flush_capability":false}`)
	expect("update another cache's credential", st, body, 403, forbidden)

	st, body = h.guideCall("POST", base+"/credentials/primary/"+made.Username, a, "", "")
	expect("promote", st, body, 200, cred(made.ID, made.Username, false, true, true, true)+"\n")

	st, body = h.guideCall("DELETE", fmt.Sprintf("%s/credentials/primary/%d", base, made.ID), a, "", "")
	expect("delete the primary while others remain", st, body, 403, forbidden)
	st, body = h.guideCall("DELETE", fmt.Sprintf("%s/credentials/primary/%d", base, a.ID), fresh, "", "")
	expect("delete", st, body, 200, `""`+"\n")
	st, body = h.guideCall("GET", "/api/v1/login", a, "", "")
	expect("the deleted credential", st, body, 403, forbidden)
}
