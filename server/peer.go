package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/memhive/memhive/codec"
)

// Server-side routing, the peers' half (issue 15). An origin node keeps,
// for each peer it forwards to, one persistent connection per event loop
// (peerLink), registered on that loop as a gnet client connection: the
// loop's client connections queue their forwarded requests on it, the
// frames queued in a pass of the loop leave in one write at the pass's
// end (loopState), and the replies are read by the same loop, which
// matches them to requests in order by sequence number, completes their
// slots and writes the client connections' ready replies at once. No
// goroutine switch, no wake-up and no lock contention stand between a
// reply and its client. TLS client
// connections, which run on goroutines of their own, share one more link
// per peer, registered on a loop gnet picks, and are woken on their
// channel.
//
// A watchdog fails a link whose oldest request has waited longer than the
// forward timeout: every request on it is answered with its miss or
// server error, the connection is closed (a late reply has nowhere to go)
// and dialled again in the background. While a peer cannot be dialled,
// its requests fail at once.
//
// On the owner, a peer connection is an ordinary connection of its port
// whose first bytes are a hello (protoPeer): it runs each frame's request
// on the frame's cache through execASCII and execBinary, as a client's,
// and writes one reply frame per request frame.

// maxPeerPending bounds the frames queued on one link and not yet
// written; past it, forwarded requests fail at once rather than grow
// memory without bound behind a peer that is not connected.
const maxPeerPending = 64 << 20

// memberCheck is how often the watchdog looks for pools of nodes that
// have left the cluster.
const memberCheck = time.Second

// Redial backoff after a failed dial.
const (
	minRedial = 10 * time.Millisecond
	maxRedial = time.Second
)

// peer is the links to one node: one per event loop, and the shared one
// (the last) for connections on no loop of ours.
type peer struct {
	addr  string
	links []atomic.Pointer[peerLink]
	// quit is closed when the node has left the cluster (retirePeer):
	// the pool's dialers end.
	quit   chan struct{}
	retire sync.Once
}

// peerTable holds the peers of a routing Server, made as they are first
// needed and kept until it stops, and the event loops their links are on.
type peerTable struct {
	mu   sync.RWMutex
	m    map[string]*peer
	all  []*peer // every pool made, retired ones too, for stopPeers
	stop chan struct{}
	wg   sync.WaitGroup
	// stopMu guards stopped, and orders every wg.Add before stopPeers'
	// Wait. A leaf lock: dialers are started under a link's mu, which
	// watchPeers takes under mu.
	stopMu  sync.Mutex
	stopped bool

	// loops are the event loops seen so far, in the order first seen: a
	// client connection's link index is its loop's place here.
	loopsMu sync.Mutex
	loops   []*loopState
}

// loopState is routing's state for one event loop: the links its client
// connections queued frames on during the loop's current pass, which its
// trigger has the loop write once it has served every connection ready
// in the pass. The frames of all of them thus leave in one write per
// peer, and the owner reads and answers them as one batch. Used by the
// loop only.
type loopState struct {
	el    gnet.EventLoop
	index int // the loop's link index
	dirty []*peerLink
	trig  *trigger
}

// sharedLink is the link index of connections on no known event loop
// (TLS ones): the last of a peer's links.
func (s *Server) sharedLink() int { return s.cfg.Threads }

// loopOf returns el's state, made when el is first seen; nil when there
// are more loops than configured (never: such a connection would use the
// shared link).
func (s *Server) loopOf(el gnet.EventLoop) *loopState {
	t := &s.peers
	t.loopsMu.Lock()
	defer t.loopsMu.Unlock()
	for _, ls := range t.loops {
		if ls.el == el {
			return ls
		}
	}
	if len(t.loops) >= s.sharedLink() {
		return nil
	}
	ls := &loopState{el: el, index: len(t.loops)}
	ls.trig = s.newTrigger(el, ls.flush)
	t.loops = append(t.loops, ls)
	return ls
}

// loopAt returns the event loop of link index i (nil: the shared link).
func (s *Server) loopAt(i int) gnet.EventLoop {
	t := &s.peers
	t.loopsMu.Lock()
	defer t.loopsMu.Unlock()
	if i < len(t.loops) {
		return t.loops[i].el
	}
	return nil
}

// mark records that l has frames to write at the end of the pass.
func (ls *loopState) mark(l *peerLink) {
	if !l.dirty {
		l.dirty = true
		ls.dirty = append(ls.dirty, l)
	}
}

