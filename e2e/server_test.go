package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// serverConfig is what a test needs from the server under test, in terms
// both memhive and memcached understand.
type serverConfig struct {
	memoryMiB   int    // --memory / -m; 0 keeps the server's default
	threads     int    // --threads / -t; 0 keeps the server's default
	maxItemSize string // --max-item-size / -I, e.g. "1m"; "" keeps the default
}

// againstMemcached reports whether E2E_AGAINST asks for the reference
// memcached. Any value other than "", "memhive" or "memcached" is a typo
// that would silently test the wrong server, so it fails the test.
func againstMemcached(t testing.TB) bool {
	t.Helper()
	switch v := os.Getenv("E2E_AGAINST"); v {
	case "", "memhive":
		return false
	case "memcached":
		return true
	default:
		t.Fatalf("E2E_AGAINST=%q: want memhive or memcached", v)
		return false
	}
}

// startServer starts the server under test (memhive, or memcached when
// E2E_AGAINST=memcached) on a free loopback port; it is stopped by pid when
// the test ends.
func startServer(t testing.TB, cfg serverConfig) *testserver.Server {
	t.Helper()
	var args []string
	if againstMemcached(t) {
		if cfg.memoryMiB > 0 {
			args = append(args, "-m", strconv.Itoa(cfg.memoryMiB))
		}
		if cfg.threads > 0 {
			args = append(args, "-t", strconv.Itoa(cfg.threads))
		}
		if cfg.maxItemSize != "" {
			args = append(args, "-I", cfg.maxItemSize)
		}
		s := testserver.StartMemcached(t, args...)
		t.Logf("server under test: memcached pid %d on %s", s.Pid, s.Addr)
		return s
	}
	if cfg.memoryMiB > 0 {
		args = append(args, "--memory", strconv.Itoa(cfg.memoryMiB))
	}
	if cfg.threads > 0 {
		args = append(args, "--threads", strconv.Itoa(cfg.threads))
	}
	if cfg.maxItemSize != "" {
		args = append(args, "--max-item-size", cfg.maxItemSize)
	}
	s := testserver.StartMemhive(t, args...)
	t.Logf("server under test: memhive pid %d on %s", s.Pid, s.Addr)
	return s
}

// serverStats sends the ASCII "stats" command on a fresh connection and
// returns the STAT lines as name -> value. gomemcache has no stats call,
// and a fresh connection keeps this independent of any client's state.
func serverStats(t testing.TB, addr string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("stats: dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		t.Fatalf("stats: write: %v", err)
	}
	stats := make(map[string]string)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stats: read after %d lines: %v", len(stats), err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "END" {
			return stats
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || f[0] != "STAT" {
			t.Fatalf("stats: unexpected line %q", line)
		}
		stats[f[1]] = f[2]
	}
}

// statInt returns the named counter from a serverStats map, failing the
// test when it is missing or not a decimal number.
func statInt(t testing.TB, stats map[string]string, name string) int64 {
	t.Helper()
	v, ok := stats[name]
	if !ok {
		t.Fatalf("stats has no %q", name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("stats %s=%q: %v", name, v, err)
	}
	return n
}

// peakRSS returns the process's resident-set high-water mark (VmHWM) in
// bytes: it catches a peak that periodic Server.RSS samples could miss.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("odd VmHWM line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
