package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/atomicfile"
	"github.com/memhive/memhive/server"
	"github.com/memhive/memhive/tenancy"
)

// registerClusterFlags adds the flags of a cluster node to serve's.
func registerClusterFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.etcd, "etcd", "", "etcd client URLs, comma-separated: serve as a node of the cluster whose caches and credentials etcd holds (default: the embedded store in --data)")
	fs.StringVar(&c.etcdPrefix, "etcd-prefix", "/memhive", "prefix of every key memhive keeps in etcd: clusters sharing one etcd use different prefixes")
	fs.StringVar(&c.etcdCA, "etcd-ca", "", "PEM CA certificates that signed etcd's server certificates: TLS to etcd")
	fs.StringVar(&c.etcdCert, "etcd-cert", "", "PEM client certificate this node presents to etcd (with --etcd-key)")
	fs.StringVar(&c.etcdKey, "etcd-key", "", "PEM private key of --etcd-cert")
	fs.StringVar(&c.node, "node", "", "this node's name, unique in the cluster; the server list is in name order (default: the hostname)")
	fs.StringVar(&c.advertise, "advertise", "", "host:port clients reach this node's memcache port at, as the server list gives it (default: --listen, which must then name a host, not 0.0.0.0)")
	fs.StringVar(&c.route, "route", "", `"server": any node serves any key, forwarding it to the node that owns it (the default with --etcd); "client": each node serves the keys it receives, clients hash over the server list (the only mode without --etcd)`)
	fs.DurationVar(&c.forwardTimeout, "forward-timeout", server.DefaultForwardTimeout, "with --route server, how long a forwarded request waits for its owner before a read misses and a write answers a server error")
}

// checkClusterFlags checks the cluster flags the command line set (set
// holds their names) and fills in their defaults: --node the hostname,
// --advertise the --listen address, --route server. Without --etcd,
// advertise is --listen, the route is client (a single node owns every
// key) and the other cluster flags are refused, as --tls-cert is without
// --tls-listen.
func checkClusterFlags(c *serveConfig, set map[string]bool) error {
	if err := checkRouteFlags(c, set); err != nil {
		return err
	}
	if c.etcd == "" {
		for _, name := range []string{"etcd-prefix", "etcd-ca", "etcd-cert", "etcd-key", "node", "advertise"} {
			if set[name] {
				return fmt.Errorf("--%s needs --etcd", name)
			}
		}
		c.advertise = c.listen
		return nil
	}
	for _, u := range strings.Split(c.etcd, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.etcdEndpoints = append(c.etcdEndpoints, u)
		}
	}
	if len(c.etcdEndpoints) == 0 {
		return fmt.Errorf("--etcd %q: want etcd's client URLs, comma-separated", c.etcd)
	}
	if (c.etcdCert == "") != (c.etcdKey == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if !strings.HasPrefix(c.etcdPrefix, "/") {
		return fmt.Errorf("--etcd-prefix %q: want a key prefix starting with /", c.etcdPrefix)
	}
	if c.node == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return fmt.Errorf("--node: the hostname is unknown (%v): name this node", err)
		}
		c.node = host
	}
	if strings.ContainsAny(c.node, "/ \t\r\n") {
		return fmt.Errorf("--node %q: a name without slashes or spaces", c.node)
	}
	flagName := "--advertise"
	if c.advertise == "" {
		c.advertise, flagName = c.listen, "--listen"
	}
	host, port, err := net.SplitHostPort(c.advertise)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("%s %q: the server list needs a host:port clients can reach", flagName, c.advertise)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%s %s is not an address clients can reach: pass --advertise HOST:PORT, this node's address on the clients' network", flagName, c.advertise)
	}
	return nil
}

// checkRouteFlags checks --route and --forward-timeout and fills in the
// route's default: server in a cluster, where clients should not have to
// agree on a hash, and client alone, where there is nobody to forward to.
// A --forward-timeout the command line set without --route server would
// be silently ignored, so it is refused instead.
func checkRouteFlags(c *serveConfig, set map[string]bool) error {
	switch c.route {
	case "":
		c.route = routeClient
		if c.etcd != "" {
			c.route = routeServer
		}
	case routeServer:
		if c.etcd == "" {
			return errors.New("--route server needs --etcd: a single node owns every key (--route client)")
		}
	case routeClient:
	default:
		return fmt.Errorf("--route %q: want server or client", c.route)
	}
	if c.forwardTimeout <= 0 {
		return fmt.Errorf("--forward-timeout %v: must be positive", c.forwardTimeout)
	}
	if set["forward-timeout"] && c.route != routeServer {
		return errors.New("--forward-timeout needs --route server (the default with --etcd): nothing is forwarded otherwise")
	}
	return nil
}

// The values of --route.
const (
	routeServer = "server"
	routeClient = "client"
)