// schedule has the dirty links written at the end of the loop's pass,
// or now if the loop has no trigger yet.
func (ls *loopState) schedule() {
	if len(ls.dirty) > 0 && !ls.trig.pull() {
		ls.flush()
	}
}

// flush writes every dirty link.
func (ls *loopState) flush() {
	for i, l := range ls.dirty {
		l.dirty = false
		l.flush()
		ls.dirty[i] = nil
	}
	ls.dirty = ls.dirty[:0]
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
		t.stopMu.Lock()
		if !t.stopped {
			t.wg.Add(1)
			go s.watchPeers()
		}
		t.stopMu.Unlock()
	}
	p = &peer{addr: addr, links: make([]atomic.Pointer[peerLink], s.sharedLink()+1), quit: make(chan struct{})}
	t.m[addr] = p
	t.all = append(t.all, p)
	return p
}

// link returns the pool's link for link index i, making it (and starting
// its dialer) on first use.
func (s *Server) link(p *peer, i int) *peerLink {
	if l := p.links[i].Load(); l != nil {
		return l
	}
	l := &peerLink{s: s, p: p, addr: p.addr, index: i, shared: i == s.sharedLink()}
	if !p.links[i].CompareAndSwap(nil, l) {
		return p.links[i].Load()
	}
	l.mu.Lock()
	l.startDialLocked()
	l.mu.Unlock()
	return l
}

// takeDown stops the peer's links for good: each fails what it carries
// and dials no more.
func (p *peer) takeDown() {
	for i := range p.links {
		if l := p.links[i].Load(); l != nil {
			l.mu.Lock()
			l.down = true
			gc := l.gc
			l.gc = nil
			l.failLocked()
			l.mu.Unlock()
			if gc != nil {
				gc.Close()
			}
		}
	}
}

// stopPeers closes every link, failing what is in flight, and waits for
// the dialers and the watchdog.
func (s *Server) stopPeers() {
	t := &s.peers
	t.stopMu.Lock()
	stopped := t.stopped
	t.stopped = true
	t.stopMu.Unlock()
	if stopped {
		return
	}
	t.mu.Lock()
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

// watchPeers fails the links whose oldest request has waited past the
// forward timeout, checking a few times per timeout.
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
				for i := range p.links {
					if l := p.links[i].Load(); l != nil {
						l.expire(now.UnixNano())
					}
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

// inflight is a request sent (or queued) on a link, awaiting its reply.
type inflight struct {
	sl       *slot
	seq      uint32
	deadline int64 // unix nanoseconds
}

// flightRing is a link's requests in the order sent, which is the order
// their replies come in.
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

// peerLink is one persistent connection to a peer, a gnet client
// connection on one event loop. Its frames are written and its replies
// read by that loop only; requests are queued on it by that loop's client
// connections, or, on the shared link, by TLS connections' goroutines.
// mu guards every field below it and is a leaf lock: nothing that takes
// another lock, or writes to a socket, runs under it.
type peerLink struct {
	s      *Server
	p      *peer
	addr   string
	index  int  // its place in p.links
	shared bool // the shared link: its client connections are on no loop
	// trig runs flush on the shared link's loop for TLS connections; it
	// is made when the link first opens, on the loop it opened on (el),
	// which the link keeps when it is dialled again. Both are set once,
	// under mu.
	trig *trigger
	el   gnet.EventLoop
	// ready are the client connections of the loop whose slots this
	// read completed: their replies are written once it is done. dirty:
	// the link is on its loopState's list. Both used by the loop only.
	ready []*conn
	dirty bool

	mu       sync.Mutex
	gc       gnet.Conn // nil while dialling or down
	dialling bool      // a dialer runs
	down     bool      // the last dial failed (or the server stops): fail at once
	seq      uint32
	pend     []byte // frames not yet written, in seq order
	spare    []byte // flush's other buffer
	fl       flightRing
}

// enqueue queues a request frame for cache id carrying body and answered
// into sl; when the peer is down, sl fails at once.
func (l *peerLink) enqueue(cacheID uint32, proto uint8, body []byte, sl *slot) {
	deadline := time.Now().UnixNano() + int64(l.s.fwdTimeout)
	l.mu.Lock()
	if l.down || len(l.pend) > maxPeerPending {
		l.mu.Unlock()
		sl.complete(nil, true)
		return
	}
	l.seq++
	l.pend = codec.AppendPeerRequest(l.pend, l.seq, cacheID, proto, body)
	l.fl.push(inflight{sl: sl, seq: l.seq, deadline: deadline})
	l.mu.Unlock()
}

// flush writes the queued frames, on the link's loop: gnet writes what
// the socket takes at once and keeps the rest for when it is writable,
// so the loop never waits on a peer. A write that fails closes the
// connection, and OnClose fails its requests.
func (l *peerLink) flush() {
	l.mu.Lock()
	gc := l.gc
	if gc == nil || len(l.pend) == 0 {
		l.mu.Unlock()
		return
	}
	buf := l.pend
	l.pend, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	gc.Write(buf)
	l.mu.Lock()
	if cap(buf) <= outKeep && l.spare == nil {
		l.spare = buf[:0]
	}
	l.mu.Unlock()
}

// flushFrom has the shared link's loop write the queued frames, for a
// TLS connection's goroutine.
func (l *peerLink) flushFrom() {
	l.mu.Lock()
	gc, trig := l.gc, l.trig
	l.mu.Unlock()
	if gc == nil {
		return // the connection's OnOpen writes what is queued
	}
	if trig == nil || !trig.pull() {
		// The trigger is still being registered: gnet's own task queue.
		gc.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.flush()
			return nil
		}))
	}
}

