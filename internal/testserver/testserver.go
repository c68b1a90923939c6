// Package testserver starts memhive and reference memcached processes for
// tests: each binds to a free loopback port, is waited for until it accepts
// connections, and is stopped by pid when the test ends.
package testserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/procstat"
)

// Server is one server process started for a test. Its fields are fixed
// after Start returns and safe to read from any goroutine.
type Server struct {
	Addr string // host:port the server listens on
	Port int
	Pid  int
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
	mu   sync.Mutex
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// MemhiveBinary returns the path of a memhive binary: $MEMHIVE_BIN if set,
// otherwise one built once per test process from this module.
func MemhiveBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MEMHIVE_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		dir, err := os.MkdirTemp("", "memhive-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "memhive")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/memhive")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building memhive: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartMemhive starts `memhive serve --listen 127.0.0.1:PORT args...` and
// waits until it accepts connections. Defaults: --auth none, --http off,
// a new temporary --data.
func StartMemhive(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartMemhiveOn(t, 0, args...)
}

// StartMemhiveOn is StartMemhive listening on port, or on a free port if
// port is 0: a test restarts a node of a cluster where its clients and
// the server list expect it.
func StartMemhiveOn(t testing.TB, port int, args ...string) *Server {
	t.Helper()
	bin := MemhiveBinary(t)
	return startOn(t, port, func(port int) []string {
		a := []string{bin, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}
		if !hasFlag(args, "--auth") {
			a = append(a, "--auth", "none")
		}
		if !hasFlag(args, "--data") {
			a = append(a, "--data", t.TempDir())
		}
		if !hasFlag(args, "--http") {
			// No fixed port for parallel tests to fight over; tests of
			// the HTTP endpoints pass a free one.
			a = append(a, "--http", "off")
		}
		return append(a, args...)
	})
}

// StartMemcached starts Debian's memcached on 127.0.0.1 with args (for
// example "-m", "64") and waits until it accepts connections. It fails the
// test, loudly, when memcached is not installed: run tools/install-deps.sh.
func StartMemcached(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatalf("memcached is not installed (run tools/install-deps.sh as root): %v", err)
	}
	return start(t, func(port int) []string {
		a := []string{bin, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0"}
		if os.Geteuid() == 0 {
			a = append(a, "-u", "root")
		}
		return append(a, args...)
	})
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func start(t testing.TB, argv func(port int) []string) *Server {
	t.Helper()
	return startOn(t, 0, argv)
}

// startOn starts the process argv gives for a port: fixed, or a free one
// if fixed is 0; it tries three times, as a port can be taken meanwhile.
func startOn(t testing.TB, fixed int, argv func(port int) []string) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := fixed
		if port == 0 {
			port = FreePort(t)
		}
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, done: make(chan struct{}), log: &strings.Builder{}}
		a := argv(port)
		s.cmd = exec.Command(a[0], a[1:]...)
		s.cmd.Stdout = lockedWriter{s}
		s.cmd.Stderr = lockedWriter{s}
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting %v: %v", a, err)
		}
		s.Pid = s.cmd.Process.Pid
		go func() { s.cmd.Wait(); close(s.done) }()
		if err := s.waitReady(10 * time.Second); err != nil {
			s.Stop()
			lastErr = fmt.Errorf("%v: %v\noutput:\n%s", a, err, s.Output())
			continue
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("server did not start: %v", lastErr)
	return nil
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.log.Len() < 1<<20 {
		w.s.log.Write(p)
	}
	return len(p), nil
}

// Output returns what the process has printed so far (first MiB).
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if s.Exited() {
			return fmt.Errorf("exited early")
		}
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not accepting connections on %s after %v", s.Addr, limit)
}

// Stop ends the process by pid: SIGTERM, then SIGKILL after 3 s.
func (s *Server) Stop() {
	if s.Exited() {
		return
	}
	syscall.Kill(s.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		syscall.Kill(-s.Pid, syscall.SIGKILL)
		syscall.Kill(s.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Terminate sends SIGTERM and waits up to limit for the process to exit;
// it returns the exit code, or an error if the process outlived limit
// (it is then killed).
func (s *Server) Terminate(limit time.Duration) (int, error) {
	syscall.Kill(s.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode(), nil
	case <-time.After(limit):
		s.Kill()
		return -1, fmt.Errorf("pid %d still running %v after SIGTERM", s.Pid, limit)
	}
}

// Signal sends sig to the process.
func (s *Server) Signal(sig syscall.Signal) error { return syscall.Kill(s.Pid, sig) }

// RSS returns the resident set size of the process in bytes, from /proc.
func (s *Server) RSS() (int64, error) { return procstat.RSS(s.Pid) }

// WaitOutput waits until the process has printed sub, for at most limit.
func (s *Server) WaitOutput(sub string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !strings.Contains(s.Output(), sub) {
		if s.Exited() {
			return fmt.Errorf("exited before printing %q; output:\n%s", sub, s.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not print %q within %v; output:\n%s", sub, limit, s.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Kill ends the process at once with SIGKILL, by pid, and waits for it:
// a crash, with no chance to clean up.
func (s *Server) Kill() {
	if s.Exited() {
		return
	}
	syscall.Kill(s.Pid, syscall.SIGKILL)
	<-s.done
}
