package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/QuangTung97/go-memcache/memcache"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/testserver"
)

// clientCert makes a client certificate with subject CN cn: signed by
// pki's CA, or self-signed when pki is nil (which a server without
// --tls-ca accepts unverified, and logs in only by its fingerprint).
func clientCert(t *testing.T, cn string, pki *testPKI) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	parent, signer := tmpl, any(key)
	if pki != nil {
		parent, signer = pki.caCert, pki.caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// withClientCert is pki's client configuration presenting cert.
func withClientCert(pki *testPKI, cert tls.Certificate) *tls.Config {
	cfg := pki.clientConfig(false)
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// tlsRelay carries each plain connection to a loopback port of its own
// over a TLS connection of its own to addr, made with cfg, as stunnel does
// for a client without TLS: QuangTung97/go-memcache v0.3.5 dials with
// net.Dial and takes no dialer, so this is how it presents a client
// certificate. A close on either side closes the other. It returns the
// plain address.
func tlsRelay(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			plain, err := ln.Accept()
			if err != nil {
				return
			}
			secure, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
			if err != nil {
				plain.Close()
				continue
			}
			mu.Lock()
			open = append(open, plain, secure)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(secure, plain)
			go pipe(plain, secure)
		}
	}()
	return ln.Addr().String()
}

// dialCert opens a TLS connection presenting cert and returns it as a
// text connection.
func dialCert(t *testing.T, addr string, pki *testPKI, cert tls.Certificate) *textConn {
	t.Helper()
	c, err := dialTLS(t, addr, withClientCert(pki, cert))
	if err != nil {
		t.Fatal(err)
	}
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

// bindCert binds a credential to a certificate fingerprint and/or CN
// through the admin API ("" and "" unbinds).
func (h *hive) bindCert(l login, fingerprint, cn string) {
	h.t.Helper()
	path := fmt.Sprintf("/admin/v1/caches/%d/credentials/%s", l.CacheID, l.Username)
	if st := h.admin("PATCH", path, map[string]any{"cert_sha256": fingerprint, "cert_cn": cn}, nil); st != 200 {
		h.t.Fatalf("binding credential %s to certificate %q, CN %q: status %d", l.Username, fingerprint, cn, st)
	}
}

// TestClientCertificateLogsIn: on a server in --auth sasl with a TLS port
// and no --tls-ca, a client certificate bound to a credential logs in at
// the handshake. A real meta client runs its lease cycle in that cache,
// answered as memcached answers it, and sees nothing of another cache; a
// certificate bound to nothing must log in as usual; a CN binding means
// nothing for an unverified certificate; the credential's capabilities
// hold; unbinding or deleting the credential ends the connections.
func TestClientCertificateLogsIn(t *testing.T) {
	pki := newTestPKI(t)
	args, tlsAddr := tlsListenArgs(t, pki)
	h := startHive(t, "", append(args, "--overcommit")...)
	app := h.createCache("app", 16)
	other := h.createCache("other", 16)
	bound := h.createCred(app.CacheID, true, true, false)
	readOnly := h.createCred(app.CacheID, false, false, false)

	appCert, readCert, strayCert := clientCert(t, "app", nil), clientCert(t, "reader", nil), clientCert(t, "stray", nil)
	h.bindCert(bound, control.Fingerprint(appCert.Certificate[0]), "")
	h.bindCert(readOnly, control.Fingerprint(readCert.Certificate[0]), "")
	// A CN binding for a certificate nobody verified logs nobody in.
	h.bindCert(other, "", "stray")

	// The other cache holds a key the lease cycle uses.
	o := dialText(t, h.Addr)
	if got := o.asciiLogin(other); got != "STORED" {
		t.Fatalf("login to the other cache: %q", got)
	}
	if got := o.cmd("set user:1 0 0 5\r\nother\r\n"); got != "STORED" {
		t.Fatalf("set in the other cache: %q", got)
	}

	// The meta client's lease cycle through the bound certificate gets
	// memcached's answers: the other cache's user:1 is not seen, and its
	// flush_all empties only its own cache.
	relay := tlsRelay(t, tlsAddr, withClientCert(pki, appCert))
	got := metaScenario(t, relay)
	want := metaScenario(t, testserver.StartMemcached(t).Addr)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("meta client over TLS with a bound certificate:\n got %+v\nwant %+v", got, want)
	}
	if got := o.cmd("get user:1\r\n"); got != "VALUE user:1 0 5" {
		t.Fatalf("the other cache after the certificate's cycle and flush_all: %q", got)
	}
	o.line()
	o.line()

	// Every protocol follows the handshake at once: meta and text here.
	c := dialCert(t, tlsAddr, pki, appCert)
	if got := c.cmd("ms cert 2\r\nok\r\n"); got != "HD" {
		t.Fatalf("ms with a bound certificate: %q", got)
	}
	if got := c.cmd("mg cert v\r\n"); got != "VA 2" {
		t.Fatalf("mg with a bound certificate: %q", got)
	}
	c.line()
	if got := o.cmd("mg cert v\r\n"); got != "EN" {
		t.Fatalf("the other cache sees the certificate's key: %q", got)
	}

	// A read-only credential's certificate reads but cannot write.
	r := dialCert(t, tlsAddr, pki, readCert)
	if got := r.cmd("mg cert v\r\n"); got != "VA 2" {
		t.Fatalf("mg with a read-only certificate: %q", got)
	}
	r.line()
	if got := r.cmd("set cert 0 0 1\r\nx\r\n"); got != "NOT_STORED" {
		t.Fatalf("set with a read-only certificate: %q", got)
	}

	// A certificate bound to nothing (its CN bound, but unverified) is
	// refused until it logs in.
	s := dialCert(t, tlsAddr, pki, strayCert)
	if got := s.cmd("mg cert v\r\n"); got != "CLIENT_ERROR unauthenticated" {
		t.Fatalf("mg with an unbound certificate: %q", got)
	}
	if !s.closedByPeer(2 * time.Second) {
		t.Fatal("an unauthenticated mg left the connection open")
	}
	s = dialCert(t, tlsAddr, pki, strayCert)
	if got := s.asciiLogin(bound); got != "STORED" {
		t.Fatalf("text login with an unbound certificate: %q", got)
	}
	if got := s.cmd("mg cert v\r\n"); got != "VA 2" {
		t.Fatalf("mg after a text login: %q", got)
	}
	s.line()

	// Unbinding closes the certificate's connections, the meta client's
	// too, and leaves the password's; the certificate then logs in nobody.
	mc, err := memcache.New(relay, 1, memcache.WithRetryDuration(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	p := mc.Pipeline()
	if _, err := p.MGet("cert", memcache.MGetOptions{})(); err != nil {
		t.Fatalf("meta client before unbinding: %v", err)
	}
	p.Finish()
	h.bindCert(bound, "", "")
	if !c.closedByPeer(2 * time.Second) {
		t.Fatal("unbinding the certificate left its connection open")
	}
	failed := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p := mc.Pipeline()
		_, err := p.MGet("cert", memcache.MGetOptions{})()
		p.Finish()
		if err != nil {
			failed = true
			break
		}
	}
	if !failed {
		t.Fatal("the meta client went on being served after its certificate was unbound")
	}
	if got := s.cmd("mg cert v\r\n"); got != "VA 2" {
		t.Fatalf("a password login after the unbinding: %q", got)
	}
	s.line()
	c = dialCert(t, tlsAddr, pki, appCert)
	if got := c.cmd("mg cert v\r\n"); got != "CLIENT_ERROR unauthenticated" {
		t.Fatalf("mg with the unbound certificate: %q", got)
	}

	// Deleting a credential closes its certificate's connections.
	r = dialCert(t, tlsAddr, pki, readCert)
	if got := r.cmd("mn\r\n"); got != "MN" {
		t.Fatalf("mn with a bound certificate: %q", got)
	}
	if st := h.admin("DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%s", app.CacheID, readOnly.Username), nil, nil); st/100 != 2 {
		t.Fatalf("deleting the credential: status %d", st)
	}
	if !r.closedByPeer(2 * time.Second) {
		t.Fatal("deleting the credential left its certificate's connection open")
	}
}

