// Package etcdtest runs a real, one-member etcd inside a test process
// (go.etcd.io/etcd/server/v3/embed) on loopback ports, which a test can
// stop and start again on the same data to play an etcd outage.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// StartTimeout bounds how long etcd may take to become ready.
const StartTimeout = 30 * time.Second

// Etcd is one embedded etcd member.
type Etcd struct {
	t      testing.TB
	dir    string
	client url.URL
	peer   url.URL
	srv    *embed.Etcd
}

// Start starts etcd in a new temporary directory on two free loopback
// ports, with auto-compaction on, and stops it when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	e := &Etcd{
		t:      t,
		dir:    t.TempDir(),
		client: url.URL{Scheme: "http", Host: freeAddr(t)},
		peer:   url.URL{Scheme: "http", Host: freeAddr(t)},
	}
	e.Restart()
	t.Cleanup(e.Stop)
	return e
}

// Endpoint is the URL clients reach etcd at.
func (e *Etcd) Endpoint() string { return e.client.String() }

// Endpoints is Endpoint as the one-element list a client takes.
func (e *Etcd) Endpoints() []string { return []string{e.Endpoint()} }

// Running reports whether etcd is serving.
func (e *Etcd) Running() bool { return e.srv != nil }

// Stop stops etcd, keeping its data; stopping a stopped etcd does nothing.
func (e *Etcd) Stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	<-e.srv.Server.StopNotify()
	e.srv = nil
}

// Restart starts etcd again on its data and ports, and waits until it
// serves; it fails the test if etcd does not become ready in StartTimeout.
func (e *Etcd) Restart() {
	e.t.Helper()
	if e.srv != nil {
		return
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{e.client}
	cfg.AdvertiseClientUrls = []url.URL{e.client}
	cfg.ListenPeerUrls = []url.URL{e.peer}
	cfg.AdvertisePeerUrls = []url.URL{e.peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, e.peer.String())
	// etcd logs its own shutdown as errors ("server closed"): a test
	// that stops it on purpose would print them as noise.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "1000"
	var srv *embed.Etcd
	var err error
	// A port just released by Stop may still be held for a moment.
	for deadline := time.Now().Add(StartTimeout); ; {
		srv, err = embed.StartEtcd(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(StartTimeout):
		srv.Close()
		e.t.Fatalf("etcd not ready within %v", StartTimeout)
	}
	e.srv = srv
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
