package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
)

var dashboardSummary = regexp.MustCompile(`(?m)^dashboard: (\d+) checks passed$`)

// dashboardChecks is how many checks e2e/browser/dashboard.mjs makes.
const dashboardChecks = 43

// The dashboard test's traffic: items stored, then gets of every item and
// of keys never stored. Every figure the page shows follows from these.
const (
	dashItems  = 25
	dashMisses = 15
)

// dashSample is one entry of GET /api/v1/{id}/history.
type dashSample struct {
	Stats     map[string]uint64 `json:"stats"`
	Timestamp json.RawMessage   `json:"timestamp"` // unix milliseconds, a string or a number
}

// dashAPI calls the analytics API with a credential, fails the test unless
// it answers 200, and decodes the answer into out.
func dashAPI(t *testing.T, h *hive, l login, path string, out any) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+h.http+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(l.Username, l.Password)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d %v: %s", path, resp.StatusCode, err, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// dashHistory waits, at most limit, until the cache's history satisfies
// done, and returns it.
func dashHistory(t *testing.T, h *hive, l login, what string, limit time.Duration, done func([]dashSample) bool) []dashSample {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var hist []dashSample
		dashAPI(t, h, l, fmt.Sprintf("/api/v1/%d/history", l.CacheID), &hist)
		if done(hist) {
			return hist
		}
		if time.Now().After(deadline) {
			t.Fatalf("history after %v: %s; it has %d samples", limit, what, len(hist))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardInABrowser drives the dashboard in Debian's Chromium with
// playwright-core (e2e/browser/dashboard.mjs) after a known traffic: the
// panels show exactly the items, sets and hit rate it made, the history
// graph plots one point per interval between the samples the API returns,
// and those points add up to the traffic; then credentials, a capability,
// a client certificate's fingerprint bound from its PEM and unbound beside
// a CN the operator bound (shown, and beyond the tenant's reach), a flush,
// screenshots at laptop and phone widths (saved in e2e/browser/out/); last,
// a cache split over two servers (the page's API stubbed): the panels show
// the sums, a per-server table appears, and the two servers' samples merge
// into one graph point per interval.
func TestDashboardInABrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("Debian's chromium is missing (run tools/install-deps.sh as root): %v", err)
	}
	dir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed in %s (run tools/install-deps.sh): %v", dir, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing: %v", err)
	}
	h := startHive(t, "", "--history-interval", "1s")
	h.resize(1, 8)
	l := h.createCache("web", 16)
	tc := dialText(t, h.Addr)
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("login: %q", got)
	}
	// A sample taken after the login and before the traffic, so that the
	// graph's intervals add up to the traffic exactly.
	before := len(dashHistory(t, h, l, "no sample", 10*time.Second, func(s []dashSample) bool { return len(s) > 0 }))
	start := dashHistory(t, h, l, "no sample after the login", 10*time.Second, func(s []dashSample) bool { return len(s) > before })
	base := start[len(start)-1].Stats
	if base["cmd_get"] != 0 || base["curr_items"] != 0 {
		t.Fatalf("the cache had traffic before the test's: %v", base)
	}

	for i := 0; i < dashItems; i++ {
		if got := tc.cmd(fmt.Sprintf("set item%d 0 0 5\r\nhello\r\n", i)); got != "STORED" {
			t.Fatalf("set item%d: %q", i, got)
		}
	}
	for i := 0; i < dashItems+dashMisses; i++ {
		want := "END"
		if i < dashItems {
			want = fmt.Sprintf("VALUE item%d 0 5", i)
		}
		if got := tc.cmd(fmt.Sprintf("get item%d\r\n", i)); got != want {
			t.Fatalf("get item%d: %q, want %q", i, got, want)
		}
		if i < dashItems {
			tc.line()
			tc.line()
		}
	}
	// The API's figures are the traffic's.
	var byServer map[string]map[string]uint64
	dashAPI(t, h, l, fmt.Sprintf("/api/v1/%d/stats", l.CacheID), &byServer)
	if len(byServer) != 1 {
		t.Fatalf("stats of %d servers, want 1: %v", len(byServer), byServer)
	}
	var st map[string]uint64
	for _, s := range byServer {
		st = s
	}
	sets := base["cmd_set"] + dashItems // the login may count as a set: the page shows the total
	want := map[string]uint64{"curr_items": dashItems, "cmd_set": sets, "cmd_get": dashItems + dashMisses, "get_hits": dashItems, "get_misses": dashMisses, "cmd_flush": 0}
	for k, v := range want {
		if st[k] != v {
			t.Fatalf("API stats %s = %d, want %d (all: %v)", k, st[k], v, st)
		}
	}
	// Two samples after the traffic: the page's hit rate is then the
	// traffic's (all time), as the last interval saw no get.
	dashHistory(t, h, l, "no two samples after the traffic", 10*time.Second, func(s []dashSample) bool {
		if len(s) < 2 {
			return false
		}
		for _, e := range s[len(s)-2:] {
			if e.Stats["cmd_get"] != want["cmd_get"] || e.Stats["cmd_set"] != sets {
				return false
			}
		}
		return true
	})

	out := filepath.Join(dir, "out")
	os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// A client certificate's PEM file as one may come: a note, the
	// certificate, then its issuer's. The page must bind the first.
	cert, issuer := clientCert(t, "dash-client", nil), clientCert(t, "dash-issuer", nil)
	certPEM := filepath.Join(t.TempDir(), "client.pem")
	pemText := append([]byte("subject=CN=dash-client\n"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	pemText = append(pemText, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Certificate[0]})...)
	if err := os.WriteFile(certPEM, pemText, 0o600); err != nil {
		t.Fatal(err)
	}

	// A credential the operator bound to a CN, as only the operator can
	// (the admin API; the analytics API refuses cert_cn): the page shows
	// the CN and the tenant can bind and unbind a fingerprint beside it,
	// not remove it.
	const operatorCN = "dash-operator"
	var op login
	if st := h.admin("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", l.CacheID),
		map[string]any{"write": true, "flush": false, "api": false, "cert_cn": operatorCN}, &op); st != 201 {
		t.Fatalf("binding a CN through the admin API: status %d", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "dashboard.mjs"), "http://"+h.http, l.Username, l.Password, out)
	cmd.Dir = dir
	hits, misses := want["get_hits"], want["get_misses"]
	cmd.Env = append(os.Environ(),
		"EXPECT_ITEMS="+strconv.Itoa(dashItems),
		"EXPECT_SETS="+strconv.FormatUint(sets, 10),
		"EXPECT_HITS="+strconv.FormatUint(hits, 10),
		"EXPECT_MISSES="+strconv.FormatUint(misses, 10),
		// The page's format: one decimal and " %".
		"EXPECT_HIT_RATE="+strconv.FormatFloat(100*float64(hits)/float64(hits+misses), 'f', 1, 64)+" %",
		"EXPECT_TRAFFIC_SETS="+strconv.Itoa(dashItems),
		"EXPECT_TRAFFIC_GETS="+strconv.Itoa(dashItems+dashMisses),
		"CERT_PEM="+certPEM,
		"EXPECT_CERT_SHA256="+control.Fingerprint(cert.Certificate[0]),
		"OPERATOR_CRED="+strconv.FormatUint(uint64(op.ID), 10),
		"EXPECT_OPERATOR_CN="+operatorCN,
	)
	res, err := cmd.CombinedOutput()
	t.Logf("dashboard.mjs:\n%s", res)
	m := dashboardSummary.FindSubmatch(res)
	if err != nil || m == nil {
		t.Fatalf("the browser test failed (%v)", err)
	}
	// Every check of the script ran (it has no optional ones).
	if n, _ := strconv.Atoi(string(m[1])); n != dashboardChecks {
		t.Fatalf("the browser test made %d checks, want the script's %d", n, dashboardChecks)
	}
	for _, shot := range []string{"dashboard.png", "certificate.png", "after.png", "phone.png", "cluster.png"} {
		if st, err := os.Stat(filepath.Join(out, shot)); err != nil || st.Size() == 0 {
			t.Fatalf("screenshot %s missing: %v", shot, err)
		}
	}
	if !strings.Contains(h.Output(), "dashboard: http://") {
		t.Fatal("serve did not print the dashboard address")
	}
}
