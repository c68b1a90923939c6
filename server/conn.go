package server

import (
	"io"
	"net/netip"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/tenancy"
)

const (
	protoUnknown = iota
	protoASCII
	protoBinary
	protoPeer // another node's forwarded requests (peer.go)
)

// outKeep is the largest output buffer a connection keeps between
// wake-ups; a larger one (a big multi-get) goes back to the pool's size.
const outKeep = 64 << 10

// conn is one connection's state. It is used only from the connection's
// event loop, so it needs no lock.
type conn struct {
	proto   int
	req     codec.Request
	out     []byte      // replies of the current wake-up
	in      []byte      // an incomplete request carried over to the next read
	swallow int         // input bytes still to discard (data of a refused storage command)
	flushed int         // length of out that memcached would already have sent
	held    atomic.Bool // requests wait in in until the client reads its replies
	waking  atomic.Bool // a goroutine is waking the event loop to run held requests
	closing atomic.Bool // closing once the queued output is written
	closed  atomic.Bool // OnClose has run
	stats   *tenancy.ConnShard

	fd      int    // the socket, or a negative id for a TLS connection
	remote  string // host:port
	peer    netip.Addr
	lastCmd atomic.Uint32 // server time of the last request, read by "stats conns"
	closer  io.Closer     // closes it from another goroutine
	// unbound is when the connection last became unauthenticated (unix
	// nanoseconds): when it opened, or when a SASL command ended its
	// login. --auth-timeout counts from it; OnTick reads it from the
	// ticker's goroutine.
	unbound atomic.Int64

	// sent: input has arrived (set in keepRest, which ends every read
	// that brought any). "stats conns" shows a connection that has sent
	// nothing as memcached does, in conn_new_cmd.
	sent atomic.Bool

	// tenant and user are the cache and credential the connection uses
	// (user is nil in local mode); nil tenant means not authenticated.
	// They are read and written by the event loop only; sharedTenant and
	// sharedUser mirror them for other goroutines (closeRevoked, stats).
	tenant       *tenancy.Cache
	user         *tenancy.Credential
	sharedTenant atomic.Pointer[tenancy.Cache]
	sharedUser   atomic.Pointer[tenancy.Credential]
	// loginCert is the client certificate the connection logged in with,
	// nil for a login by password: the login ends when the credential no
	// longer matches it (see tenancy's Revoked).
	loginCert atomic.Pointer[tenancy.ClientCert]

	// The SASL exchange's state, as memcached and Cyrus SASL keep it
	// (see binarySASL): saslStarted is memcached's sasl_started (an AUTH
	// succeeded or asked to continue, so STEP may follow), saslDone is
	// Cyrus' doneflag (an exchange succeeded, so the next check fails).
	saslStarted bool
	saslDone    bool

	// Server-side routing, on a client's connection (forward.go): raw is
	// the request being run, as received (valid while it runs); scratch
	// builds the one-key requests a multi-get is split into; queue holds
	// the forwarded requests whose replies are awaited, in order. gc (a
	// gnet connection) or wakeCh (a TLS one's goroutine) is how a peer's
	// reader wakes the connection when a reply comes; wakeQueued merges
	// wakes. closeAfter: the connection closes once the queue is written.
	raw        []byte
	scratch    []byte
	queue      replyQueue
	gc         gnet.Conn
	wakeCh     chan struct{}
	wakeQueued atomic.Bool
	closeAfter bool
	// ls is the connection's event loop, whose links carry its
	// forwarded requests; nil for a TLS connection, which uses the
	// shared links, touched being those a wake-up queued frames on,
	// written at its end by flushPeers. ready marks the connection on a
	// link's list of those to write after a read of replies.
	ls      *loopState
	touched []*peerLink
	ready   bool

	// On the owner, a peer's connection (peer.go): exec runs its frames'
	// requests (nil until its hello is accepted), frame is the frame
	// being run, and peerLink exempts it from the login and idle
	// timeouts. relay marks exec itself: its requests came from a peer,
	// and are never forwarded again.
	exec     *conn
	frame    codec.PeerRequest
	peerLink atomic.Bool
	relay    bool
}

// newConn makes a connection's state. It is not pooled: gnet may close a
// connection (and run OnClose) from inside Write while OnTraffic is still
// using its state, so the state must never be handed to another connection.
func newConn() *conn { return &conn{out: make([]byte, 0, 4096)} }

// resetOut empties the output buffer after a write, dropping one that a
// large reply grew past outKeep.
func (c *conn) resetOut() {
	c.queue.mark = 0
	if cap(c.out) > outKeep {
		c.out = make([]byte, 0, 4096)
		return
	}
	c.out = c.out[:0]
}

// keepRest keeps the unconsumed tail of the input (rest may alias c.in)
// for the next read.
func (c *conn) keepRest(rest []byte) {
	if !c.sent.Load() {
		c.sent.Store(true)
	}
	if len(rest) == 0 {
		if cap(c.in) > outKeep {
			c.in = nil
		} else {
			c.in = c.in[:0]
		}
		return
	}
	c.in = append(c.in[:0], rest...)
}