// etcdTLS is the TLS configuration to reach etcd with: its CA (--etcd-ca)
// and this node's client certificate (--etcd-cert, --etcd-key); nil when
// neither is given (plain http:// endpoints).
func etcdTLS(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pemBytes, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--etcd-ca %s: no PEM certificate in it", ca)
		}
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert, --etcd-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// clusterMarker is DATA/cluster.json: which cluster a --data belongs to.
type clusterMarker struct {
	Etcd   []string `json:"etcd"`
	Prefix string   `json:"prefix"`
	Node   string   `json:"node"`
}

// openEtcd is openStore with --etcd: the store is etcd, its last state
// kept in --data so that the node serves it while etcd is away, and the
// default cache is made on an empty etcd by whichever node gets there
// first.
func (s *serving) openEtcd(policy control.Policy) error {
	c := s.cfg
	tlsConfig, err := etcdTLS(c.etcdCA, c.etcdCert, c.etcdKey)
	if err != nil {
		return err
	}
	marker := clusterMarker{Etcd: c.etcdEndpoints, Prefix: c.etcdPrefix, Node: c.node}
	if err := atomicfile.WriteJSON(filepath.Join(c.data, clusterFile), marker); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	store, err := control.OpenEtcd(control.EtcdConfig{
		Endpoints: c.etcdEndpoints,
		Prefix:    c.etcdPrefix,
		TLS:       tlsConfig,
		Dir:       c.data,
		Logger:    s.log,
	}, policy)
	if err != nil {
		return fmt.Errorf("--etcd %s: %w", c.etcd, err)
	}
	s.store, s.etcd = store, store
	s.onStop(func() { store.Close() })
	// With --auth none every node serves the cache "default" with its
	// whole --memory (tenancy's local mode): a cluster of plain
	// memcacheds in which any node serves any key. The cache must exist
	// in etcd all the same, since its id is what peers forward under.
	s.created, s.password, err = ensureDefaultCache(store, s.memoryBytes, policy.MinLimitBytes, c.auth == "none")
	if errors.Is(err, control.ErrUnavailable) {
		// Serving a saved state while etcd is away: a node that reaches
		// etcd makes the default cache if it is still needed.
		s.log.Warn("etcd unreachable: not creating the default cache", "err", err)
		return nil
	}
	return err
}

// joinRetry bounds how long joinCluster waits for its name to be free: a
// node restarted right after a crash finds its old member key until the
// lease runs out (5 s by default).
const joinRetry = 15 * time.Second

// selfMember is this node as the other nodes see it. Its HTTP address is
// where they ask it for stats, history and flushes: --http's, with the
// --advertise host when --http listens on every interface.
func (s *serving) selfMember() control.Member {
	c := s.cfg
	httpAddr := ""
	if c.http != "off" && c.http != "" {
		httpAddr = c.http
		if s.httpSrv != nil {
			httpAddr = s.httpSrv.Addr()
		}
		if host, port, err := net.SplitHostPort(httpAddr); err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				advHost, _, _ := net.SplitHostPort(c.advertise)
				httpAddr = net.JoinHostPort(advHost, port)
			}
		}
	}
	return control.Member{Name: c.node, Advertise: c.advertise, HTTP: httpAddr, Version: server.Version}
}

// joinCluster, with --etcd, puts this node in the member list once its
// listeners accept connections, and follows the list: each change splits
// the caches' limits over the live nodes and makes a new server list.
// Leaving (on SIGTERM before the listeners stop, or at shutdown) takes
// the node out of the list at once rather than when its lease expires.
// If etcd cannot be reached, the node serves what it knows and joins once
// etcd answers: the store joins by itself then, but gives up if the name
// is still held (the node's own key from before a crash, under another
// address), so joinCluster keeps trying in the background until the node
// is a member.
func (s *serving) joinCluster() error {
	if s.etcd == nil {
		return nil
	}
	e, self := s.etcd, s.selfMember()
	stop := make(chan struct{})
	var joined sync.WaitGroup
	err := e.Join(self)
	for deadline := time.Now().Add(joinRetry); errors.Is(err, control.ErrExists) && time.Now().Before(deadline); {
		s.log.Info("node name held by a live member, maybe this node before a restart; waiting for its lease", "node", self.Name)
		time.Sleep(500 * time.Millisecond)
		err = e.Join(self)
	}
	switch {
	case errors.Is(err, control.ErrExists):
		return fmt.Errorf("--node %s: the name is held by another live node of the cluster; pick another", self.Name)
	case errors.Is(err, control.ErrUnavailable):
		s.log.Warn("etcd unreachable: serving the last state seen; joining the cluster when etcd is back", "node", self.Name, "err", err)
		joined.Add(1)
		go func() {
			defer joined.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if slices.Contains(e.Members(), self) {
					// The store joined by itself once etcd answered.
					s.log.Info("joined the cluster", "node", self.Name)
					return
				}
				err := e.Join(self)
				if err == nil {
					s.log.Info("joined the cluster", "node", self.Name)
					return
				}
				if !errors.Is(err, control.ErrUnavailable) {
					// ErrExists: this node's lease from before a crash,
					// or a live node of the same name; keep trying.
					s.log.Warn("joining the cluster", "node", self.Name, "err", err)
				}
			}
		}()
	case err != nil:
		return fmt.Errorf("joining the cluster as %s: %w", self.Name, err)
	}
	cancel := e.WatchMembers(func(members []control.Member) {
		if s.owners != nil {
			// Before the server list changes: clients that follow the
			// list reach nodes that already agree on who owns what.
			s.owners.Set(ownerNodes(members), self.Name)
		}
		members = withSelf(members, self)
		s.tenants.SetNodes(len(members))
		s.setServers(serverList(members))
	})
	var once sync.Once
	s.leave = func() {
		once.Do(func() {
			close(stop)
			joined.Wait()
			e.Leave()
		})
	}
	s.onStop(func() {
		cancel()
		s.leave()
	})
	return nil
}

