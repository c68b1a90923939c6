package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// systemPython is Debian's python, the one with python3-pylibmc; the
// python3 first on PATH may be another installation without it.
const systemPython = "/usr/bin/python3"

// pylibmcSummary matches the script's last line; requiring it, with zero
// failures, catches a script that exits 0 without running its checks.
var pylibmcSummary = regexp.MustCompile(`(?m)^(\d+) checks passed, (\d+) failed$`)

// TestPylibmc runs testdata/pylibmc_ops.py, which drives every pylibmc
// operation over the binary protocol and asserts memcached's answers.
func TestPylibmc(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(systemPython); err != nil {
		t.Fatalf("%s is missing (Debian python3 with python3-pylibmc; run tools/install-deps.sh): %v", systemPython, err)
	}
	if out, err := exec.Command(systemPython, "-c", "import pylibmc").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import pylibmc (install Debian's python3-pylibmc): %v\n%s", systemPython, err, out)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "pylibmc_ops.py"))
	if err != nil {
		t.Fatal(err)
	}
	const memoryMiB = 64
	s := startServer(t, serverConfig{memoryMiB: memoryMiB, maxItemSize: "1m"})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, script, "--server", s.Addr, "--memory-mib", strconv.Itoa(memoryMiB))
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", strings.Join(cmd.Args, " "), out)
	if ctx.Err() != nil {
		t.Fatalf("pylibmc script did not finish within the timeout")
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if err != nil {
		t.Errorf("pylibmc script: %v", err)
	}
	m := pylibmcSummary.FindStringSubmatch(string(out))
	switch {
	case m == nil:
		t.Errorf("pylibmc script printed no summary line")
	case m[2] != "0":
		t.Errorf("pylibmc script: %s checks failed", m[2])
	case m[1] == "0":
		t.Errorf("pylibmc script ran no checks")
	}
	if s.Exited() {
		t.Fatalf("server exited; its output:\n%s", s.Output())
	}
}
