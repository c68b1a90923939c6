package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files.
type testPKI struct {
	dir                string
	caPEM              []byte
	caCert             *x509.Certificate
	caKey              *ecdsa.PrivateKey
	serverCert         string // file paths
	serverKey          string
	caFile             string
	clientCert, client tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "memhive test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = caKey
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p.caFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.caFile, p.caPEM, 0o600)
	p.serverCert, p.serverKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server.key")
	p.writeServerCert(t, 100)
	p.client = p.issue(t, 200, x509.ExtKeyUsageClientAuth)
	return p
}

// issue makes a certificate for 127.0.0.1 signed by the CA.
func (p *testPKI) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writeServerCert writes a fresh server certificate with the given serial
// over the server's files.
func (p *testPKI) writeServerCert(t *testing.T, serial int64) {
	t.Helper()
	c := p.issue(t, serial, x509.ExtKeyUsageServerAuth)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.serverCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(p.serverKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func (p *testPKI) clientConfig(withCert bool) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

// tlsListenArgs are the flags serving TLS on a free port; it returns them
// and the address.
func tlsListenArgs(t *testing.T, p *testPKI) ([]string, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	return []string{"--tls-listen", addr, "--tls-cert", p.serverCert, "--tls-key", p.serverKey}, addr
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestTLSServesTextAndBinary runs the text login and binary SASL through
// the TLS listener, with the same caches as the plain port.
func TestTLSServesTextAndBinary(t *testing.T) {
	pki := newTestPKI(t)
	args, tlsAddr := tlsListenArgs(t, pki)
	h := startHive(t, "", append(args, "--overcommit")...)
	l := h.createCache("tls", 8)

	c, err := dialTLS(t, tlsAddr, pki.clientConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("TLS version %x, want 1.2 or later", v)
	}
	tc := &textConn{t: t, c: c, r: bufio.NewReader(c)}
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("text login over TLS: %q", got)
	}
	if got := tc.cmd("set k 5 0 5\r\nhello\r\n"); got != "STORED" {
		t.Fatalf("set over TLS: %q", got)
	}
	// The plain port sees the same cache.
	plain := dialText(t, h.Addr)
	plain.asciiLogin(l)
	if got := plain.cmd("get k\r\n"); got != "VALUE k 5 5" {
		t.Fatalf("get on the plain port after a TLS set: %q", got)
	}

	b, err := dialTLS(t, tlsAddr, pki.clientConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	bc := &binConn{t: t, c: b, r: bufio.NewReader(b)}
	if st := bc.auth(l); st != 0 {
		t.Fatalf("SASL over TLS: status %#x", st)
	}
	r := bc.do(0x00, []byte("k"), nil, nil, 0)
	if r.status != 0 || string(r.value) != "hello" {
		t.Fatalf("binary get over TLS: status %#x value %q", r.status, r.value)
	}
	// Unauthenticated binary requests are refused over TLS too.
	b2, _ := dialTLS(t, tlsAddr, pki.clientConfig(false))
	bc2 := &binConn{t: t, c: b2, r: bufio.NewReader(b2)}
	if r := bc2.do(0x00, []byte("k"), nil, nil, 0); r.status != 0x20 {
		t.Fatalf("unauthenticated get over TLS: status %#x", r.status)
	}

	// TLS below 1.2 is refused.
	old := pki.clientConfig(false)
	old.MaxVersion = tls.VersionTLS11
	if _, err := dialTLS(t, tlsAddr, old); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

// TestTLSWithOpenSSL talks to the TLS port with openssl s_client, a client
// that shares no code with the server.
func TestTLSWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is not installed (tools/install-deps.sh installs it)")
	}
	pki := newTestPKI(t)
	args, tlsAddr := tlsListenArgs(t, pki)
	h := startHive(t, "", append(args, "--overcommit")...)
	l := h.createCache("ossl", 8)
	script := fmt.Sprintf("set %s 0 0 %d\r\n%s\r\nset a 0 0 3\r\nabc\r\nget a\r\nquit\r\n", l.Username, len(l.Password), l.Password)
	cmd := exec.Command(openssl, "s_client", "-connect", tlsAddr, "-CAfile", pki.caFile, "-verify_return_error", "-quiet", "-crlf")
	// -crlf turns \n into \r\n: send plain newlines.
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(script, "\r\n", "\n"))
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("openssl s_client did not finish; output:\n%s", out)
	}
	want := "STORED\r\nSTORED\r\nVALUE a 0 3\r\nabc\r\nEND\r\n"
	if !strings.Contains(string(out), want) {
		t.Fatalf("openssl s_client: %v; output:\n%q\nwant it to contain %q", err, out, want)
	}
}

