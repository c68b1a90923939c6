package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"
	"time"
)

// testTLSConfig is a server configuration with a fresh self-signed
// certificate.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestForwardOverTLS: a TLS client's forwarded requests, carried by the
// shared link and its trigger, are answered in order by its connection's
// own goroutine, woken when the link's loop completes them.
func TestForwardOverTLS(t *testing.T) {
	members, oa, ob := twoNodes(t)
	a := &testNode{name: "a", addr: members[0].Addr, ts: clusterTenants(t), owners: oa}
	a.s = New(Config{Listen: a.addr, Threads: 1, TLSListen: "127.0.0.1:0", TLS: testTLSConfig(t),
		Route: &RouteConfig{Owners: oa, Secret: func() string { return testSecret }, Timeout: time.Second}}, a.ts)
	go a.s.Run()
	<-a.s.Ready()
	t.Cleanup(a.stop)
	startNode(t, "b", members[1].Addr, ob, testSecret, time.Second)

	tc, err := tls.Dial("tcp", a.s.TLSAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	c := &client{t: t, nc: tc}
	if got := c.roundTrip("set alice 0 0 5\r\necila\r\n", "\r\n"); got != "STORED\r\n" {
		t.Fatalf("login: %q", got)
	}
	kA := keyOwnedBy(t, oa, "a", "tls")
	kB := keyOwnedBy(t, oa, "b", "tls")
	in := "set " + kB + " 0 0 1\r\nb\r\nset " + kA + " 0 0 1\r\na\r\nget " + kB + " " + kA + "\r\nmg " + kB + " v\r\nmn\r\n"
	want := "STORED\r\nSTORED\r\nVALUE " + kB + " 0 1\r\nb\r\nVALUE " + kA + " 0 1\r\na\r\nEND\r\nVA 1\r\nb\r\nMN\r\n"
	if got := c.roundTrip(in, "MN\r\n"); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
