package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/tenancy"
)

// Version is reported by the version command and stats.
const Version = "1.6.18-memhive"

// Config configures a Server.
type Config struct {
	Listen    string // host:port
	Threads   int    // event loops; 0 means one per core
	MaxConns  int    // memcached -c; 0 means 1024
	Verbosity int    // memcached -v
	// AuthTimeout closes connections that have not authenticated this
	// long after they opened (SASL mode); 0 means 5 s.
	AuthTimeout time.Duration
	// IdleTimeout closes connections that send no request for this long
	// (memcached's -o idle_timeout); 0 means never.
	IdleTimeout time.Duration
	// AuthFailLimit is how many failed logins a source address may make
	// in AuthFailWindow before its logins are refused for the rest of
	// the window; 0 means no limit. AuthFailWindow 0 means a minute.
	AuthFailLimit  int
	AuthFailWindow time.Duration
	// TLSListen, if set, is a host:port where TLS connections are served
	// with TLS (which must then be set).
	TLSListen string
	TLS       *tls.Config
	// Route, if set, has requests for keys that another node of the
	// cluster owns forwarded to it (--route server); nil serves every
	// request here (--route client, and a single node).
	Route  *RouteConfig
	Logger *slog.Logger
}

// RouteConfig is server-side routing between the nodes of a cluster.
type RouteConfig struct {
	// Owners says which node owns each key; the caller keeps it in step
	// with the cluster's members.
	Owners *tenancy.Owners
	// Secret is the cluster secret: a peer presents it when it opens a
	// connection for forwarded requests, and this node presents it to
	// its peers. It is read at each such connection (so it may change
	// while the server runs) and compared in constant time; nil means
	// the empty secret, which only peers presenting the empty secret
	// match.
	Secret func() string
	// Timeout bounds how long a forwarded request waits for its owner
	// (--forward-timeout); 0 means DefaultForwardTimeout.
	Timeout time.Duration
}

// DefaultForwardTimeout is --forward-timeout's default.
const DefaultForwardTimeout = 100 * time.Millisecond

// Server serves the memcache protocols for the caches of a
// tenancy.Tenants. Start it with Run; stop it with Stop. Safe for
// concurrent use.
type Server struct {
	gnet.BuiltinEventEngine
	cfg     Config
	tenants *tenancy.Tenants
	clock   *engine.Clock
	parser  codec.Parser
	log     *slog.Logger

	started time.Time
	gnetEng gnet.Engine
	ready   chan struct{} // closed once listening
	done    chan struct{} // closed when Run returns

	stats     tenancy.ConnCounters // the process's connections; unauthenticated ones' traffic
	verbosity atomic.Int32
	conns     sync.Map // fd (or negative TLS id) -> *conn, for "stats conns" and closing
	throttle  *authThrottle
	// inputLimit bounds a connection's buffered, unprocessed input: a
	// whole largest item and its command line, or a multi-get line that
	// long.
	inputLimit int
	// heldLimit bounds the whole requests a connection may send while its
	// requests are held (its replies are not being read fast enough): a
	// pipelining client goes on writing while it reads, and gnet reads
	// whatever arrives.
	heldLimit int
	// replyBudget bounds the values one multi-get copies into its reply.
	replyBudget int

	tls      tlsListener
	stopping atomic.Bool // Stop has begun: connections close once answered

	// route is Config.Route when it routes (it has Owners), else nil;
	// fwdTimeout its timeout; peers the connections to the other nodes.
	route      *RouteConfig
	fwdTimeout time.Duration
	peers      peerTable
	triggers   triggers
}