// TestTLSClientCertificatesAndReload checks --tls-ca (a client without a
// certificate signed by the CA is refused) and that SIGHUP makes new
// handshakes use the certificate files' new contents.
func TestTLSClientCertificatesAndReload(t *testing.T) {
	pki := newTestPKI(t)
	args, tlsAddr := tlsListenArgs(t, pki)
	h := startHive(t, "", append(args, "--overcommit", "--tls-ca", pki.caFile)...)
	l := h.createCache("mtls", 8)

	if c, err := dialTLS(t, tlsAddr, pki.clientConfig(false)); err == nil {
		// TLS 1.3 reports the server's refusal on the first read.
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "version\r\n")
		if _, err := c.Read(make([]byte, 64)); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	c, err := dialTLS(t, tlsAddr, pki.clientConfig(true))
	if err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	tc := &textConn{t: t, c: c, r: bufio.NewReader(c)}
	if got := tc.asciiLogin(l); got != "STORED" {
		t.Fatalf("login with a client certificate: %q", got)
	}
	if serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 100 {
		t.Fatalf("server certificate serial %d, want 100", serial)
	}

	pki.writeServerCert(t, 101)
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitOutput("TLS certificate reloaded", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c2, err := dialTLS(t, tlsAddr, pki.clientConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	if serial := c2.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 101 {
		t.Fatalf("after SIGHUP the server certificate serial is %d, want 101", serial)
	}
	// The connection opened before the reload goes on working.
	if got := tc.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Fatalf("old connection after reload: %q", got)
	}

	// A broken file on reload keeps the current certificate.
	os.WriteFile(pki.serverCert, []byte("not a certificate"), 0o600)
	h.Signal(syscall.SIGHUP)
	if err := h.WaitOutput("keeping the current one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := dialTLS(t, tlsAddr, pki.clientConfig(true)); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
}

// TestFailedLoginsAreThrottledPerAddress: past --auth-fail-limit failures
// an address's logins are refused, even with the right password, while
// another address logs in as usual; auth_errors counts every refusal.
func TestFailedLoginsAreThrottledPerAddress(t *testing.T) {
	const window = 3 * time.Second
	h := startHive(t, "", "--overcommit", "--auth-fail-limit", "3", "--auth-fail-window", window.String())
	l := h.createCache("throttle", 8)
	bad := login{Username: l.Username, Password: "wrong-password-0123456789abcdef"}
	attacker := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	dialFrom := func() *textConn {
		c, err := attacker.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &textConn{t: t, c: c, r: bufio.NewReader(c)}
	}
	firstFailure := time.Now() // the window starts at the first failure, after this
	for i := 0; i < 3; i++ {
		if got := dialFrom().asciiLogin(bad); got != "CLIENT_ERROR authentication failure" {
			t.Fatalf("bad login %d: %q", i, got)
		}
	}
	const throttled = "CLIENT_ERROR too many authentication failures from this address; try again later"
	if got := dialFrom().asciiLogin(l); got != throttled {
		t.Fatalf("right password from a throttled address: %q", got)
	}
	b := &binConn{t: t}
	bc, err := attacker.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	b.c, b.r = bc, bufio.NewReader(bc)
	if st := b.auth(l); st != 0x20 {
		t.Fatalf("SASL from a throttled address: status %#x", st)
	}

	// Another address is not affected.
	good := dialText(t, h.Addr)
	if got := good.asciiLogin(l); got != "STORED" {
		t.Fatalf("login from 127.0.0.1 while 127.0.0.2 is throttled: %q", got)
	}
	st := good.stats()
	if n, _ := strconv.Atoi(st["auth_errors"]); n < 3 {
		t.Fatalf("auth_errors %s, want at least the 3 failures against this cache", st["auth_errors"])
	}
	if !strings.Contains(h.Output(), "refusing logins from an address") {
		t.Fatalf("the throttle was not logged; output:\n%s", h.Output())
	}

	// The window ends and the address may log in again, not before.
	// (A refused login does not extend the window.)
	for deadline := firstFailure.Add(window + 5*time.Second); ; time.Sleep(100 * time.Millisecond) {
		got := dialFrom().asciiLogin(l)
		if got == "STORED" {
			break
		}
		if got != throttled || time.Now().After(deadline) {
			t.Fatalf("%v after the first failure: %q", time.Since(firstFailure), got)
		}
	}
	if waited := time.Since(firstFailure); waited < window {
		t.Fatalf("logins from the address were allowed again %v after its first failure, within the %v window", waited, window)
	}
}

// TestIdleTimeout: --idle-timeout closes connections that send nothing,
// not before the timeout, and not those in use.
func TestIdleTimeout(t *testing.T) {
	s := testserver.StartMemhive(t, "--idle-timeout", "1s")
	opened := time.Now() // before the server accepts either connection
	idle := dialText(t, s.Addr)
	busy := dialText(t, s.Addr)
	// The busy connection sends a command every 200 ms until told to
	// stop, well past the moment the idle one is closed.
	stop := make(chan struct{})
	busyErr := make(chan error, 1)
	go func() {
		for {
			if got := busy.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION") {
				busyErr <- fmt.Errorf("busy connection %v after it was opened: %q", time.Since(opened), got)
				return
			}
			select {
			case <-stop:
				busyErr <- nil
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	if !idle.closedByPeer(6 * time.Second) {
		t.Fatal("an idle connection outlived --idle-timeout by 5 s")
	}
	closed := time.Since(opened)
	if closed < time.Second {
		t.Fatalf("an idle connection was closed %v after it was opened, before the 1 s timeout", closed)
	}
	// The busy connection has now been open longer than the idle one was;
	// it stays in use for another timeout and a half.
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	if err := <-busyErr; err != nil {
		t.Fatal(err)
	}
	if got := busy.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION") {
		t.Fatalf("busy connection after the idle one closed: %q", got)
	}
	t.Logf("the idle connection was closed %v after it was opened", closed)
}

// The bounds of server/server.go that TestSlowReaderIsBounded checks
// (README, Security: "held once 4 MiB of them are queued: its requests
// wait, up to 32 MiB of them ... past that it is cut off").
const (
	outputHold = 4 << 20  // queued replies past which a connection's requests wait
	heldLimit  = 32 << 20 // requests a held connection may send (the default -I is far below)
)

// statWatch reads the counters of "stats" on a connection of its own and
// keeps count of its stats replies' bytes, which bytes_written counts too.
type statWatch struct {
	tc      *textConn
	replies int64 // bytes of the stats replies read so far
}

// get returns one counter, less the watch's own replies for bytes_written.
func (w *statWatch) get(t *testing.T, name string) int64 {
	t.Helper()
	var v string
	first := w.tc.cmd("stats\r\n")
	for l := first; l != "END"; l = w.tc.line() {
		w.replies += int64(len(l) + 2)
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "STAT" {
			t.Fatalf("stats: unexpected line %q", l)
		}
		if f[1] == name {
			v = f[2]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("stats %s = %q", name, v)
	}
	if name == "bytes_written" {
		n -= w.replies
	}
	w.replies += int64(len("END\r\n"))
	return n
}

// wait polls until the counter reaches at least want.
func (w *statWatch) wait(t *testing.T, name string, want int64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		n := w.get(t, name)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %s = %d after %v, want at least %d", name, n, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiveBuffer is the kernel's receive buffer of a TCP connection
// (SO_RCVBUF, bookkeeping included): replies the server has sent that the
// client has not read wait there, outside the server's memory.
func receiveBuffer(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := raw.Control(func(fd uintptr) { n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil || serr != nil {
		t.Fatalf("SO_RCVBUF: %v %v", err, serr)
	}
	return n
}

// maxSendBuffer is the most the kernel lets a TCP socket's send buffer
// grow to (the last field of net.ipv4.tcp_wmem).
func maxSendBuffer(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("tcp_wmem %q: %v", b, err)
	}
	return n
}

// TestSlowReaderIsBounded: a client that pipelines gets of a large value
// and does not read cannot grow the server's memory. Once 4 MiB of its
// replies are queued its requests wait unprocessed; while they are under
// 32 MiB it gets every reply when it reads, and once they pass 32 MiB it
// is cut off with SERVER_ERROR out of memory reading request after the
// replies queued before it was held.
func TestSlowReaderIsBounded(t *testing.T) {
	s := testserver.StartMemhive(t, "-m", "64")
	setter := dialText(t, s.Addr)
	const valueLen = 500_000
	value := bytes.Repeat([]byte("v"), valueLen)
	if got := setter.cmd(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(value), value)); got != "STORED" {
		t.Fatal(got)
	}
	const header = "VALUE big 0 500000"
	replyLen := int64(len(header) + 2 + valueLen + len("\r\nEND\r\n"))
	// readReplies reads n whole replies of "get big".
	readReplies := func(c *textConn, n int, who string) {
		t.Helper()
		for i := 0; i < n; i++ {
			c.c.SetDeadline(time.Now().Add(10 * time.Second))
			if hdr := c.line(); hdr != header {
				t.Fatalf("%s, reply %d of %d: %q", who, i, n, hdr)
			}
			if _, err := io.CopyN(io.Discard, c.r, int64(valueLen+2)); err != nil {
				t.Fatalf("%s, reply %d of %d: %v", who, i, n, err)
			}
			if end := c.line(); end != "END" {
				t.Fatalf("%s, reply %d of %d ends %q", who, i, n, end)
			}
		}
	}
	before, err := s.RSS()
	if err != nil {
		t.Fatal(err)
	}

	// Late reader: 100 gets (50 MB of replies) sent at once, read after a
	// pause; every reply arrives whole.
	late := dialText(t, s.Addr)
	late.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(late.c, strings.Repeat("get big\r\n", 100)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	readReplies(late, 100, "late reader")

	// Non-readers: each sends 100 gets (50 MB of replies) and reads
	// nothing until the end. The server queues at most about 4 MiB of
	// replies for each (one batch may pass the bound by up to 4 MiB and a
	// value), plus what the kernel's buffers take.
	const clients, gets = 8, 100
	stats := &statWatch{tc: dialText(t, s.Addr)}
	written0 := stats.get(t, "bytes_written")
	readers := make([]*textConn, clients)
	for i := range readers {
		readers[i] = dialText(t, s.Addr)
		if _, err := io.WriteString(readers[i].c, strings.Repeat("get big\r\n", gets)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until every one is held (4 MiB queued each), then until the
	// server has stopped answering them.
	stats.wait(t, "bytes_written", written0+clients*outputHold, 20*time.Second)
	queued := stats.get(t, "bytes_written") - written0
	for deadline := time.Now().Add(20 * time.Second); ; {
		time.Sleep(200 * time.Millisecond)
		n := stats.get(t, "bytes_written") - written0
		if n == queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still writes replies to clients that do not read: %d bytes", n)
		}
		queued = n
	}
	perClient := int64(2*outputHold) + replyLen + int64(maxSendBuffer(t)) + int64(receiveBuffer(t, readers[0].c))
	if queued > clients*perClient || queued >= clients*gets*replyLen {
		t.Fatalf("%d MiB of replies made for %d clients that do not read, want at most %d MiB (%d MiB each)", queued>>20, clients, clients*perClient>>20, perClient>>20)
	}
	afterHeld, err := s.RSS()
	if err != nil {
		t.Fatal(err)
	}
	// The queues are on the Go heap, which may grow to twice what is live
	// before it is collected.
	if grew := afterHeld - before; grew > 2*clients*int64(2*outputHold+replyLen) {
		t.Fatalf("RSS grew by %d MiB for %d clients that do not read", grew>>20, clients)
	}
	t.Logf("%d non-reading clients: %.1f MiB of replies made for %d MiB asked for; RSS %d MiB before, %d MiB after",
		clients, float64(queued)/(1<<20), clients*gets*replyLen>>20, before>>20, afterHeld>>20)

	// Requests a held client may send: each line a miss of four 250-byte
	// keys, answered END.
	missLine := "get " + strings.TrimSpace(strings.Repeat(strings.Repeat("m", 250)+" ", 4)) + "\r\n"
	flood := func(total int) (string, int) {
		head := strings.Repeat("get big\r\n", gets)
		lines := (total - len(head)) / len(missLine)
		return head + strings.Repeat(missLine, lines), lines
	}

	// Under the bound: 100 gets and misses up to 1 MiB short of 32 MiB,
	// all received while the client is held, and then read: every reply.
	under := dialText(t, s.Addr)
	read0 := stats.get(t, "bytes_read")
	req, misses := flood(heldLimit - 1<<20)
	go func() {
		under.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(under.c, req)
	}()
	stats.wait(t, "bytes_read", read0+int64(len(req)), 30*time.Second)
	readReplies(under, gets, "held client under the bound")
	for i := 0; i < misses; i++ {
		under.c.SetDeadline(time.Now().Add(10 * time.Second))
		if got := under.line(); got != "END" {
			t.Fatalf("held client under the bound, miss %d of %d: %q", i, misses, got)
		}
	}
	if got := under.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Fatalf("held client under the bound, after its %d MiB of requests: %q", len(req)>>20, got)
	}

	// Over the bound: the same with 1 MiB more than 32 MiB, and the
	// client reads once the server has received more than 32 MiB of
	// requests it could not run (the gets it ran are at most the 900
	// bytes of the head). It then finds the replies queued before it was
	// held, the error line, and the end of the connection; what it sent
	// past the cut-off is dropped.
	over := dialText(t, s.Addr)
	read0 = stats.get(t, "bytes_read")
	req, _ = flood(heldLimit + 1<<20)
	go func() {
		over.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(over.c, req)
	}()
	stats.wait(t, "bytes_read", read0+heldLimit+int64(gets*len("get big\r\n"))+1, 30*time.Second)
	rcvbuf := receiveBuffer(t, over.c)
	answered := 0
	for {
		over.c.SetDeadline(time.Now().Add(10 * time.Second))
		l := over.line()
		if l != header {
			if l != "SERVER_ERROR out of memory reading request" {
				t.Fatalf("held client over the bound, after %d replies: %q", answered, l)
			}
			break
		}
		if _, err := io.CopyN(io.Discard, over.r, int64(valueLen+2)); err != nil {
			t.Fatal(err)
		}
		if end := over.line(); end != "END" {
			t.Fatalf("held client over the bound, reply %d ends %q", answered, end)
		}
		answered++
	}
	if !over.closedByPeer(5 * time.Second) {
		t.Fatal("the connection stayed open after SERVER_ERROR out of memory reading request")
	}
	// Held once 4 MiB were queued: at least that many replies, and no
	// more than the queue and the kernel's buffers hold.
	most := (2*outputHold + replyLen + int64(maxSendBuffer(t)+rcvbuf)) / replyLen
	if int64(answered)*replyLen < outputHold || int64(answered) > most || answered >= gets {
		t.Fatalf("held client over the bound: %d replies before the cut-off, want %d to %d", answered, (outputHold+replyLen-1)/replyLen, most)
	}
	t.Logf("cut off after %d replies (%d to %d allowed)", answered, (outputHold+replyLen-1)/replyLen, most)

	if s.Exited() {
		t.Fatal("server exited")
	}
	other := dialText(t, s.Addr)
	if got := other.cmd("get nothing\r\n"); got != "END" {
		t.Fatalf("another client while the non-readers are held: %q", got)
	}
	// The non-readers were held, not cut off: every reply arrives.
	for i, c := range readers {
		readReplies(c, gets, fmt.Sprintf("non-reader %d", i))
		if got := c.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION ") {
			t.Fatalf("non-reader %d after its replies: %q", i, got)
		}
	}
}

// TestLongLineIsBounded: a multi-get line with no end is cut off once it
// passes the input bound (memcached would buffer it without limit).
func TestLongLineIsBounded(t *testing.T) {
	s := testserver.StartMemhive(t, "-I", "1m")
	c := dialText(t, s.Addr)
	line := "get " + strings.Repeat("k ", 700_000) // 1.4 MB, no newline
	go func() {
		c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c.c, line)
	}()
	if got := c.line(); got != "SERVER_ERROR out of memory reading request" {
		t.Fatalf("endless get line: %q", got)
	}
	// The client is still sending, so the close may come as a reset.
	c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.r.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection left open after its input outgrew the bound: %v", err)
	}
}

// TestSIGTERMIsGraceful: on SIGTERM the server answers what it has
// received, closes its connections, and exits 0 within the bound; the
// store opens cleanly afterwards.
func TestSIGTERMIsGraceful(t *testing.T) {
	data := t.TempDir()
	h := startHive(t, data, "--overcommit")
	l := h.createCache("graceful", 8)
	c := dialText(t, h.Addr)
	c.asciiLogin(l)
	const n = 2000
	var batch strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&batch, "set k%d 0 0 1\r\nx\r\n", i)
	}
	if _, err := io.WriteString(c.c, batch.String()); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has run them all (another connection of the
	// cache sees the sets counted).
	watch := dialText(t, h.Addr)
	watch.asciiLogin(l)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		sets, err := strconv.Atoi(watch.stats()["cmd_set"])
		if err != nil {
			t.Fatal(err)
		}
		if sets >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server ran %d of %d sets in 10 s", sets, n)
		}
	}
	idle := dialText(t, h.Addr)
	code, err := h.Terminate(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, h.Output())
	}
	for i := 0; i < n; i++ {
		if got := c.line(); got != "STORED" {
			t.Fatalf("reply %d of %d sent before SIGTERM: %q", i, n, got)
		}
	}
	if !c.closedByPeer(time.Second) {
		t.Fatal("a connection left open after exit")
	}
	// The idle connection may have reached the server after the stop
	// began: it is then refused with a line before the close.
	if l := idle.line(); l != "read error: EOF" && l != "SERVER_ERROR shutting down" {
		t.Fatalf("idle connection after exit: %q", l)
	}
	if !idle.closedByPeer(time.Second) {
		t.Fatal("the idle connection left open after exit")
	}
	// The control plane is intact: the cache is there after a restart.
	h2 := startHive(t, data, "--overcommit")
	var caches []struct {
		Name string `json:"name"`
	}
	h2.admin("GET", "/admin/v1/caches", nil, &caches)
	found := false
	for _, ch := range caches {
		found = found || ch.Name == "graceful"
	}
	if !found {
		t.Fatalf("cache created before SIGTERM is missing after restart: %+v", caches)
	}
}

