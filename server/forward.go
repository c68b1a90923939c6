package server

import (
	"bytes"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/tenancy"
)

// Server-side routing, the origin's half (issue 15): a request whose key
// another node owns is sent there as one peer frame (codec/peer.go), and
// its reply takes its place among the connection's replies when it comes
// back. The owner's half, and the links to each peer, are in peer.go.
//
// Each client connection keeps its replies in request order with a queue
// of slots, one per forwarded request still to be written. Local replies
// are appended to conn.out as always; once a slot is queued, those that
// follow it belong after it, and move to its after buffer (push, settle).
// settle, run by the connection's event loop after every wake-up, writes
// out every slot at the head of the queue whose reply has come, with the
// replies that followed it. The link's loop, which is the connection's,
// fills a slot when its reply comes and then writes the connection's
// ready replies (peerLink.traffic); a slot failed by another goroutine
// (the watchdog), or one of a TLS connection, wakes the connection
// instead (conn.notify). Slots and their buffers are pooled: matching a
// reply to its request allocates nothing.

// slot states.
const (
	slotPending uint32 = iota
	slotDone
)

// slot is one forwarded request's place among its connection's replies.
// Two parties hold it, each dropping its hold with release: the client
// connection's queue (its event loop) and the peer connection that
// carries the request (until the reply, or a failure, completes it). The
// event loop writes fail, flags and after; the completer writes reply,
// then publishes it through state.
type slot struct {
	state atomic.Uint32
	refs  atomic.Int32
	owner *conn              // the client connection, notified on completion
	stats *tenancy.ConnShard // where a forward error counts
	reply []byte             // the owner's reply, or fail when it failed
	fail  []byte             // the answer if the owner does not give one: a miss or a server error
	after []byte             // local replies that follow this one
	// stripEnd drops the reply's END line: one key of a text multi-get.
	// discard drops the reply: a flush_all's copy for another node.
	stripEnd, discard bool
}

// slotKeep is the largest buffer a pooled slot keeps.
const slotKeep = 16 << 10

var slotPool = sync.Pool{New: func() any { return new(slot) }}

// newSlot takes a slot from the pool for a request of cs, held by cs's
// queue and the peer connection that will carry it.
func newSlot(cs *conn) *slot {
	sl := slotPool.Get().(*slot)
	sl.state.Store(slotPending)
	sl.refs.Store(2)
	sl.owner = cs
	sl.stats = cs.stats
	return sl
}

// release drops one hold; the last returns the slot to the pool.
func (sl *slot) release() {
	if sl.refs.Add(-1) != 0 {
		return
	}
	sl.owner, sl.stats = nil, nil
	sl.stripEnd, sl.discard = false, false
	sl.reply = trimBuf(sl.reply)
	sl.fail = trimBuf(sl.fail)
	sl.after = trimBuf(sl.after)
	slotPool.Put(sl)
}

func trimBuf(b []byte) []byte {
	if cap(b) > slotKeep {
		return nil
	}
	return b[:0]
}

// complete gives the slot its reply (body, which it copies), or its fail
// answer when failed, wakes its connection and drops the completer's
// hold. Whoever took the slot off a peer connection's in-flight list
// calls it, once.
func (sl *slot) complete(body []byte, failed bool) {
	if failed {
		sl.reply = append(sl.reply[:0], sl.fail...)
		sl.stats.ForwardErrors.Add(1)
	} else {
		sl.reply = append(sl.reply[:0], body...)
	}
	owner := sl.owner
	sl.state.Store(slotDone)
	owner.notify()
	sl.release()
}

// replyQueue is a connection's slots in request order: a ring that grows
// to the most forwarded requests ever pending at once, then allocates no
// more.
type replyQueue struct {
	ring    []*slot
	head, n int
	// mark is the length of conn.out that precedes the queue: output
	// beyond it belongs after the last slot.
	mark int
}

func (q *replyQueue) pushBack(sl *slot) {
	if q.n == len(q.ring) {
		ring := make([]*slot, max(8, 2*len(q.ring)))
		for i := 0; i < q.n; i++ {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)%len(q.ring)] = sl
	q.n++
}

func (q *replyQueue) front() *slot { return q.ring[q.head] }

func (q *replyQueue) tail() *slot { return q.ring[(q.head+q.n-1)%len(q.ring)] }

func (q *replyQueue) popFront() {
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
}

// maxPending bounds a connection's forwarded requests awaiting replies:
// past it, its requests wait (as for a client that does not read) until
// replies come back.
const maxPending = 4096