// New makes a server for the caches of t. It closes the connections a
// change to t cuts off.
func New(cfg Config, t *tenancy.Tenants) *Server {
	t.SetRouting(cfg.Route != nil && cfg.Route.Owners != nil)
	if cfg.Threads <= 0 {
		cfg.Threads = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 5 * time.Second
	}
	if cfg.AuthFailWindow <= 0 {
		cfg.AuthFailWindow = time.Minute
	}
	s := &Server{
		cfg:     cfg,
		tenants: t,
		clock:   t.Memory().Clock(),
		parser:  codec.Parser{MaxItemSize: t.Memory().MaxItemSize()},
		log:     cfg.Logger,
		started: time.Now(),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),

		throttle:    newAuthThrottle(cfg.AuthFailLimit, cfg.AuthFailWindow),
		inputLimit:  t.Memory().MaxItemSize() + inputSlack,
		heldLimit:   max(minHeldInput, t.Memory().MaxItemSize()+inputSlack),
		replyBudget: max(minReplyBudget, 2*t.Memory().MaxItemSize()),
	}
	s.verbosity.Store(int32(cfg.Verbosity))
	if cfg.Route != nil && cfg.Route.Owners != nil {
		s.route = cfg.Route
		s.fwdTimeout = cfg.Route.Timeout
		if s.fwdTimeout <= 0 {
			s.fwdTimeout = DefaultForwardTimeout
		}
	}
	t.OnRevoke(s.closeRevoked)
	return s
}

// inputSlack is what a connection may buffer beyond the largest item: its
// command line and the next request's start.
const inputSlack = 64 << 10

// minHeldInput is the least a held connection may send before it is cut
// off.
const minHeldInput = 32 << 20

// minReplyBudget is the least a multi-get's reply may carry in values.
const minReplyBudget = 64 << 20

// Run listens and serves until Stop is called or a listener fails.
func (s *Server) Run() error {
	defer close(s.done)
	defer s.closeTriggers() // after the loops and the TLS connections end
	defer s.stopPeers()
	if _, _, err := net.SplitHostPort(s.cfg.Listen); err != nil {
		return fmt.Errorf("server: listen address %q: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLSListen != "" {
		if err := s.listenTLS(); err != nil {
			return err
		}
		defer s.stopTLS()
	}
	return gnet.Run(s, "tcp://"+s.cfg.Listen,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Threads),
		gnet.WithReusePort(false),
		// Not round-robin: its counter is not safe for Engine.Register,
		// which registers the shared peer links (peer.go) while clients
		// are accepted.
		gnet.WithLoadBalancing(gnet.LeastConnections),
		// As memcached and Go's own listeners do: a server restarted after
		// a crash binds its port at once, whatever connections of the old
		// one linger in TIME_WAIT.
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTCPKeepAlive(0),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(!s.tenants.Local() || s.cfg.IdleTimeout > 0),
	)
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Stop shuts the server down gracefully: new connections are refused,
// every open one runs the requests it has received, writes the replies
// and closes, and once they all have (or ctx ends) the event loops stop.
// TLS connections are closed at once. Stop returns at once if Run has
// already ended.
func (s *Server) Stop(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-s.done:
		return nil
	}
	s.stopping.Store(true)
	s.stopTLS()
	s.conns.Range(func(_, v any) bool {
		if g, ok := v.(*conn).closer.(gnet.Conn); ok {
			g.Wake(nil)
		}
		return true
	})
	for s.stats.CurrConns.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// Every client connection has had its forwarded replies: the
	// connections to the peers may go.
	s.stopPeers()
	return s.gnetEng.Stop(ctx)
}

// OnBoot records the running gnet engine.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.gnetEng = eng
	if s.tls.ln != nil {
		go s.acceptTLS()
	}
	close(s.ready)
	return gnet.None
}

// OnOpen sets up per-connection state, refusing connections past MaxConns
// with memcached's error line.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch x := c.Context().(type) {
	case *peerLink:
		return x.opened(c)
	case *trigger:
		return nil, gnet.None
	}
	cs := s.open(c.Fd(), c.RemoteAddr(), c)
	if cs == nil {
		c.SetContext(nil)
		return []byte(s.refusal()), gnet.Close
	}
	cs.gc = c
	if s.route != nil {
		cs.ls = s.loopOf(c.EventLoop())
	}
	c.SetContext(cs)
	return nil, gnet.None
}

