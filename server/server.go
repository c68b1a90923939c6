// Package server runs memhive's memcache listener on gnet: it detects each
// connection's protocol from its first byte, parses requests with codec,
// executes them on the engine and writes every reply produced by one
// event-loop wake-up with a single write.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
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
	Logger      *slog.Logger
}

// Server serves the memcache protocols for the caches of a Tenants. Start
// it with Run; stop it with Stop. Safe for concurrent use.
type Server struct {
	gnet.BuiltinEventEngine
	cfg     Config
	tenants *Tenants
	clock   *engine.Clock
	parser  codec.Parser
	log     *slog.Logger

	started time.Time
	gnetEng gnet.Engine
	ready   chan struct{} // closed once listening
	done    chan struct{} // closed when Run returns

	stats     connStats // the process's connections; unauthenticated ones' traffic
	verbosity atomic.Int32
	conns     sync.Map // fd -> *conn, for "stats conns"
}

// New makes a server for the caches of t. It closes the connections a
// change to t cuts off.
func New(cfg Config, t *Tenants) *Server {
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
	s := &Server{
		cfg:     cfg,
		tenants: t,
		clock:   t.mem.Clock(),
		parser:  codec.Parser{MaxItemSize: t.mem.MaxItemSize()},
		log:     cfg.Logger,
		started: time.Now(),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.verbosity.Store(int32(cfg.Verbosity))
	t.revoke = s.closeRevoked
	return s
}

// Run listens and serves until Stop is called or the listener fails.
func (s *Server) Run() error {
	defer close(s.done)
	if _, _, err := net.SplitHostPort(s.cfg.Listen); err != nil {
		return fmt.Errorf("server: listen address %q: %w", s.cfg.Listen, err)
	}
	return gnet.Run(s, "tcp://"+s.cfg.Listen,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Threads),
		gnet.WithReusePort(false),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTCPKeepAlive(0),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(!s.tenants.Local()),
	)
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Stop closes the listener and every connection. It returns at once if
// Run has already ended.
func (s *Server) Stop(ctx context.Context) error {
	select {
	case <-s.ready:
		return s.gnetEng.Stop(ctx)
	case <-s.done:
		return nil
	}
}

// OnBoot records the running gnet engine.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.gnetEng = eng
	close(s.ready)
	return gnet.None
}

// OnOpen sets up per-connection state, refusing connections past MaxConns
// with memcached's error line.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	n := s.stats.currConns.Add(1)
	s.stats.totalConns.Add(1)
	if int(n) > s.cfg.MaxConns {
		s.stats.rejectedConns.Add(1)
		c.SetContext(nil)
		return []byte("ERROR Too many open connections\r\n"), gnet.Close
	}
	cs := newConn()
	cs.stats = s.stats.shard(c.Fd())
	cs.fd = c.Fd()
	cs.gc = c
	cs.opened = time.Now()
	if a := c.RemoteAddr(); a != nil {
		cs.remote = a.String()
	}
	cs.lastCmd.Store(s.clock.Now())
	if s.tenants.Local() {
		s.bind(cs, s.tenants.local, nil)
	}
	s.conns.Store(cs.fd, cs)
	c.SetContext(cs)
	return nil, gnet.None
}

// OnClose releases per-connection state.
func (s *Server) OnClose(c gnet.Conn, _ error) gnet.Action {
	s.stats.currConns.Add(-1)
	if cs, ok := c.Context().(*conn); ok {
		cs.closed.Store(true)
		s.unbind(cs)
		s.conns.Delete(cs.fd)
	}
	return gnet.None
}

// authTick is how often connections are checked for --auth-timeout.
const authTick = 100 * time.Millisecond

// OnTick closes connections that have not authenticated within
// AuthTimeout (SASL mode only; gnet calls it only when the ticker is on).
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	deadline := time.Now().Add(-s.cfg.AuthTimeout)
	s.conns.Range(func(_, v any) bool {
		cs := v.(*conn)
		if cs.sharedTenant.Load() == nil && cs.opened.Before(deadline) && !cs.closing.Load() {
			cs.gc.Close()
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
		return gnet.Close
	}
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
	if s.revoked(cs.tenant, cs.user) {
		return gnet.Close
	}
	cs.lastCmd.Store(s.clock.Now())
	if cs.tenant != nil {
		cs.tenant.touch(s.clock.Unix())
	}
	if len(cs.in) > 0 {
		// A request is split across reads: gather it in the connection's
		// own buffer, so each read costs its own length, not the length of
		// everything buffered so far (gnet would copy that on every Peek).
		cs.in = append(cs.in, buf...)
		buf = cs.in
	}
	cs.flushed = 0
	consumed, closeConn := s.process(cs, buf)
	cs.stats.bytesRead.Add(uint64(n))
	if len(cs.out) > 0 {
		cs.stats.bytesWritten.Add(uint64(len(cs.out)))
		c.Write(cs.out)
		cs.resetOut()
	}
	cs.keepRest(buf[consumed:])
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
	}
	return gnet.None
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
		if quit {
			return consumed, true
		}
	}
}

// isSASL tells the binary commands an unauthenticated connection may send.
func isSASL(cmd codec.Command) bool {
	return cmd == codec.CmdSASLList || cmd == codec.CmdSASLAuth || cmd == codec.CmdSASLStep
}

// unauthenticated answers a request on a connection that has not logged
// in: text connections log in with their first command or are closed;
// binary ones get an auth error for anything but SASL.
func (s *Server) unauthenticated(cs *conn, r *codec.Request) (closeConn bool) {
	if cs.proto == protoBinary {
		if r.Cmd == codec.CmdError {
			// A request the parser refused: answer as memcached would
			// (too large, bad packet), which reveals nothing of any cache.
			if r.Status != 0 {
				cs.out = codec.AppendBinaryStatus(cs.out, r.Opcode, r.Status, r.Opaque)
			}
			cs.swallow = r.Swallow
			return r.Close
		}
		cs.out = codec.AppendBinaryStatus(cs.out, r.Opcode, codec.StatusAuthError, r.Opaque)
		return false
	}
	return s.authenticateASCII(cs, r)
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
