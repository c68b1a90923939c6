package e2e

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memccapableTests lists, per protocol flag, every check libmemcached 1.1.4's
// memccapable runs. The test requires each to be reported as passed, so a
// run that stops early (a crash, a hang cut by -t) cannot look like success.
var memccapableTests = map[string][]string{
	"-a": {
		"ascii version", "ascii quit", "ascii verbosity", "ascii set",
		"ascii set noreply", "ascii get", "ascii gets", "ascii mget",
		"ascii flush", "ascii flush noreply", "ascii add", "ascii add noreply",
		"ascii replace", "ascii replace noreply", "ascii cas", "ascii cas noreply",
		"ascii delete", "ascii delete noreply", "ascii incr", "ascii incr noreply",
		"ascii decr", "ascii decr noreply", "ascii append", "ascii append noreply",
		"ascii prepend", "ascii prepend noreply", "ascii stat",
	},
	"-b": {
		"binary noop", "binary quit", "binary quitq", "binary set", "binary setq",
		"binary flush", "binary flushq", "binary add", "binary addq",
		"binary replace", "binary replaceq", "binary delete", "binary deleteq",
		"binary get", "binary getq", "binary getk", "binary getkq",
		"binary incr", "binary incrq", "binary decr", "binary decrq",
		"binary version", "binary append", "binary appendq", "binary prepend",
		"binary prependq", "binary stat",
	},
}

// memccapableResult matches one result line, e.g.
// "ascii set noreply                       [pass]".
var memccapableResult = regexp.MustCompile(`^((?:ascii|binary) [a-z ]+?)\s+\[(pass|FAIL|skip)\]$`)

// TestMemccapable runs libmemcached's conformance checker against the
// server, once for the ASCII protocol and once for the binary protocol.
// Against memcached 1.6.18 every check passes, so none is tolerated.
func TestMemccapable(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("memccapable")
	if err != nil {
		t.Fatalf("memccapable is not installed (Debian package libmemcached-tools; run tools/install-deps.sh): %v", err)
	}
	s := startServer(t, serverConfig{memoryMiB: 64})
	for _, proto := range []string{"-a", "-b"} {
		t.Run(map[string]string{"-a": "ascii", "-b": "binary"}[proto], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// -t 5 bounds each socket operation so a server that never
			// answers fails the check instead of eating the whole timeout;
			// -v prints the failed assertion next to a failing check.
			cmd := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-t", "5", "-v", proto)
			out, err := cmd.CombinedOutput()
			t.Logf("%s:\n%s", strings.Join(cmd.Args, " "), out)
			if ctx.Err() != nil {
				t.Fatalf("memccapable %s did not finish within the timeout", proto)
			}
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) {
				t.Fatalf("running memccapable: %v", err)
			}
			status := make(map[string]string)
			for _, line := range strings.Split(string(out), "\n") {
				if m := memccapableResult.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
					status[m[1]] = m[2]
				}
			}
			for _, name := range memccapableTests[proto] {
				switch st, ok := status[name]; {
				case !ok:
					t.Errorf("memccapable did not report %q", name)
				case st != "pass":
					t.Errorf("memccapable %q: %s", name, st)
				}
			}
			for name, st := range status {
				if !slices.Contains(memccapableTests[proto], name) && st != "pass" {
					t.Errorf("memccapable %q (not in the known list): %s", name, st)
				}
			}
			if err != nil {
				t.Errorf("memccapable %s exited with %v", proto, err)
			}
			if !strings.Contains(string(out), "All tests passed") {
				t.Errorf("memccapable %s did not print \"All tests passed\"", proto)
			}
			if s.Exited() {
				t.Fatalf("server exited during memccapable %s; its output:\n%s", proto, s.Output())
			}
		})
	}
}