// refusal is the line for a connection open refused.
func (s *Server) refusal() string {
	if s.stopping.Load() {
		return codec.ReplyShuttingDown
	}
	return codec.ReplyTooManyConns
}

// open counts a new connection and makes its state, or returns nil when
// it is one too many (counted in rejected_connections); either way the
// caller calls closeConn when it ends.
func (s *Server) open(fd int, remote net.Addr, closer io.Closer) *conn {
	n := s.stats.CurrConns.Add(1)
	s.stats.TotalConns.Add(1)
	if int(n) > s.cfg.MaxConns || s.stopping.Load() {
		s.stats.RejectedConns.Add(1)
		return nil
	}
	cs := newConn()
	cs.stats = s.stats.Shard(fd)
	cs.fd = fd
	cs.closer = closer
	cs.unbound.Store(time.Now().UnixNano())
	if remote != nil {
		cs.remote = remote.String()
		if ap, err := netip.ParseAddrPort(cs.remote); err == nil {
			cs.peer = ap.Addr().Unmap()
		}
	}
	cs.lastCmd.Store(s.clock.Now())
	if s.tenants.Local() {
		s.bind(cs, s.tenants.LocalCache(), nil)
	}
	s.conns.Store(cs.fd, cs)
	return cs
}

// closeConn releases a connection's state (cs nil: one refused by open).
func (s *Server) closeConn(cs *conn) {
	s.stats.CurrConns.Add(-1)
	if cs != nil {
		cs.closed.Store(true)
		cs.dropQueue()
		s.unbind(cs)
		s.conns.Delete(cs.fd)
	}
}

// OnClose releases per-connection state.
func (s *Server) OnClose(c gnet.Conn, _ error) gnet.Action {
	switch x := c.Context().(type) {
	case *peerLink:
		x.closed(c)
		return gnet.None
	case *trigger:
		x.closed()
		return gnet.None
	}
	cs, _ := c.Context().(*conn)
	s.closeConn(cs)
	return gnet.None
}

// authTick is how often connections are checked for --auth-timeout and
// the idle timeout.
const authTick = 100 * time.Millisecond

// OnTick closes connections that have not authenticated within
// AuthTimeout (SASL mode) and those idle for IdleTimeout (if set). gnet
// calls it only when the ticker is on.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	authDeadline := now.Add(-s.cfg.AuthTimeout)
	checkAuth := !s.tenants.Local()
	idleSecs := uint32(s.cfg.IdleTimeout / time.Second)
	clockNow := s.clock.Now()
	s.conns.Range(func(_, v any) bool {
		cs := v.(*conn)
		if cs.closing.Load() || cs.peerLink.Load() {
			return true
		}
		unauthenticated := checkAuth && cs.sharedTenant.Load() == nil && cs.unbound.Load() < authDeadline.UnixNano()
		// Strictly more than the timeout, as memcached: the clock ticks
		// in whole seconds.
		idle := s.cfg.IdleTimeout > 0 && clockNow-cs.lastCmd.Load() > max(idleSecs, 1)
		if unauthenticated || idle {
			cs.closer.Close()
		}
		return true
	})
	return min(authTick, s.cfg.AuthTimeout/4), gnet.None
}