// TestMaxConnsAnswersAndCounts: past --max-conns a connection gets
// memcached's error line and is closed, and rejected_connections counts it.
func TestMaxConnsAnswersAndCounts(t *testing.T) {
	s := testserver.StartMemhive(t, "-c", "3")
	// Each connection is answered before the next is made: the event
	// loops open connections concurrently, in any order.
	var first *textConn
	for i := 0; i < 3; i++ {
		c := dialText(t, s.Addr)
		if got := c.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION") {
			t.Fatalf("connection %d of 3: %q", i, got)
		}
		if first == nil {
			first = c
		}
	}
	extra := dialText(t, s.Addr)
	if got := extra.line(); got != "ERROR Too many open connections" {
		t.Fatalf("connection past -c: %q", got)
	}
	if !extra.closedByPeer(2 * time.Second) {
		t.Fatal("refused connection left open")
	}
	if got := first.stats()["rejected_connections"]; got != "1" {
		t.Fatalf("rejected_connections %s, want 1", got)
	}
}

// TestMultiGetReplyIsBounded: one multi-get of more large values than the
// reply budget (64 MiB by default) gets the values up to the budget and
// misses for the rest, not a reply as large as the items.
func TestMultiGetReplyIsBounded(t *testing.T) {
	s := testserver.StartMemhive(t, "-m", "64")
	c := dialText(t, s.Addr)
	value := strings.Repeat("v", 500_000)
	var keys []string
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("big%d", i)
		if got := c.cmd(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(value), value)); got != "STORED" {
			t.Fatal(got)
		}
	}
	// Each key 20 times: 200 values, 100 MB, memcached would send them all.
	for r := 0; r < 20; r++ {
		for i := 0; i < 10; i++ {
			keys = append(keys, fmt.Sprintf("big%d", i))
		}
	}
	io.WriteString(c.c, "get "+strings.Join(keys, " ")+"\r\n")
	values := 0
	for {
		c.c.SetDeadline(time.Now().Add(10 * time.Second))
		l := c.line()
		if l == "END" {
			break
		}
		if l != fmt.Sprintf("VALUE big%d 0 %d", values%10, len(value)) {
			t.Fatalf("value %d: %q", values, l)
		}
		if _, err := io.CopyN(io.Discard, c.r, int64(len(value)+2)); err != nil {
			t.Fatal(err)
		}
		values++
	}
	// 64 MiB of 500,000-byte values: the reply stops at the 135th.
	if values != 135 {
		t.Fatalf("%d values in the reply, want 135 (64 MiB of them)", values)
	}
	if got := c.cmd("get big9\r\n"); got != "VALUE big9 0 500000" {
		t.Fatalf("a key left out of the bounded reply is still there: %q", got)
	}
}

// TestPipeliningSlowReaderGetsEverything: a client that writes far more
// requests than a connection may buffer unprocessed (the largest item plus
// 64 KiB) while it reads the replies slower than the server makes them is
// held, not cut off, and gets every reply in order.
func TestPipeliningSlowReaderGetsEverything(t *testing.T) {
	s := testserver.StartMemhive(t)
	c := dialText(t, s.Addr)
	if got := c.cmd("set small 0 0 40\r\n" + strings.Repeat("s", 40) + "\r\n"); got != "STORED" {
		t.Fatal(got)
	}
	const n = 300_000 // 2.7 MB of requests, 21 MB of replies
	go func() {
		c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c.c, strings.Repeat("get small\r\n", n))
	}()
	time.Sleep(500 * time.Millisecond) // let the replies pile up
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	want := "VALUE small 0 40\r\n" + strings.Repeat("s", 40) + "\r\nEND\r\n"
	buf := make([]byte, len(want))
	for i := 0; i < n; i++ {
		if _, err := io.ReadFull(c.r, buf); err != nil {
			t.Fatalf("reply %d of %d: %v", i, n, err)
		}
		if string(buf) != want {
			t.Fatalf("reply %d of %d: %q", i, n, buf)
		}
	}
}