// push queues sl after the connection's replies so far.
func (cs *conn) push(sl *slot) {
	q := &cs.queue
	if q.n == 0 {
		q.mark = len(cs.out)
	} else {
		cs.moveAfter()
	}
	q.pushBack(sl)
}

// moveAfter moves the output past the queue's mark after its last slot.
func (cs *conn) moveAfter() {
	q := &cs.queue
	if len(cs.out) > q.mark {
		tail := q.tail()
		tail.after = append(tail.after, cs.out[q.mark:]...)
		cs.out = cs.out[:q.mark]
	}
	cs.flushed = min(cs.flushed, q.mark)
}

// settle moves into cs.out, to be written now, every slot at the head of
// the queue whose reply has come, each followed by the local replies
// that came after it. The connection's event loop (or TLS goroutine) runs
// it before writing.
func (cs *conn) settle() {
	q := &cs.queue
	if q.n == 0 {
		return
	}
	cs.moveAfter()
	var written int
	for q.n > 0 {
		sl := q.front()
		if sl.state.Load() != slotDone {
			break
		}
		reply := sl.reply
		if sl.stripEnd {
			reply = bytes.TrimSuffix(reply, []byte(codec.ReplyEnd))
		}
		if !sl.discard {
			cs.out = append(cs.out, reply...)
			written += len(reply)
		}
		cs.out = append(cs.out, sl.after...)
		q.popFront()
		sl.release()
	}
	q.mark = len(cs.out)
	cs.flushed = len(cs.out)
	cs.stats.BytesWritten.Add(uint64(written))
}

// dropQueue releases the connection's slots when it closes; replies that
// come for them later are dropped.
func (cs *conn) dropQueue() {
	q := &cs.queue
	for q.n > 0 {
		sl := q.front()
		q.popFront()
		sl.release()
	}
}

// notify wakes the connection's event loop (or TLS goroutine) to write a
// reply that has come back; wakes asked for while one is queued are one.
// Safe for concurrent use.
func (cs *conn) notify() {
	if cs.closed.Load() {
		return
	}
	if cs.wakeCh != nil {
		select {
		case cs.wakeCh <- struct{}{}:
		default:
		}
		return
	}
	if cs.gc != nil && cs.wakeQueued.CompareAndSwap(false, true) {
		if cs.gc.Wake(nil) != nil {
			cs.wakeQueued.Store(false)
		}
	}
}

// routing reports whether requests of cs may be forwarded: the server
// routes, and cs is a client's connection (a peer's requests never are).
func (s *Server) routing(cs *conn) bool { return s.route != nil && !cs.relay && cs.tenant != nil }

// forwardKey forwards the request being run (cs.raw) when another node
// owns key, answering fail (appended by failFn) if the owner does not.
// It reports whether it did.
func (s *Server) forwardKey(cs *conn, key []byte, proto uint8, failFn func(dst []byte) []byte) bool {
	node, self := s.route.Owners.Owner(cs.tenant.ID(), key)
	if self {
		return false
	}
	sl := newSlot(cs)
	if failFn != nil {
		sl.fail = failFn(sl.fail[:0])
	}
	s.send(cs, node.Addr, proto, cs.raw, sl)
	return true
}

// send queues sl on cs and the request (body) on a connection to the
// peer at addr.
func (s *Server) send(cs *conn, addr string, proto uint8, body []byte, sl *slot) {
	cs.push(sl)
	cs.stats.Forwarded.Add(1)
	p := s.peer(addr)
	if cs.ls != nil {
		l := s.link(p, cs.ls.index)
		l.enqueue(cs.tenant.ID(), proto, body, sl)
		cs.ls.mark(l)
		return
	}
	l := s.link(p, s.sharedLink())
	l.enqueue(cs.tenant.ID(), proto, body, sl)
	for _, t := range cs.touched {
		if t == l {
			return
		}
	}
	cs.touched = append(cs.touched, l)
}

// flushPeers has the links' loops write the frames a TLS connection's
// requests queued (a gnet connection's are written at the end of its
// loop's pass: loopState).
func (s *Server) flushPeers(cs *conn) {
	for i, l := range cs.touched {
		l.flushFrom()
		cs.touched[i] = nil
	}
	cs.touched = cs.touched[:0]
}

// forwardFlush sends the flush_all being run to every other node, its
// replies dropped: the caller then runs it here, and its reply, queued
// behind theirs, is written once every node has answered.
func (s *Server) forwardFlush(cs *conn, proto uint8) {
	for _, node := range s.route.Owners.Others() {
		sl := newSlot(cs)
		sl.discard = true
		s.send(cs, node.Addr, proto, cs.raw, sl)
	}
}

