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
	h := startHive(t, "", "--overcommit", "--auth-fail-limit", "3", "--auth-fail-window", "2s")
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

	// The window ends and the address may log in again.
	time.Sleep(2100 * time.Millisecond)
	if got := dialFrom().asciiLogin(l); got != "STORED" {
		t.Fatalf("after the window: %q", got)
	}
}

// TestIdleTimeout: --idle-timeout closes connections that send nothing,
// not those in use.
func TestIdleTimeout(t *testing.T) {
	s := testserver.StartMemhive(t, "--idle-timeout", "1s")
	idle := dialText(t, s.Addr)
	busy := dialText(t, s.Addr)
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		if got := busy.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION") {
			t.Fatalf("busy connection: %q", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !idle.closedByPeer(2 * time.Second) {
		t.Fatal("an idle connection outlived --idle-timeout")
	}
	if got := busy.cmd("version\r\n"); !strings.HasPrefix(got, "VERSION") {
		t.Fatalf("busy connection after the idle one closed: %q", got)
	}
}

// TestSlowReaderIsBounded: a client that pipelines gets of a large value
// and never reads cannot grow the server's memory: its requests are held
// once its unsent replies pass a bound, and it is cut off once it has sent
// more than the input bound. A client that reads late gets every reply.
func TestSlowReaderIsBounded(t *testing.T) {
	s := testserver.StartMemhive(t, "-m", "64")
	setter := dialText(t, s.Addr)
	value := bytes.Repeat([]byte("v"), 500_000)
	if got := setter.cmd(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(value), value)); got != "STORED" {
		t.Fatal(got)
	}
	before, _ := s.RSS()

	// Late reader: 100 gets (50 MB of replies) sent at once, read after a
	// pause; every reply arrives whole.
	late := dialText(t, s.Addr)
	late.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(late.c, strings.Repeat("get big\r\n", 100)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < 100; i++ {
		if hdr := late.line(); hdr != "VALUE big 0 500000" {
			t.Fatalf("late reader, reply %d: %q", i, hdr)
		}
		late.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.CopyN(io.Discard, late.r, int64(len(value)+2)); err != nil {
			t.Fatal(err)
		}
		if end := late.line(); end != "END" {
			t.Fatalf("late reader, reply %d ends %q", i, end)
		}
	}

	// Never-readers: each sends 20,000 gets (10 GB of replies) and reads
	// nothing.
	const clients = 8
	conns := make([]net.Conn, clients)
	flood := []byte(strings.Repeat("get big\r\n", 20_000))
	for i := range conns {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		// The socket's buffers fill before the server cuts it off, so the
		// write may block or fail: do it aside.
		go func() {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			c.Write(flood)
		}()
	}
	time.Sleep(2 * time.Second)
	after, _ := s.RSS()
	if grew := after - before; grew > 150<<20 {
		t.Fatalf("RSS grew by %d MiB for %d clients that do not read", grew>>20, clients)
	}
	if s.Exited() {
		t.Fatal("server exited")
	}
	other := dialText(t, s.Addr)
	if got := other.cmd("get nothing\r\n"); got != "END" {
		t.Fatalf("another client while the floods are held: %q", got)
	}
	t.Logf("RSS before %d MiB, with %d non-reading clients %d MiB", before>>20, clients, after>>20)
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
	time.Sleep(200 * time.Millisecond)
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