// withSelf is the member list in name order with this node in it: a
// list without it (its join not seen yet, or etcd away since before it
// joined) misses a node that serves, which holds its share and must be
// in the server list.
func withSelf(members []control.Member, self control.Member) []control.Member {
	members = slices.Clone(members)
	if !slices.ContainsFunc(members, func(m control.Member) bool { return m.Name == self.Name }) {
		members = append(members, self)
	}
	slices.SortFunc(members, func(a, b control.Member) int { return strings.Compare(a.Name, b.Name) })
	return members
}

// routeConfig is the memcache server's routing with --route server: the
// key owners, as of the members last seen, which joinCluster's member
// watch then keeps in step; the cluster secret the nodes present to each
// other; --forward-timeout. It is nil with --route client and without
// --etcd: every request is served here.
func (s *serving) routeConfig() *server.RouteConfig {
	c := s.cfg
	if s.etcd == nil || c.route != routeServer {
		return nil
	}
	s.owners = new(tenancy.Owners)
	s.owners.Set(ownerNodes(s.etcd.Members()), c.node)
	return &server.RouteConfig{Owners: s.owners, Secret: s.etcd.Secret, Timeout: c.forwardTimeout}
}

// ownerNodes is the members as key owners, in name order: each named by
// its --node name, which seeds its share of the keys, and reached at its
// --advertise address, the memcache port its peers forward to.
//
// Unlike the shares and the server list (withSelf), the owners are the
// members exactly as etcd lists them, without adding this node: a key
// must have the same owner on every node, and the others do not count
// this one before its join is seen, nor once it has left on SIGTERM. So
// until then, and from then on, it owns nothing and forwards every key to
// the owners the others agree on. With no members at all (etcd never
// seen), Owners has no nodes and this node serves every key itself.
func ownerNodes(members []control.Member) []tenancy.Node {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b control.Member) int { return strings.Compare(a.Name, b.Name) })
	nodes := make([]tenancy.Node, 0, len(members))
	for _, m := range members {
		nodes = append(nodes, tenancy.Node{Name: m.Name, Addr: m.Advertise})
	}
	return nodes
}

// serverList is the cluster's server list: the members' memcache
// addresses in the order given (name order), comma-separated, as
// MEMCACHIER_SERVERS takes them.
func serverList(members []control.Member) string {
	addrs := make([]string, 0, len(members))
	for _, m := range members {
		addrs = append(addrs, m.Advertise)
	}
	return strings.Join(addrs, ",")
}

// handOver, on a graceful stop with --route server, sends this node's
// items to the nodes that own them once it is gone, within ctx (the
// --stop-timeout), so that a rolling restart costs no misses. It runs
// after the node has left the member list: the others already route its
// keys to their new owners, and this node forwards every key meanwhile.
func (s *serving) handOver(ctx context.Context) {
	if s.owners == nil || s.etcd == nil {
		return
	}
	var rest []control.Member
	for _, m := range s.etcd.Members() {
		if m.Name != s.cfg.node {
			rest = append(rest, m)
		}
	}
	if len(rest) == 0 {
		return // the last node: nobody to hand over to
	}
	after := new(tenancy.Owners)
	after.Set(ownerNodes(rest), s.cfg.node)
	s.owners.Set(ownerNodes(rest), s.cfg.node)
	start := time.Now()
	res, err := s.srv.HandOver(ctx, after)
	log := s.log.Info
	if err != nil || res.Failed > 0 {
		log = s.log.Warn
	}
	log("handed items over to their new owners", "sent", res.Sent, "stored", res.Stored,
		"already_there", res.Present, "failed", res.Failed, "took", time.Since(start).Round(time.Millisecond), "err", err)
}
