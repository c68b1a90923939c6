package server

import (
	"crypto/subtle"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/memhive/memhive/codec"
)

// Server-side routing, the peers' half (issue 15). An origin node keeps a
// small pool of persistent connections to each peer it forwards to
// (peerConn): each has a writer goroutine that writes every frame queued
// since its last write in one write (so the forwarded requests of a
// wake-up, of every connection of every loop, are coalesced), and a
// reader goroutine that matches replies to requests in order by sequence
// number and completes their slots. A watchdog fails a connection whose
// oldest request has waited longer than the forward timeout: every
// request on it is answered with its miss or server error, the
// connection is closed (a late reply has nowhere to go) and dialled again
// in the background. While a peer cannot be dialled, its requests fail at
// once.
//
// On the owner, a peer connection is an ordinary connection of its port
// whose first bytes are a hello (protoPeer): it runs each frame's request
// on the frame's cache through execASCII and execBinary, as a client's,
// and writes one reply frame per request frame.

// DefaultPeerConns is RouteConfig.Conns' default.
const DefaultPeerConns = 2

// maxPeerPending bounds the frames queued for one peer connection and not
// yet written; past it, forwarded requests fail at once rather than grow
// memory without bound behind a peer that does not read.
const maxPeerPending = 64 << 20

// memberCheck is how often the watchdog looks for pools of nodes that
// have left the cluster.
const memberCheck = time.Second

// Redial backoff after a failed dial.
const (
	minRedial = 10 * time.Millisecond
	maxRedial = time.Second
)

// peer is the pool of connections to one node.
type peer struct {
	addr  string
	conns []*peerConn
	// quit is closed when the node has left the cluster (retirePeer):
	// the pool's goroutines end.
	quit   chan struct{}
	retire sync.Once
}

