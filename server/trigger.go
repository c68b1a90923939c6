package server

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// A trigger has an event loop run a function soon, asked from the loop
// itself or from any goroutine, at the cost of one small write and
// without allocating: gnet's own way (EventLoop.Execute, Conn.Wake)
// allocates a task closure per call. It is one end of a socket pair
// registered on the loop as a gnet connection (OnOpen, OnTraffic and
// OnClose know it by its context); pull writes a byte to the other end,
// and the loop, once it has served the connections that were ready with
// it, reads it and runs fire. Routing uses triggers to write the peer
// frames of a loop's pass in one write per peer (loopState), and those
// of TLS connections from their loop (peerLink.flushFrom).
type trigger struct {
	fire   func() // run on the loop
	queued atomic.Bool
	// wake is the write end, -1 until the loop has registered the read
	// end and after it has closed it. The descriptor itself is closed
	// only by closeTriggers, once nothing can pull any more: closed
	// earlier, its number could be reused while a goroutine writes.
	wake atomic.Int32
	wfd  int
}

// triggerSetup bounds how long startTrigger waits for the loop to
// register a trigger.
const triggerSetup = 5 * time.Second

// triggers are every trigger made, for closeTriggers.
type triggers struct {
	mu     sync.Mutex
	all    []*trigger
	closed bool
}

// newTrigger returns a trigger that runs fire on el, usable (pull
// succeeds) once el has registered it, in the background.
func (s *Server) newTrigger(el gnet.EventLoop, fire func()) *trigger {
	tr := &trigger{fire: fire, wfd: -1}
	tr.wake.Store(-1)
	go s.startTrigger(el, tr)
	return tr
}

// startTrigger makes tr's socket pair and registers its read end on el.
func (s *Server) startTrigger(el gnet.EventLoop, tr *trigger) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		s.log.Warn("cannot make an event loop's trigger", "err", err)
		return
	}
	t := &s.triggers
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return
	}
	tr.wfd = fds[1]
	t.all = append(t.all, tr)
	t.mu.Unlock()
	f := os.NewFile(uintptr(fds[0]), "trigger")
	nc, err := net.FileConn(f) // a duplicate: f is closed either way
	f.Close()
	var res <-chan gnet.RegisteredResult
	if err == nil {
		// gnet duplicates nc's descriptor in turn, and closes nc.
		if res, err = el.Enroll(gnet.NewContext(context.Background(), tr), nc); err != nil {
			nc.Close()
		}
	}
	if err == nil {
		select {
		case r := <-res:
			err = r.Err
		case <-time.After(triggerSetup):
			err = errors.New("not registered in time")
		}
	}
	if err != nil {
		s.log.Warn("cannot register an event loop's trigger", "err", err)
		return
	}
	tr.wake.Store(int32(fds[1]))
}

// wakeByte is what pull writes.
var wakeByte = [1]byte{1}

// pull has the loop run fire; a pull while one is pending is merged with
// it. It reports false when the trigger cannot be used (not registered
// yet, or closed): the caller does the work another way.
func (tr *trigger) pull() bool {
	if tr.queued.Load() {
		return true
	}
	fd := tr.wake.Load()
	if fd < 0 {
		return false
	}
	if !tr.queued.CompareAndSwap(false, true) {
		return true
	}
	// EAGAIN: bytes are unread, so the loop will read.
	if _, err := syscall.Write(int(fd), wakeByte[:]); err != nil && err != syscall.EAGAIN {
		tr.queued.Store(false)
		return false
	}
	return true
}

// traffic is OnTraffic for the trigger's connection.
func (tr *trigger) traffic(c gnet.Conn) gnet.Action {
	if n := c.InboundBuffered(); n > 0 {
		c.Discard(n)
	}
	// Cleared first: a pull during fire is another run.
	tr.queued.Store(false)
	tr.fire()
	return gnet.None
}

// closed is OnClose for the trigger's connection (the server stops):
// pulls fail from now on, and what was asked for runs now.
func (tr *trigger) closed() {
	tr.wake.Store(-1)
	tr.queued.Store(false)
	tr.fire()
}

// closeTriggers closes the triggers' write ends, once the event loops and
// the TLS connections have ended.
func (s *Server) closeTriggers() {
	t := &s.triggers
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, tr := range t.all {
		tr.wake.Store(-1)
		syscall.Close(tr.wfd)
	}
	t.all = nil
}