// TestClientCertificateCNUnderCA: with --tls-ca, a credential bound to a
// subject CN logs in any certificate the CA signed with that name; one
// the CA did not sign does not get past the handshake.
func TestClientCertificateCNUnderCA(t *testing.T) {
	pki := newTestPKI(t)
	args, tlsAddr := tlsListenArgs(t, pki)
	h := startHive(t, "", append(args, "--overcommit", "--tls-ca", pki.caFile)...)
	l := h.createCache("fleet", 8)
	h.bindCert(l, "", "worker.fleet")

	for i := range 2 {
		// Two certificates with the name: either logs in.
		c := dialCert(t, tlsAddr, pki, clientCert(t, "worker.fleet", pki))
		key := fmt.Sprintf("k%d", i)
		if got := c.cmd("ms " + key + " 1\r\nv\r\n"); got != "HD" {
			t.Fatalf("certificate %d with the bound CN: ms %q", i, got)
		}
	}
	c := dialCert(t, tlsAddr, pki, clientCert(t, "worker.other", pki))
	if got := c.cmd("mg k0 v\r\n"); got != "CLIENT_ERROR unauthenticated" {
		t.Fatalf("a signed certificate with another CN: %q", got)
	}
	if c, err := dialTLS(t, tlsAddr, withClientCert(pki, clientCert(t, "worker.fleet", nil))); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "mn\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
			t.Fatalf("a self-signed certificate with the bound CN was served: %q", strings.TrimSpace(line))
		}
	}
}