// peerTable holds the peers of a routing Server, made as they are first
// needed and kept until it stops.
type peerTable struct {
	mu      sync.RWMutex
	m       map[string]*peer
	all     []*peer // every pool made, retired ones too, for stopPeers
	stop    chan struct{}
	stopped bool
	wg      sync.WaitGroup
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// peer returns the pool for addr, starting it on first use.
func (s *Server) peer(addr string) *peer {
	t := &s.peers
	t.mu.RLock()
	p := t.m[addr]
	t.mu.RUnlock()
	if p != nil {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p = t.m[addr]; p != nil {
		return p
	}
	if t.m == nil {
		t.m = make(map[string]*peer)
		t.stop = make(chan struct{})
		t.wg.Add(1)
		go s.watchPeers()
	}
	n := s.route.Conns
	if n <= 0 {
		n = DefaultPeerConns
	}
	p = &peer{addr: addr, conns: make([]*peerConn, n), quit: make(chan struct{})}
	for i := range p.conns {
		pc := &peerConn{s: s, p: p, addr: addr, kick: make(chan struct{}, 1), down: t.stopped}
		pc.rawFn = pc.rawWrite
		p.conns[i] = pc
		if !t.stopped {
			t.wg.Add(2)
			go pc.run()
			go pc.writeLoop()
		}
	}
	t.m[addr] = p
	t.all = append(t.all, p)
	return p
}

// conn picks the pool's connection for a client connection.
// takeDown stops the peer's connections for good: each fails what it
// carries and dials no more.
func (p *peer) takeDown() {
	for _, pc := range p.conns {
		pc.mu.Lock()
		pc.down = true
		nc := pc.nc
		pc.mu.Unlock()
		pc.fail(nc)
	}
}

func (p *peer) conn(fd int) *peerConn { return p.conns[uint(fd)%uint(len(p.conns))] }

// stopPeers closes every peer connection, failing what is in flight, and
// waits for their goroutines.
func (s *Server) stopPeers() {
	t := &s.peers
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	if t.stop != nil {
		close(t.stop)
	}
	peers := t.all
	t.mu.Unlock()
	for _, p := range peers {
		p.takeDown()
	}
	t.wg.Wait()
}

// watchPeers fails the peer connections whose oldest request has waited
// past the forward timeout, checking a few times per timeout.
func (s *Server) watchPeers() {
	defer s.peers.wg.Done()
	tick := time.NewTicker(max(s.fwdTimeout/8, time.Millisecond))
	defer tick.Stop()
	var lastMembers time.Time
	var gone []*peer
	for {
		select {
		case <-s.peers.stop:
			return
		case now := <-tick.C:
			checkMembers := now.Sub(lastMembers) >= memberCheck
			if checkMembers {
				lastMembers = now
			}
			s.peers.mu.RLock()
			for _, p := range s.peers.m {
				for _, pc := range p.conns {
					pc.expire(now.UnixNano())
				}
				if checkMembers && !s.isMember(p.addr) {
					gone = append(gone, p)
				}
			}
			s.peers.mu.RUnlock()
			// A node that left may still accept connections (it is
			// stopping, or its address is reused): its pool goes anyway.
			for i, p := range gone {
				s.retirePeer(p)
				gone[i] = nil
			}
			gone = gone[:0]
		}
	}
}

// inflight is a request sent (or queued) on a peer connection, awaiting
// its reply.
type inflight struct {
	sl       *slot
	seq      uint32
	deadline int64 // unix nanoseconds
}

// flightRing is a peer connection's requests in the order sent, which is
// the order their replies come in.
type flightRing struct {
	ring    []inflight
	head, n int
}

func (r *flightRing) push(e inflight) {
	if r.n == len(r.ring) {
		ring := make([]inflight, max(64, 2*len(r.ring)))
		for i := 0; i < r.n; i++ {
			ring[i] = r.ring[(r.head+i)%len(r.ring)]
		}
		r.ring, r.head = ring, 0
	}
	r.ring[(r.head+r.n)%len(r.ring)] = e
	r.n++
}

func (r *flightRing) pop() inflight {
	e := r.ring[r.head]
	r.ring[r.head] = inflight{}
	r.head = (r.head + 1) % len(r.ring)
	r.n--
	return e
}

// peerConn is one persistent connection to a peer, and the goroutines
// that dial, write and read it. mu guards every field below it; it is a
// leaf lock (completing a slot under it only wakes an event loop).
type peerConn struct {
	s    *Server
	p    *peer
	addr string
	kick chan struct{} // wakes the writer

	mu      sync.Mutex
	nc      net.Conn        // nil while dialling or down
	raw     syscall.RawConn // nc's descriptor, for flush's non-blocking writes
	down    bool            // the last dial failed (or the server stops): fail at once
	writing bool            // the writer goroutine is writing (and holds nc's write lock)
	seq     uint32
	pend    []byte // frames not yet written, in seq order
	spare   []byte // the writer's other buffer
	fl      flightRing

	// flush's non-blocking write: rawWrite (a method value made once, so
	// that a write allocates nothing) writes rawBuf, leaving rawN and
	// rawErr. Guarded by mu.
	rawFn  func(fd uintptr) bool
	rawBuf []byte
	rawN   int
	rawErr error
}

// enqueue queues a request frame for cache id carrying body and answered
// into sl; when the peer is down, sl fails at once.
func (pc *peerConn) enqueue(cacheID uint32, proto uint8, body []byte, sl *slot) {
	deadline := time.Now().UnixNano() + int64(pc.s.fwdTimeout)
	pc.mu.Lock()
	if pc.down || len(pc.pend) > maxPeerPending {
		pc.mu.Unlock()
		sl.complete(nil, true)
		return
	}
	pc.seq++
	pc.pend = codec.AppendPeerRequest(pc.pend, pc.seq, cacheID, proto, body)
	pc.fl.push(inflight{sl: sl, seq: pc.seq, deadline: deadline})
	pc.mu.Unlock()
}

// flush writes the queued frames at the end of an event loop's wake-up:
// at once, with one non-blocking write, when the writer goroutine is idle
// (a request then costs no goroutine switch on this side), and whatever
// that write cannot take, or everything while the writer is busy, by the
// writer goroutine. An event loop never waits on a peer's socket.
func (pc *peerConn) flush() {
	pc.mu.Lock()
	if len(pc.pend) == 0 || pc.nc == nil {
		pc.mu.Unlock()
		return
	}
	if !pc.writing && pc.raw != nil {
		pc.rawBuf, pc.rawN, pc.rawErr = pc.pend, 0, nil
		pc.raw.Write(pc.rawFn)
		if n := pc.rawN; n > 0 {
			pc.pend = pc.pend[:copy(pc.pend, pc.pend[n:])]
		}
		pc.rawBuf = nil
	}
	rest := len(pc.pend) > 0
	pc.mu.Unlock()
	if rest {
		select {
		case pc.kick <- struct{}{}:
		default:
		}
	}
}

// rawWrite is flush's write: once, never waiting; an error (the socket is
// full, or broken) leaves the bytes to the writer goroutine, whose
// blocking write tells which.
func (pc *peerConn) rawWrite(fd uintptr) bool {
	n, err := syscall.Write(int(fd), pc.rawBuf)
	pc.rawN, pc.rawErr = max(n, 0), err
	return true
}

// failLocked completes every request in flight with its failure answer
// and drops the frames not yet written.
func (pc *peerConn) failLocked() {
	for pc.fl.n > 0 {
		e := pc.fl.pop()
		e.sl.complete(nil, true)
	}
	pc.pend = pc.pend[:0]
}

// fail ends connection nc (nil: the connection being dialled), failing
// what is in flight on it; nothing if nc is no longer the current one.
func (pc *peerConn) fail(nc net.Conn) {
	pc.mu.Lock()
	if pc.nc != nc {
		pc.mu.Unlock()
		return
	}
	pc.nc, pc.raw = nil, nil
	pc.failLocked()
	pc.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

// expire fails the connection if its oldest request is overdue.
func (pc *peerConn) expire(now int64) {
	pc.mu.Lock()
	overdue := pc.fl.n > 0 && pc.fl.ring[pc.fl.head].deadline < now
	nc := pc.nc
	pc.mu.Unlock()
	if overdue {
		pc.s.log.Debug("a peer did not answer in time", "peer", pc.addr)
		pc.fail(nc)
	}
}

// run dials the peer, reads the connection until it fails, and dials
// again, until the server stops.
func (pc *peerConn) run() {
	defer pc.s.peers.wg.Done()
	stop, quit := pc.s.peers.stop, pc.p.quit
	backoff := minRedial
	for {
		select {
		case <-stop:
			return
		case <-quit:
			return
		default:
		}
		nc, err := pc.dial()
		if err != nil {
			pc.mu.Lock()
			pc.down = true
			pc.failLocked()
			pc.mu.Unlock()
			if !pc.s.isMember(pc.addr) {
				pc.s.retirePeer(pc.p)
				return
			}
			select {
			case <-stop:
				return
			case <-quit:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxRedial)
			continue
		}
		backoff = minRedial
		// Checked under pc.mu: stopPeers and retirePeer close their
		// channel before they take it to fail the connection.
		pc.mu.Lock()
		if isClosed(stop) || isClosed(quit) {
			pc.mu.Unlock()
			nc.Close()
			return
		}
		pc.nc, pc.down = nc, false
		pc.raw = nil
		if tc, ok := nc.(*net.TCPConn); ok {
			pc.raw, _ = tc.SyscallConn()
		}
		pc.mu.Unlock()
		select {
		case pc.kick <- struct{}{}:
		default:
		}
		err = pc.read(nc)
		pc.s.log.Debug("peer connection ended", "peer", pc.addr, "err", err)
		pc.fail(nc)
	}
}

// isMember reports whether a node of the cluster has address addr.
func (s *Server) isMember(addr string) bool {
	for _, n := range s.route.Owners.Nodes() {
		if n.Addr == addr {
			return true
		}
	}
	return false
}

// retirePeer ends the pool of a node that has left the cluster: its
// goroutines end, requests still routed to it fail at once, and it leaves
// the table (a node that comes back at the address gets a new pool).
func (s *Server) retirePeer(p *peer) {
	p.retire.Do(func() {
		close(p.quit)
		t := &s.peers
		t.mu.Lock()
		if t.m[p.addr] == p {
			delete(t.m, p.addr)
		}
		t.mu.Unlock()
		p.takeDown()
	})
}

// dial opens a connection to the peer and says hello.
func (pc *peerConn) dial() (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", pc.addr, max(pc.s.fwdTimeout, 100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	nc.SetWriteDeadline(time.Now().Add(max(pc.s.fwdTimeout, 100*time.Millisecond)))
	if _, err := nc.Write(codec.AppendPeerHello(nil, pc.s.secret())); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetWriteDeadline(time.Time{})
	return nc, nil
}

// writeLoop writes the frames queued on the connection, all of them at
// each turn, until the server stops.
func (pc *peerConn) writeLoop() {
	defer pc.s.peers.wg.Done()
	for {
		select {
		case <-pc.s.peers.stop:
			return
		case <-pc.p.quit:
			return
		case <-pc.kick:
		}
		pc.mu.Lock()
		nc := pc.nc
		if nc == nil || len(pc.pend) == 0 {
			pc.mu.Unlock()
			continue
		}
		buf := pc.pend
		pc.pend, pc.spare = pc.spare[:0], nil
		pc.writing = true
		pc.mu.Unlock()
		_, err := nc.Write(buf)
		pc.mu.Lock()
		pc.writing = false
		if cap(buf) <= outKeep {
			pc.spare = buf[:0]
		}
		if len(pc.pend) > 0 {
			// Queued while this write ran, and flush left them here.
			select {
			case pc.kick <- struct{}{}:
			default:
			}
		}
		pc.mu.Unlock()
		if err != nil {
			pc.fail(nc)
		}
	}
}

// errPeerOrder is a reply whose sequence number is not the oldest
// request's: the peer is broken, and the connection is failed.
var errPeerOrder = errors.New("server: a peer's reply out of order")

// read completes the slots of nc's requests with their replies, in order,
// until nc fails.
func (pc *peerConn) read(nc net.Conn) error {
	buf := make([]byte, 0, 64<<10)
	maxBody := pc.s.replyBudget + pc.s.inputLimit
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		off := 0
		for {
			seq, body, m, perr := codec.ParsePeerReply(buf[off:], maxBody)
			if errors.Is(perr, codec.ErrIncomplete) {
				break
			}
			if perr != nil {
				return perr
			}
			off += m
			pc.mu.Lock()
			if pc.nc != nc || pc.fl.n == 0 || pc.fl.ring[pc.fl.head].seq != seq {
				pc.mu.Unlock()
				return errPeerOrder
			}
			e := pc.fl.pop()
			pc.mu.Unlock()
			e.sl.complete(body, false)
		}
		buf = buf[:copy(buf, buf[off:])]
		if err != nil {
			return err
		}
	}
}

// binaryUnknownCache is the body of the binary answer to a forwarded
// request for a cache this node does not serve.
const binaryUnknownCache = "cache not served by this node"

// secret is the cluster secret.
func (s *Server) secret() string {
	if s.route.Secret == nil {
		return ""
	}
	return s.route.Secret()
}

// processPeer runs the frames of a peer connection (buf starts at its
// hello, or at a frame once the hello is accepted), appending one reply
// frame per request frame to cs.out.
func (s *Server) processPeer(cs *conn, buf []byte) (consumed int, closeConn bool) {
	for consumed < len(buf) {
		if cs.exec == nil {
			secret, n, err := codec.ParsePeerHello(buf[consumed:])
			if errors.Is(err, codec.ErrIncomplete) {
				return consumed, false
			}
			cs.stats.AuthCmds.Add(1)
			if err != nil || subtle.ConstantTimeCompare(secret, []byte(s.secret())) != 1 {
				cs.stats.AuthErrors.Add(1)
				s.log.Warn("refusing a peer connection with a wrong cluster secret", "remote", cs.remote)
				return consumed + n, true
			}
			consumed += n
			cs.exec = &conn{relay: true, fd: cs.fd, out: nil}
			cs.peerLink.Store(true)
			continue
		}
		if len(cs.out) >= outputHold {
			cs.held.Store(true)
			return consumed, false
		}
		n, err := codec.ParsePeerRequest(buf[consumed:], &cs.frame, s.inputLimit)
		if errors.Is(err, codec.ErrIncomplete) {
			return consumed, false
		}
		if err != nil {
			return consumed, true
		}
		consumed += n
		hdr := len(cs.out)
		cs.out = codec.AppendPeerReplyHeader(cs.out, cs.frame.Seq, 0)
		ex := cs.exec
		ex.out = cs.out
		s.execFrame(ex, &cs.frame)
		cs.out, ex.out = ex.out, nil
		codec.PutPeerReplyLength(cs.out[hdr:], len(cs.out)-hdr-codec.PeerReplyHeaderLen)
	}
	return consumed, false
}

// execFrame runs a frame's one request on its cache as a client's
// request, with every capability (the origin checked the credential's),
// appending its reply to ex.out.
func (s *Server) execFrame(ex *conn, f *codec.PeerRequest) {
	r := &ex.req
	var n int
	var err error
	if f.Proto == codec.PeerBinary {
		ex.proto = protoBinary
		n, err = s.parser.ParseBinary(f.Body, r)
	} else {
		ex.proto = protoASCII
		n, err = s.parser.ParseASCII(f.Body, r)
	}
	if err != nil || n != len(f.Body) {
		// Not one whole request: no origin sends that.
		if f.Proto == codec.PeerBinary && len(f.Body) >= codec.BinaryHeaderLen {
			ex.out = codec.AppendBinaryStatus(ex.out, f.Body[1], codec.StatusTemporaryFailure, 0)
		} else if f.Proto != codec.PeerBinary {
			ex.out = append(ex.out, codec.ReplyForwardFailed...)
		}
		return
	}
	tn := s.tenants.Cache(f.CacheID)
	if tn == nil {
		switch {
		case ex.proto == protoBinary:
			ex.out = codec.AppendBinaryError(ex.out, r.Opcode, codec.StatusTemporaryFailure, r.Opaque, binaryUnknownCache)
		case !r.NoReply || r.Cmd >= codec.CmdMetaGet && r.Cmd <= codec.CmdMetaDebug:
			ex.out = append(ex.out, codec.ReplyUnknownCache...)
		}
		return
	}
	ex.tenant, ex.user, ex.stats = tn, nil, tn.Conns.Shard(ex.fd)
	switch {
	case ex.proto == protoBinary && isSASL(r.Cmd):
		ex.out = codec.AppendBinaryStatus(ex.out, r.Opcode, codec.StatusUnknownCommand, r.Opaque)
	case ex.proto == protoBinary:
		s.execBinary(ex, r)
	default:
		s.execASCII(ex, r)
	}
	ex.tenant, ex.swallow = nil, 0
}
