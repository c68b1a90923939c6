package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memhive/memhive/tenancy"
)

// The TLS listener. gnet has no TLS, so TLS connections are served by
// crypto/tls with a goroutine each, through the same step as the event
// loops: one codec, one engine, one set of counters and limits. A
// goroutine blocks on its writes, so a client that does not read holds
// only its own goroutine.

// tlsListener is the TLS side of a Server.
type tlsListener struct {
	ln     net.Listener
	nextID atomic.Int64 // TLS connections get negative ids in Server.conns
	wg     sync.WaitGroup
	stop   sync.Once
	closed atomic.Bool
}

// tlsReadSize is the read buffer of a TLS connection: one TLS record.
const tlsReadSize = 16 << 10

// listenTLS opens the TLS listener; acceptTLS serves it once the server
// is ready.
func (s *Server) listenTLS() error {
	if s.cfg.TLS == nil {
		return errors.New("server: a TLS listen address needs a TLS configuration")
	}
	ln, err := net.Listen("tcp", s.cfg.TLSListen)
	if err != nil {
		return fmt.Errorf("server: TLS listen address %s: %w", s.cfg.TLSListen, err)
	}
	s.tls.ln = tls.NewListener(ln, s.cfg.TLS)
	return nil
}

// TLSAddr is the TLS listener's address ("" without one), for a listen
// address with port 0. It is valid once Ready is closed.
func (s *Server) TLSAddr() string {
	if s.tls.ln == nil {
		return ""
	}
	return s.tls.ln.Addr().String()
}

func (s *Server) acceptTLS() {
	for {
		nc, err := s.tls.ln.Accept()
		if err != nil {
			if s.tls.closed.Load() {
				return
			}
			// Out of descriptors, most likely: wait for some to close, as
			// net/http does.
			s.log.Warn("accepting a TLS connection", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.tls.wg.Add(1)
		go s.serveTLS(nc.(*tls.Conn))
	}
}

// stopTLS closes the TLS listener and connections and waits for their
// goroutines (each ends as soon as its connection is closed).
func (s *Server) stopTLS() {
	if s.tls.ln == nil {
		return
	}
	s.tls.stop.Do(func() {
		s.tls.closed.Store(true)
		s.tls.ln.Close()
		s.conns.Range(func(_, v any) bool {
			if cs := v.(*conn); cs.fd < 0 {
				cs.closer.Close()
			}
			return true
		})
		s.tls.wg.Wait()
	})
}

// serveTLS runs one TLS connection: handshake within the auth timeout,
// then read, step and write until either side closes.
func (s *Server) serveTLS(tc *tls.Conn) {
	defer s.tls.wg.Done()
	defer tc.Close()
	cs := s.open(-int(s.tls.nextID.Add(1)), tc.RemoteAddr(), tc)
	defer s.closeConn(cs)
	if s.tls.closed.Load() {
		// Stop ran between Accept and open: its sweep missed this one.
		return
	}
	if cs == nil {
		tc.SetDeadline(time.Now().Add(time.Second))
		tc.Write([]byte(s.refusal()))
		return
	}
	tc.SetDeadline(time.Now().Add(s.cfg.AuthTimeout))
	if err := tc.Handshake(); err != nil {
		s.log.Debug("TLS handshake failed", "remote", cs.remote, "err", err)
		return
	}
	tc.SetDeadline(time.Time{})
	s.certificateLogin(cs, tc.ConnectionState())
	buf := make([]byte, tlsReadSize)
	cs.wakeCh = make(chan struct{}, 1)
	for {
		var closeConn bool
		var readErr error
		if cs.held.Load() {
			closeConn = s.step(cs, nil)
		} else {
			var n int
			n, readErr = tc.Read(buf)
			closeConn = s.step(cs, buf[:n])
		}
		// Replies forwarded to other nodes: this goroutine is the
		// connection's own, so it waits for them (each comes, or fails,
		// within the forward timeout), writing each ready prefix.
		for {
			cs.settle()
			if len(cs.out) > 0 {
				tc.SetWriteDeadline(time.Now().Add(drainLimit))
				if _, err := tc.Write(cs.out); err != nil {
					return
				}
				cs.resetOut()
			}
			if cs.queue.n == 0 {
				break
			}
			<-cs.wakeCh
		}
		if closeConn || readErr != nil {
			return
		}
	}
}

// certificateLogin logs a TLS connection in as the credential its client
// certificate is bound to, if any, once the handshake has completed. A
// certificate bound to nothing leaves the connection to log in as any
// other, by SASL or a text set.
func (s *Server) certificateLogin(cs *conn, state tls.ConnectionState) {
	if s.tenants.Local() || len(state.PeerCertificates) == 0 {
		return
	}
	pc := tenancy.NewClientCert(state.PeerCertificates[0], len(state.VerifiedChains) > 0)
	u := s.tenants.AuthenticateCert(pc)
	if u == nil {
		return
	}
	s.bind(cs, u.Cache(), u)
	cs.loginCert.Store(pc)
	s.log.Debug("logged in by TLS client certificate", "remote", cs.remote, "username", u.Username())
}

// Certificates is a server certificate that can be reloaded while the
// server runs (on SIGHUP): handshakes after a reload use the new one.
type Certificates struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificates reads a PEM certificate chain and its key.
func LoadCertificates(certFile, keyFile string) (*Certificates, error) {
	c := &Certificates{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; on error the current certificate stays.
func (c *Certificates) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// TLSConfig is a server configuration with TLS 1.2 or later that serves
// the current certificate. It asks clients for a certificate, which may log
// them in (see certificateLogin); with a clientCAFile, they must present
// one signed by one of its CAs, else any they have, unverified (the
// handshake still proves they hold its key), or none.
func (c *Certificates) TLSConfig(clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