// forwardASCII forwards a text request (not a meta one: execMeta does)
// whose key another node owns; it reports whether it did.
func (s *Server) forwardASCII(cs *conn, r *codec.Request) bool {
	switch r.Cmd {
	case codec.CmdGet, codec.CmdGets, codec.CmdGat, codec.CmdGats:
		return s.forwardRetrieve(cs, r)
	case codec.CmdSet, codec.CmdAdd, codec.CmdReplace, codec.CmdAppend, codec.CmdPrepend, codec.CmdCas,
		codec.CmdTouch, codec.CmdDelete, codec.CmdIncr, codec.CmdDecr:
		if r.NoReply {
			return s.forwardKey(cs, r.Key, codec.PeerText, nil)
		}
		return s.forwardKey(cs, r.Key, codec.PeerText, appendForwardFailed)
	case codec.CmdFlushAll:
		s.forwardFlush(cs, codec.PeerText)
	case codec.CmdError:
		return s.forwardRefused(cs, r, codec.PeerText, r.ErrReply)
	}
	return false
}

// forwardRefused forwards a storage command the parser refused as too
// large (r.Refused: text, meta or binary) to the owner of its key, so
// that the owner drops the key's old value as memcached does (see
// Server.refused): dropping it here would leave the stale value where
// every later read of the key goes. cs.raw is the command line, or the
// header, extras and key, without the data: the owner refuses it in turn
// and answers memcached's error, which fail (the same error, as this node
// would answer it) replaces if the owner does not answer. The data is
// swallowed here, as it would be without routing.
func (s *Server) forwardRefused(cs *conn, r *codec.Request, proto uint8, fail []byte) bool {
	if r.Refused == codec.CmdNone || !cs.caps().CanWrite() {
		return false // without write capability nothing is dropped
	}
	node, self := s.route.Owners.Owner(cs.tenant.ID(), r.Key)
	if self {
		return false
	}
	sl := newSlot(cs)
	sl.fail = append(sl.fail[:0], fail...)
	cs.swallow = r.Swallow
	s.send(cs, node.Addr, proto, cs.raw, sl)
	return true
}

func appendForwardFailed(dst []byte) []byte { return append(dst, codec.ReplyForwardFailed...) }

func appendEnd(dst []byte) []byte { return append(dst, codec.ReplyEnd...) }

// forwardRetrieve routes a text get, gets, gat or gats. Keys all owned
// here take the local path; keys all owned by one other node go there in
// the one request; otherwise each key another node owns is asked for
// alone ("get k"), each owned one is looked up here, in the client's
// order, the replies without their END, and one END closes the whole.
func (s *Server) forwardRetrieve(cs *conn, r *codec.Request) bool {
	if len(r.Keys) == 0 {
		return false
	}
	if len(r.ErrReply) > 0 {
		return s.forwardLookupsBeforeError(cs, r)
	}
	id := cs.tenant.ID()
	owners := s.route.Owners
	var remote string
	local, split := false, false
	for _, k := range r.Keys {
		node, self := owners.Owner(id, k)
		switch {
		case self:
			local = true
		case remote == "":
			remote = node.Addr
		case remote != node.Addr:
			split = true
		}
	}
	if remote == "" {
		return false
	}
	if !local && !split {
		sl := newSlot(cs)
		sl.fail = append(sl.fail[:0], codec.ReplyEnd...)
		s.send(cs, remote, codec.PeerText, cs.raw, sl)
		return true
	}
	eng := cs.tenant.Engine()
	touch := r.Cmd == codec.CmdGat || r.Cmd == codec.CmdGats
	withCAS := r.Cmd == codec.CmdGets || r.Cmd == codec.CmdGats
	for _, k := range r.Keys {
		node, self := owners.Owner(id, k)
		if self {
			cs.out = retrieveOne(eng, cs.out, k, touch, withCAS, r.Exptime)
			continue
		}
		b := cs.oneKeyRetrieval(r, k, touch)
		sl := newSlot(cs)
		sl.stripEnd = true
		s.send(cs, node.Addr, codec.PeerText, b, sl)
	}
	cs.out = append(cs.out, codec.ReplyEnd...)
	return true
}