// OnTraffic parses and executes every complete request buffered on c,
// then writes all replies at once and discards what was consumed.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	cs, ok := c.Context().(*conn)
	if !ok {
		switch x := c.Context().(type) {
		case *peerLink:
			return x.traffic(c)
		case *trigger:
			return x.traffic(c)
		}
		return gnet.Close
	}
	// Wakes asked for from now on are needed: this call may run before
	// the reply that asked for one is settled.
	cs.wakeQueued.Store(false)
	buf, _ := c.Peek(-1)
	n := len(buf)
	if cs.closing.Load() {
		// Closing after a reply that is still being sent: read nothing
		// more, and close once gnet has written everything.
		if n > 0 {
			c.Discard(n)
		}
		if c.OutboundBuffered() == 0 {
			return gnet.Close
		}
		return gnet.None
	}
	var closeConn bool
	switch {
	case cs.closeAfter:
		// Closing once the forwarded replies it waits for are written:
		// run nothing more.
		cs.stats.BytesRead.Add(uint64(n))
		closeConn = true
	case c.OutboundBuffered() >= outputHold:
		// The client is not reading its replies: run nothing more for it
		// until it does, keeping what it sends within heldLimit.
		closeConn = s.hold(cs, buf)
	default:
		closeConn = s.step(cs, buf)
	}
	if s.stopping.Load() {
		closeConn = true
	}
	cs.settle()
	if closeConn && cs.queue.n > 0 {
		// Replies are still to come from other nodes: close after them.
		cs.closeAfter, closeConn = true, false
	}
	if len(cs.out) > 0 {
		c.Write(cs.out)
		cs.resetOut()
	}
	if n > 0 {
		// Never Discard(0): gnet treats n <= 0 as "discard everything".
		c.Discard(n)
	}
	if closeConn {
		if c.OutboundBuffered() == 0 {
			return gnet.Close
		}
		// gnet drops what it cannot write at once when it closes, so a
		// reply larger than the socket takes is sent first (memcached's
		// close-after-write).
		cs.closing.Store(true)
		go closeWhenDrained(c, cs)
		return gnet.None
	}
	if cs.held.Load() && cs.waking.CompareAndSwap(false, true) {
		go wakeWhileHeld(c, cs)
	}
	return gnet.None
}

// outputHold is the output a connection may have queued, unsent, before
// the server stops running its requests until the client reads.
const outputHold = 4 << 20

// step runs every complete request in data (what arrived since the last
// call, possibly nothing) after the input cs kept from before, leaving
// the replies in cs.out for the caller to write. It reports whether the
// connection must close once they are written.
func (s *Server) step(cs *conn, data []byte) (closeConn bool) {
	if s.tenants.Revoked(cs.tenant, cs.user, cs.loginCert.Load()) {
		return true
	}
	buf := data
	if len(cs.in) > 0 {
		// A request is split across reads: gather it in the connection's
		// own buffer, so each read costs its own length, not the length of
		// everything buffered so far (gnet would copy that on every Peek).
		cs.in = append(cs.in, data...)
		buf = cs.in
	}
	if cs.held.Load() {
		cs.held.Store(false)
	}
	if len(buf) == 0 {
		cs.stats.BytesRead.Add(uint64(len(data)))
		return false
	}
	cs.lastCmd.Store(s.clock.Now())
	if cs.tenant != nil {
		cs.tenant.Touch(s.clock.Unix())
	}
	cs.flushed = 0
	consumed, closeConn := s.process(cs, buf)
	// Counted after process, so that a login's own bytes count for the
	// cache it logs in to.
	cs.stats.BytesRead.Add(uint64(len(data)))
	cs.stats.BytesWritten.Add(uint64(len(cs.out)))
	cs.keepRest(buf[consumed:])
	limit := s.inputLimit
	if cs.held.Load() {
		limit = s.heldLimit
	}
	if !closeConn && len(cs.in) > limit {
		cs.out = append(cs.out, codec.ReplyInputTooLarge...)
		return true
	}
	return closeConn
}

// hold keeps data unprocessed for a client that is not reading its
// replies; it reports whether the connection must close because the
// held input outgrew heldLimit.
func (s *Server) hold(cs *conn, data []byte) (closeConn bool) {
	cs.stats.BytesRead.Add(uint64(len(data)))
	cs.in = append(cs.in, data...)
	cs.held.Store(true)
	if len(cs.in) > s.heldLimit {
		cs.out = append(cs.out, codec.ReplyInputTooLarge...)
		return true
	}
	return false
}

// holdWake is how often a held connection's event loop is woken to see
// whether the client has read enough to go on.
const holdWake = 2 * time.Millisecond

