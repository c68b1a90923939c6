package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var dashboardSummary = regexp.MustCompile(`(?m)^dashboard: (\d+) checks passed$`)

// TestDashboardInABrowser drives the dashboard in Debian's Chromium with
// playwright-core (e2e/browser/dashboard.mjs): log in, figures after
// traffic, credentials, a capability, a flush, screenshots at laptop and
// phone widths (saved in e2e/browser/out/).
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
	tc.asciiLogin(l)
	for i := 0; i < 25; i++ {
		tc.cmd(fmt.Sprintf("set item%d 0 0 5\r\nhello\r\n", i))
	}
	for i := 0; i < 40; i++ {
		tc.cmd(fmt.Sprintf("get item%d\r\n", i))
		if i < 25 {
			tc.line()
			tc.line()
		}
	}
	time.Sleep(2500 * time.Millisecond) // a few history samples

	out := filepath.Join(dir, "out")
	os.RemoveAll(out)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "dashboard.mjs"), "http://"+h.http, l.Username, l.Password, out)
	cmd.Dir = dir
	res, err := cmd.CombinedOutput()
	t.Logf("dashboard.mjs:\n%s", res)
	if err != nil || !dashboardSummary.Match(res) {
		t.Fatalf("the browser test failed (%v)", err)
	}
	for _, shot := range []string{"dashboard.png", "after.png", "phone.png"} {
		if st, err := os.Stat(filepath.Join(out, shot)); err != nil || st.Size() == 0 {
			t.Fatalf("screenshot %s missing: %v", shot, err)
		}
	}
	if !strings.Contains(h.Output(), "dashboard: http://") {
		t.Fatal("serve did not print the dashboard address")
	}
}