// failLocked completes every request in flight with its failure answer
// and drops the frames not yet written.
func (l *peerLink) failLocked() {
	for l.fl.n > 0 {
		e := l.fl.pop()
		e.sl.complete(nil, true)
	}
	l.pend = l.pend[:0]
}

// lost ends the link's connection gc (nil: the one being dialled),
// failing what is in flight on it, and dials again; nothing if gc is no
// longer the current one.
func (l *peerLink) lost(gc gnet.Conn) {
	l.mu.Lock()
	if l.gc != gc {
		l.mu.Unlock()
		return
	}
	l.gc = nil
	l.failLocked()
	l.startDialLocked()
	l.mu.Unlock()
	if gc != nil {
		gc.Close()
	}
}

// expire fails the link's connection if its oldest request is overdue.
func (l *peerLink) expire(now int64) {
	l.mu.Lock()
	overdue := l.fl.n > 0 && l.fl.ring[l.fl.head].deadline < now
	gc := l.gc
	l.mu.Unlock()
	if overdue {
		l.s.log.Debug("a peer did not answer in time", "peer", l.addr)
		l.lost(gc)
	}
}

// startDialLocked starts the link's dialer unless one runs or the link
// is retired.
func (l *peerLink) startDialLocked() {
	if l.dialling || isClosed(l.p.quit) {
		return
	}
	t := &l.s.peers
	t.stopMu.Lock()
	stopped := t.stopped
	if !stopped {
		t.wg.Add(1)
	}
	t.stopMu.Unlock()
	if stopped {
		l.down = true
		return
	}
	l.dialling = true
	go l.dial()
}