// wakeWhileHeld wakes a held connection's event loop until its held
// requests have run (OnTraffic clears cs.held) or it closes. gnet calls
// OnTraffic only when bytes arrive or on Wake, and a held connection may
// receive nothing more.
func wakeWhileHeld(c gnet.Conn, cs *conn) {
	for {
		for cs.held.Load() && !cs.closed.Load() {
			time.Sleep(holdWake)
			if c.Wake(nil) != nil {
				break
			}
		}
		cs.waking.Store(false)
		// The loop may have held the connection again after the check
		// above and seen this goroutine still running: carry on for it.
		if !cs.held.Load() || cs.closed.Load() || !cs.waking.CompareAndSwap(false, true) {
			return
		}
	}
}

// drainLimit bounds how long a closing connection may take to receive its
// last replies.
const drainLimit = 30 * time.Second

// closeWhenDrained wakes a closing connection's event loop until OnTraffic
// sees its output written and closes it, or closes it after drainLimit.
func closeWhenDrained(c gnet.Conn, cs *conn) {
	deadline := time.Now().Add(drainLimit)
	for !cs.closed.Load() {
		if time.Now().After(deadline) {
			c.Close()
			return
		}
		time.Sleep(2 * time.Millisecond)
		if c.Wake(nil) != nil {
			return
		}
	}
}

// process runs the requests in buf, appending replies to cs.out. It
// returns how many bytes were consumed and whether to close.
func (s *Server) process(cs *conn, buf []byte) (consumed int, closeConn bool) {
	consumed, closeConn = s.runRequests(cs, buf)
	if cs.ls != nil {
		cs.ls.schedule()
	} else if len(cs.touched) > 0 {
		s.flushPeers(cs)
	}
	return consumed, closeConn
}

// runRequests is process without the writes to peers.
func (s *Server) runRequests(cs *conn, buf []byte) (consumed int, closeConn bool) {
	if cs.proto == protoPeer || cs.proto == protoUnknown && s.route != nil && len(buf) > 0 && codec.IsPeerHello(buf[0]) {
		cs.proto = protoPeer
		return s.processPeer(cs, buf)
	}
	for {
		if cs.swallow > 0 {
			n := min(cs.swallow, len(buf)-consumed)
			cs.swallow -= n
			consumed += n
			if cs.swallow > 0 {
				return consumed, false
			}
		}
		if consumed == len(buf) {
			return consumed, false
		}
		if len(cs.out) >= outputHold || cs.queue.n >= maxPending {
			// Enough replies for one write, or awaited from other nodes:
			// run the rest once they are sent (OnTraffic keeps the
			// connection woken meanwhile).
			cs.held.Store(true)
			return consumed, false
		}
		if cs.proto == protoUnknown {
			if codec.IsBinary(buf[consumed]) {
				cs.proto = protoBinary
			} else {
				cs.proto = protoASCII
			}
		}
		var n int
		var err error
		if cs.proto == protoBinary {
			n, err = s.parser.ParseBinary(buf[consumed:], &cs.req)
		} else {
			n, err = s.parser.ParseASCII(buf[consumed:], &cs.req)
		}
		if err != nil {
			if errors.Is(err, codec.ErrIncomplete) {
				return consumed, false
			}
			return consumed, true
		}
		cs.raw = buf[consumed : consumed+n]
		consumed += n
		if cs.req.Cmd == codec.CmdError && cs.req.Abort {
			// memcached hangs up, dropping the replies it has not written
			// since it last flushed.
			cs.out = cs.out[:cs.flushed]
			return consumed, true
		}
		var quit bool
		if cs.tenant == nil && !(cs.proto == protoBinary && isSASL(cs.req.Cmd)) {
			quit = s.unauthenticated(cs, &cs.req)
		} else if cs.proto == protoBinary {
			quit = s.execBinary(cs, &cs.req)
		} else {
			quit = s.execASCII(cs, &cs.req)
		}
		if cs.req.Flush {
			cs.flushed = len(cs.out)
		}
		cs.raw = nil
		if quit {
			return consumed, true
		}
	}
}

type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {}
func (g gnetLogger) Infof(format string, args ...any)  {}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.l.Warn(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...), "component", "gnet")
}