// forwardLookupsBeforeError routes a get, gets, gat or gats that carries
// an error (a key too long after the keys in r.Keys): memcached answers
// only the error, but has looked up (and for gat touched) the keys before
// it, which counts them and marks a hit fetched. So each of those another
// node owns is asked there alone ("get k", or "gat <exptime> k"), its
// reply dropped, and each owned here is looked up here; the error goes
// out after the owners' replies. A request whose keys are all owned here
// takes the local path.
func (s *Server) forwardLookupsBeforeError(cs *conn, r *codec.Request) bool {
	id := cs.tenant.ID()
	owners := s.route.Owners
	remote := false
	for _, k := range r.Keys {
		if _, self := owners.Owner(id, k); !self {
			remote = true
			break
		}
	}
	if !remote {
		return false
	}
	eng := cs.tenant.Engine()
	touch := r.Cmd == codec.CmdGat || r.Cmd == codec.CmdGats
	for _, k := range r.Keys {
		node, self := owners.Owner(id, k)
		if self {
			if ref, ok := lookupOne(eng, k, touch, r.Exptime); ok {
				ref.Release()
			}
			continue
		}
		b := cs.oneKeyRetrieval(r, k, touch)
		sl := newSlot(cs)
		sl.discard = true
		s.send(cs, node.Addr, codec.PeerText, b, sl)
	}
	cs.out = append(cs.out, r.ErrReply...)
	return true
}

// oneKeyRetrieval builds, in cs.scratch, the retrieval r for key k alone
// ("get k", or "gat <exptime> k" when touch), which a multi-key request
// is split into for the key's owner.
func (cs *conn) oneKeyRetrieval(r *codec.Request, k []byte, touch bool) []byte {
	b := append(cs.scratch[:0], r.Cmd.String()...)
	if touch {
		b = strconv.AppendInt(append(b, ' '), r.Exptime, 10)
	}
	cs.scratch = append(append(append(b, ' '), k...), "\r\n"...)
	return cs.scratch
}

// forwardMeta forwards a meta command whose key (decoded, for base64
// keys) another node owns; mn stays here. A read the owner does not
// answer is a miss (EN, unless q), a write a server error.
func (s *Server) forwardMeta(cs *conn, r *codec.Request, m *codec.Meta) bool {
	switch r.Cmd {
	case codec.CmdMetaGet:
		node, self := s.route.Owners.Owner(cs.tenant.ID(), r.Key)
		if self {
			return false
		}
		sl := newSlot(cs)
		if !r.NoReply {
			sl.fail = append(appendEcho(append(sl.fail[:0], codec.MetaEN...), r, m), "\r\n"...)
		}
		s.send(cs, node.Addr, codec.PeerText, cs.raw, sl)
		return true
	case codec.CmdMetaDebug:
		return s.forwardKey(cs, r.Key, codec.PeerText, appendMetaMiss)
	case codec.CmdMetaSet, codec.CmdMetaDelete, codec.CmdMetaArith:
		return s.forwardKey(cs, r.Key, codec.PeerText, appendForwardFailed)
	}
	return false
}

func appendMetaMiss(dst []byte) []byte { return append(dst, codec.ReplyMetaMiss...) }

// forwardBinary forwards a binary request whose key another node owns; a
// get the owner does not answer is a miss (nothing when quiet), anything
// else a temporary failure. FLUSH goes to every node.
func (s *Server) forwardBinary(cs *conn, r *codec.Request) bool {
	switch r.Cmd {
	case codec.CmdGet, codec.CmdGets, codec.CmdGat, codec.CmdGats:
		node, self := s.route.Owners.Owner(cs.tenant.ID(), r.Key)
		if self {
			return false
		}
		sl := newSlot(cs)
		switch {
		case r.Quiet:
		case r.WithKey:
			sl.fail = codec.AppendBinaryMiss(sl.fail[:0], r.Opcode, r.Opaque, r.Key)
		default:
			sl.fail = codec.AppendBinaryStatus(sl.fail[:0], r.Opcode, codec.StatusKeyNotFound, r.Opaque)
		}
		s.send(cs, node.Addr, codec.PeerBinary, cs.raw, sl)
		return true
	case codec.CmdSet, codec.CmdAdd, codec.CmdReplace, codec.CmdAppend, codec.CmdPrepend, codec.CmdCas,
		codec.CmdTouch, codec.CmdDelete, codec.CmdIncr, codec.CmdDecr:
		node, self := s.route.Owners.Owner(cs.tenant.ID(), r.Key)
		if self {
			return false
		}
		sl := newSlot(cs)
		sl.fail = codec.AppendBinaryStatus(sl.fail[:0], r.Opcode, codec.StatusTemporaryFailure, r.Opaque)
		s.send(cs, node.Addr, codec.PeerBinary, cs.raw, sl)
		return true
	case codec.CmdFlushAll:
		s.forwardFlush(cs, codec.PeerBinary)
	case codec.CmdError:
		if r.Refused != codec.CmdNone {
			cs.scratch = codec.AppendBinaryStatus(cs.scratch[:0], r.Opcode, r.Status, r.Opaque)
			return s.forwardRefused(cs, r, codec.PeerBinary, cs.scratch)
		}
	}
	return false
}