// dial connects the link, retrying with backoff, until it is connected
// (OnOpen, on the loop, takes it from there), the node leaves the
// cluster, or the server stops.
func (l *peerLink) dial() {
	defer l.s.peers.wg.Done()
	stop, quit := l.s.peers.stop, l.p.quit
	backoff := minRedial
	for {
		if isClosed(stop) || isClosed(quit) {
			l.mu.Lock()
			l.dialling, l.down = false, true
			l.failLocked()
			l.mu.Unlock()
			return
		}
		err := l.connect(stop, quit)
		if err == nil {
			l.mu.Lock()
			opened := !l.dialling
			l.mu.Unlock()
			if opened {
				return
			}
			err = errLinkNotOpened
		}
		l.s.log.Debug("cannot connect to a peer", "peer", l.addr, "err", err)
		l.mu.Lock()
		l.down = true
		l.failLocked()
		l.mu.Unlock()
		if !l.s.isMember(l.addr) {
			l.s.retirePeer(l.p)
			continue
		}
		select {
		case <-stop:
		case <-quit:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxRedial)
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
// dialers end, requests still routed to it fail at once, and it leaves
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

// errLinkNotOpened: gnet registered the connection but did not open it
// (its poller refused the descriptor).
var errLinkNotOpened = errors.New("server: peer link not opened")

// errLinkAbandoned: the server stopped, or the node left, while a
// connection was being registered.
var errLinkAbandoned = errors.New("server: peer link abandoned")

// connect dials the peer and registers the connection on the link's
// loop (gnet picks one for the shared link); it returns once OnOpen has
// run there.
func (l *peerLink) connect(stop, quit chan struct{}) error {
	nc, err := net.DialTimeout("tcp", l.addr, max(l.s.fwdTimeout, 100*time.Millisecond))
	if err != nil {
		return err
	}
	ctx := gnet.NewContext(context.Background(), l)
	el := l.s.loopAt(l.index)
	if l.shared {
		l.mu.Lock()
		el = l.el
		l.mu.Unlock()
	}
	var res <-chan gnet.RegisteredResult
	if el != nil {
		res, err = el.Enroll(ctx, nc)
	} else {
		res, err = l.s.gnetEng.Register(gnet.NewNetConnContext(ctx, nc))
	}
	if err != nil {
		nc.Close()
		return err
	}
	// gnet duplicates the descriptor and closes nc.
	select {
	case r := <-res:
		return r.Err
	case <-stop:
		return errLinkAbandoned
	case <-quit:
		return errLinkAbandoned
	}
}

// opened is OnOpen for the link's connection gc, on its loop: it becomes
// the link's connection, and the hello and the frames queued while it
// was dialled are its first bytes.
func (l *peerLink) opened(gc gnet.Conn) ([]byte, gnet.Action) {
	out := codec.AppendPeerHello(nil, l.s.secret())
	l.mu.Lock()
	// Under mu: takeDown takes it after stopPeers and retirePeer close
	// their channel, so a connection opened past it is closed here.
	if isClosed(l.s.peers.stop) || isClosed(l.p.quit) {
		l.mu.Unlock()
		return nil, gnet.Close
	}
	l.gc, l.down, l.dialling = gc, false, false
	if l.shared && l.trig == nil {
		l.el = gc.EventLoop()
		l.trig = l.s.newTrigger(l.el, l.flush)
	}
	out = append(out, l.pend...)
	l.pend = l.pend[:0]
	l.mu.Unlock()
	return out, gnet.None
}

// errPeerOrder is a reply whose sequence number is not the oldest
// request's: the peer is broken, and the connection is failed.
var errPeerOrder = errors.New("server: a peer's reply out of order")

// traffic is OnTraffic for the link's connection gc, on its loop: it
// completes the slots of every whole reply frame read, in order, then
// writes the replies of the client connections it completed slots of.
func (l *peerLink) traffic(gc gnet.Conn) gnet.Action {
	buf, _ := gc.Peek(-1)
	maxBody := l.s.replyBudget + l.s.inputLimit
	off := 0
	var err error
	for off < len(buf) {
		seq, body, m, perr := codec.ParsePeerReply(buf[off:], maxBody)
		if errors.Is(perr, codec.ErrIncomplete) {
			break
		}
		if perr != nil {
			err = perr
			break
		}
		off += m
		l.mu.Lock()
		if l.gc != gc || l.fl.n == 0 || l.fl.ring[l.fl.head].seq != seq {
			l.mu.Unlock()
			err = errPeerOrder
			break
		}
		e := l.fl.pop()
		l.mu.Unlock()
		l.completeHere(e.sl, body)
	}
	if off > 0 {
		gc.Discard(off)
	}
	l.writeReady()
	if err != nil {
		l.s.log.Debug("peer connection failed", "peer", l.addr, "err", err)
		return gnet.Close
	}
	return gnet.None
}

// completeHere completes sl with its reply on the link's loop: a client
// connection of the same loop is written once the read is done
// (writeReady); any other is woken.
func (l *peerLink) completeHere(sl *slot, body []byte) {
	owner := sl.owner
	if l.shared || owner.ls == nil || owner.ls.index != l.index {
		sl.complete(body, false)
		return
	}
	sl.reply = append(sl.reply[:0], body...)
	sl.state.Store(slotDone)
	sl.release()
	if !owner.ready {
		owner.ready = true
		l.ready = append(l.ready, owner)
	}
}

// writeReady runs, for each client connection whose slots this read
// completed, what a gnet wake-up of it would: its settled replies are
// written, and requests it held behind them run. A connection whose last
// forwarded request is still unanswered waits for it (it comes, or
// fails, within the forward timeout, and this runs again): a pipeline's
// replies from several owners then leave in one write, not one per
// owner.
func (l *peerLink) writeReady() {
	for i, cs := range l.ready {
		l.ready[i] = nil
		cs.ready = false
		if cs.closed.Load() || cs.queue.n > 0 && cs.queue.tail().state.Load() != slotDone {
			continue
		}
		if l.s.OnTraffic(cs.gc) == gnet.Close {
			cs.gc.Close()
		}
	}
	l.ready = l.ready[:0]
}

// closed is OnClose for the link's connection gc.
func (l *peerLink) closed(gc gnet.Conn) {
	l.s.log.Debug("peer connection ended", "peer", l.addr)
	l.lost(gc)
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
