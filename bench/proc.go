package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/memhive/memhive/internal/procstat"
)

// Proc is a server process started for a measurement, stopped by pid.
type Proc struct {
	Name string
	Addr string
	Pid  int
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartProc runs argv (with env added to the environment) and waits until
// addr accepts connections.
func StartProc(name, addr string, argv, env []string) (*Proc, error) {
	logf, err := os.CreateTemp("", "memhive-bench-"+name+"-*.log")
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, Addr: addr, done: make(chan struct{}), log: logf}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.Pid = p.cmd.Process.Pid
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("%s exited at start: %s", name, out)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Stop()
	return nil, fmt.Errorf("%s did not listen on %s", name, addr)
}

// Stop ends the process: SIGTERM, then SIGKILL after 3 s.
func (p *Proc) Stop() {
	select {
	case <-p.done:
	default:
		syscall.Kill(p.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			syscall.Kill(-p.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	p.log.Close()
	os.Remove(p.log.Name())
}

// RSS is the process's resident set size in bytes.
func (p *Proc) RSS() (int64, error) { return procstat.RSS(p.Pid) }
