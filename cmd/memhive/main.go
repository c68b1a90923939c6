// Command memhive is the memhive server and its command-line tools.
//
//	memhive serve [flags]   run the memcache server (the default command)
//	memhive cache ...       manage caches
//	memhive cred ...        manage credentials
//	memhive env CACHE       MEMCACHIER_* lines for eval
//	memhive version         print the version
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/internal/atomicfile"
	"github.com/memhive/memhive/server"
	"github.com/memhive/memhive/tenancy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the process's exit code: 0,
// 1 when the command failed, 2 when the command line is wrong (or serve
// could not start).
func run(args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		printCommands(errOut)
		return 2
	}
	if isHelpFlag(args[0]) {
		printCommands(out)
		return 0
	}
	cmd := "serve"
	if !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" {
		if len(args) == 0 {
			printCommands(out)
			return 0
		}
		// "memhive help serve" is "memhive serve --help".
		cmd, args = args[0], []string{"--help"}
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, out, errOut)
	case "cache":
		err = runCache(args, out, errOut)
	case "cred":
		err = runCred(args, out, errOut)
	case "env":
		err = runEnv(args, out, errOut)
	case "version":
		if wantsHelp(args) {
			fmt.Fprintln(out, "usage: memhive version\n\nPrints the version of this binary.")
			return 0
		}
		fmt.Fprintln(out, "memhive", server.Version)
	default:
		fmt.Fprintf(errOut, "memhive: unknown command %q\n\n", cmd)
		printCommands(errOut)
		return 2
	}
	if err != nil {
		var usage usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			if wantsHelp(args) {
				return 0 // asked for, and printed on out
			}
			return 2
		case errors.As(err, &usage):
			fmt.Fprintln(errOut, usage.msg)
			return 2
		}
		fmt.Fprintln(errOut, "memhive:", err)
		if cmd == "serve" {
			return 2
		}
		return 1
	}
	return 0
}

// serveConfig is what `memhive serve` is told on its command line.
type serveConfig struct {
	listen       string
	port         int
	http         string
	memoryMiB    int64
	threads      int
	maxConns     int
	maxItemSize  string
	auth         string
	authTimeout  time.Duration
	adminToken   string
	overcommit   bool
	devIdle      time.Duration
	historyEvery time.Duration
	historyKeep  time.Duration
	metricsOpen  bool
	data         string
	verbosity    int
	growthFactor float64
	crawlEvery   time.Duration
	memoryFile   string

	idleTimeout    time.Duration
	authFailLimit  int
	authFailWindow time.Duration
	tlsListen      string
	tlsCert        string
	tlsKey         string
	tlsCA          string
	logLevel       string
	logFormat      string
	stopTimeout    time.Duration

	// The cluster (see cluster.go): with etcd set, caches and credentials
	// live in etcd and this process is the node named node, reached by
	// clients at advertise. etcdEndpoints is etcd split at its commas.
	etcd          string
	etcdEndpoints []string
	etcdPrefix    string
	etcdCA        string
	etcdCert      string
	etcdKey       string
	node          string
	advertise     string
	// route is --route: "server" forwards each request whose key another
	// node owns to that node (the cluster default), "client" serves what
	// arrives (the only mode of a single node). forwardTimeout bounds each
	// forwarded request's wait for its owner.
	route          string
	forwardTimeout time.Duration
}

func parseServeFlags(args []string, out, errOut io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("memhive serve", flag.ContinueOnError)
	helpTo(fs, args, out, errOut)
	setUsage(fs, "usage: memhive serve [flags]\n\n"+
		"Serves memcached's text, meta and binary protocols on --listen, and the dashboard,\n"+
		"analytics API, admin API and /metrics on --http. On an empty --data it creates the\n"+
		"cache \"default\" and prints its credentials. One-letter flags are memcached's.\n\n"+
		"With --etcd it is one node of a cluster: caches and credentials live in etcd, each\n"+
		"cache's limit is split over the live nodes, and the server list is every live\n"+
		"node's --advertise address in --node name order. With --route server (the default\n"+
		"there) any node serves any key, forwarding it to the node that owns it, so clients\n"+
		"may hash keys however they like, or use one node; --route client serves what arrives.")
	str := func(p *string, long, short, def, usage string) {
		fs.StringVar(p, long, def, usage)
		if short != "" {
			fs.StringVar(p, short, def, "same as --"+long)
		}
	}
	integer := func(p *int, long, short string, def int, usage string) {
		fs.IntVar(p, long, def, usage)
		if short != "" {
			fs.IntVar(p, short, def, "same as --"+long)
		}
	}
	str(&c.listen, "listen", "l", "127.0.0.1:11211", "address to listen on (host:port, or a host with -p)")
	fs.IntVar(&c.port, "p", 0, "TCP port (memcached's -p); overrides the port in --listen")
	str(&c.http, "http", "", "127.0.0.1:11280", `address of the admin API and dashboard ("off": none)`)
	fs.Int64Var(&c.memoryMiB, "memory", 1024, "item memory in MiB for the whole process")
	fs.Int64Var(&c.memoryMiB, "m", 1024, "same as --memory")
	integer(&c.threads, "threads", "t", 0, "event loops (0: one per core)")
	integer(&c.maxConns, "max-conns", "c", 1024, "maximum simultaneous connections")
	str(&c.maxItemSize, "max-item-size", "I", "1m", "the first key+value size refused: key+value must be less (bytes, or with k/m suffix)")
	str(&c.auth, "auth", "", "sasl", "authentication: sasl (credentials per cache), or none (local mode: one cache named default)")
	fs.DurationVar(&c.authTimeout, "auth-timeout", 5*time.Second, "close connections that have not authenticated by then")
	// Read from the environment after parsing, not as the flag's default,
	// which --help would print.
	str(&c.adminToken, "admin-token", "", "",
		"bearer token of the admin API (default $MEMHIVE_ADMIN_TOKEN, else generated into DATA/admin.token)")
	fs.BoolVar(&c.overcommit, "overcommit", false, "allow caches' limits to add up to more than --memory")
	fs.DurationVar(&c.devIdle, "dev-idle", 720*time.Hour, "disable dev caches with no command for this long (0: never)")
	fs.DurationVar(&c.historyEvery, "history-interval", time.Minute, "how often every cache's stats are sampled for the history graphs")
	fs.DurationVar(&c.historyKeep, "history-retention", 7*24*time.Hour, "how long stats samples are kept")
	fs.BoolVar(&c.metricsOpen, "metrics-public", false, "serve /metrics without the admin token")
	str(&c.data, "data", "", "./data", "directory for the control-plane store")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 0, "close connections with no request for this long (memcached's -o idle_timeout; 0: never)")
	fs.IntVar(&c.authFailLimit, "auth-fail-limit", 20, "failed logins a source address may make per --auth-fail-window before its logins are refused (0: no limit)")
	fs.DurationVar(&c.authFailWindow, "auth-fail-window", time.Minute, "the window of --auth-fail-limit")
	fs.StringVar(&c.tlsListen, "tls-listen", "", "address to serve TLS connections on (host:port; needs --tls-cert and --tls-key)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate chain for --tls-listen (reloaded on SIGHUP)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert (reloaded on SIGHUP)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM CA certificates: TLS clients must present a certificate they signed")
	fs.StringVar(&c.logLevel, "log-level", "info", "least severe log level written: debug, info, warn or error (-v means debug)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text (key=value) or json")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", 5*time.Second, "on SIGTERM or SIGINT, how long connections get to receive their replies before the process exits")
	fs.IntVar(&c.verbosity, "v", 0, "verbosity")
	fs.Float64Var(&c.growthFactor, "f", 1.25, "slab chunk-size growth factor")
	fs.DurationVar(&c.crawlEvery, "crawl-interval", 10*time.Second,
		"how often the crawler frees expired and flushed items (0: never, as memcached -o no_lru_crawler: a command that meets one, or an eviction, frees it)")
	fs.StringVar(&c.memoryFile, "memory-file", "",
		"back the item memory with this file (on /dev/shm, say): a graceful stop (SIGTERM, SIGINT, SIGUSR1) keeps every cache's items for the next start with the same settings (memcached's -e)")
	registerClusterFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.port != 0 {
		host := c.listen
		if h, _, err := net.SplitHostPort(c.listen); err == nil {
			host = h
		}
		c.listen = net.JoinHostPort(host, strconv.Itoa(c.port))
	} else if _, _, err := net.SplitHostPort(c.listen); err != nil {
		c.listen = net.JoinHostPort(c.listen, "11211")
	}
	switch c.auth {
	case "none", "sasl":
	default:
		return c, fmt.Errorf("--auth %q: want sasl or none", c.auth)
	}
	if c.memoryMiB <= 0 {
		return c, fmt.Errorf("--memory %d: must be positive", c.memoryMiB)
	}
	if c.authTimeout <= 0 {
		return c, fmt.Errorf("--auth-timeout %v: must be positive", c.authTimeout)
	}
	if c.historyEvery <= 0 || c.historyKeep <= 0 {
		return c, errors.New("--history-interval and --history-retention must be positive")
	}
	if c.crawlEvery < 0 {
		return c, fmt.Errorf("--crawl-interval %v: must not be negative", c.crawlEvery)
	}
	if c.idleTimeout < 0 || c.authFailLimit < 0 || c.authFailWindow <= 0 || c.stopTimeout <= 0 {
		return c, errors.New("--idle-timeout and --auth-fail-limit must not be negative; --auth-fail-window and --stop-timeout must be positive")
	}
	if c.tlsListen != "" && (c.tlsCert == "" || c.tlsKey == "") {
		return c, errors.New("--tls-listen needs --tls-cert and --tls-key")
	}
	if c.tlsListen == "" && (c.tlsCert != "" || c.tlsKey != "" || c.tlsCA != "") {
		return c, errors.New("--tls-cert, --tls-key and --tls-ca need --tls-listen")
	}
	if _, err := logLevel(c.logLevel, c.verbosity); err != nil {
		return c, err
	}
	switch c.logFormat {
	case "text", "json":
	default:
		return c, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	if c.memoryFile != "" && c.etcd != "" {
		// While a node is away its keys get new owners and new values:
		// the items it kept would come back stale.
		return c, errors.New("--memory-file is for a single node: a cluster node's items move to other nodes while it is away")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkClusterFlags(&c, set); err != nil {
		return c, err
	}
	return c, nil
}

// parseSize reads sizes like memcached's -I: bytes, or a k or m suffix.
func parseSize(s string) (int, error) {
	mult := 1
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, strings.TrimSuffix(t, "m")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with k or m", s)
	}
	return n * mult, nil
}

// serveState is what a running server leaves in --data for the CLI:
// where to reach its admin API while it holds the store, and the server
// list clients use (in a cluster, rewritten as nodes come and go).
type serveState struct {
	HTTP    string `json:"http"`
	Servers string `json:"servers"`
	Pid     int    `json:"pid"`
	// Node is the node's --node name in a cluster, else empty.
	Node string `json:"node,omitempty"`
}

const (
	storeFile      = "control.db"
	serveStateFile = "serve.json"
	adminTokenFile = "admin.token"
	// clusterFile marks a --data that belongs to a cluster node; it stays
	// after the node stops, so that the CLI never opens (and so creates)
	// an embedded store there while the caches live in etcd.
	clusterFile = "cluster.json"
)

// serve runs `memhive serve`: it starts the server in the steps listed
// below, in that order, then waits for signals. Each step that starts
// something pushes how to stop it (onStop), and shutdown runs those last
// first when serve returns, after a failed step too: shutdown is start in
// reverse, so nothing is stopped while a part started after it, which
// may use it, still runs. On SIGTERM or SIGINT waitForSignals first
// stops the memcache listeners, which started last, letting connections
// finish (a cluster node first leaves the member list, so that clients
// stop picking it before it stops answering); then go the serve.json
// file, the cluster membership, the sampler, the HTTP server, every
// cache, the store (which syncs it), the item memory and the CPU profile.
func serve(args []string, out, errOut io.Writer) error {
	c, err := parseServeFlags(args, out, errOut)
	if err != nil {
		return err
	}
	s := &serving{cfg: c, out: out, errOut: errOut}
	defer s.shutdown()
	steps := []func() error{
		s.prepare,        // --max-item-size, --data, the logger
		s.startProfile,   // MEMHIVE_CPUPROFILE
		s.newMemory,      // the item memory every cache shares
		s.openStore,      // the control plane; the default cache on a first start
		s.newTenants,     // the caches served, following the store
		s.newServer,      // the memcache server, not yet listening; its TLS files
		s.startHTTP,      // --http: admin API, analytics API, /metrics, dashboard
		s.startSampler,   // the history graphs' samples
		s.startListeners, // memcache on --listen, and TLS on --tls-listen
		s.joinCluster,    // --etcd: this node in the member list; following it
		s.writeState,     // DATA/serve.json, for the CLI
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	s.announce()
	return s.waitForSignals()
}

// serving is `memhive serve` while it starts, runs and stops: its
// configuration and what its steps made, each field set by the step that
// makes it. Only serve's goroutine uses it.
type serving struct {
	cfg         serveConfig
	out, errOut io.Writer
	stops       []func() // how to undo each step that ran, in start order

	log         *slog.Logger
	maxItem     int
	memoryBytes int64
	mem         *engine.Memory
	store       control.Store
	created     *control.Cache // the default cache, when openStore made it
	password    newCredential  // its primary credential
	tenants     *tenancy.Tenants
	certs       *server.Certificates // nil without --tls-listen
	srv         *server.Server
	httpSrv     *analytics.HTTPServer // nil with --http off
	runErr      chan error            // srv.Run's end

	// etcd is the store as a cluster, nil without --etcd (openStore);
	// leave takes this node out of the member list, once (joinCluster).
	etcd  *control.Etcd
	leave func()
	// owners says which node owns each key with --route server, nil
	// otherwise (routeConfig); the member watch keeps it in step
	// (joinCluster). Safe for concurrent use.
	owners *tenancy.Owners
	// list is the server list clients use (see servers); stateOn says
	// serve.json exists and follows it. Both are guarded by listMu: the
	// cluster's member watch sets them from its own goroutine.
	listMu  sync.Mutex
	list    string
	stateOn bool
}

// onStop records how to undo the step that just succeeded.
func (s *serving) onStop(stop func()) { s.stops = append(s.stops, stop) }

// shutdown undoes the steps that ran, the last first.
func (s *serving) shutdown() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// prepare reads --max-item-size, makes the --data directory and the
// logger every later step writes to.
func (s *serving) prepare() error {
	c := s.cfg
	var err error
	if s.maxItem, err = parseSize(c.maxItemSize); err != nil {
		return fmt.Errorf("--max-item-size: %w", err)
	}
	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	level, _ := logLevel(c.logLevel, c.verbosity)
	var handler slog.Handler = slog.NewTextHandler(s.errOut, &slog.HandlerOptions{Level: level})
	if c.logFormat == "json" {
		handler = slog.NewJSONHandler(s.errOut, &slog.HandlerOptions{Level: level})
	}
	s.log = slog.New(handler)
	s.memoryBytes = c.memoryMiB << 20
	return nil
}

// startProfile profiles the CPU into $MEMHIVE_CPUPROFILE, if set, for
// profiling under a real load (BENCHMARKS.md says how): the profile
// covers the whole run and is written when it stops, last of all.
func (s *serving) startProfile() error {
	path := os.Getenv("MEMHIVE_CPUPROFILE")
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("MEMHIVE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("MEMHIVE_CPUPROFILE: %w", err)
	}
	s.onStop(func() { pprof.StopCPUProfile(); f.Close() })
	return nil
}

// newMemory makes the item memory (--memory) that every cache's engine
// takes its pages from.
func (s *serving) newMemory() error {
	c := s.cfg
	mem, err := engine.NewMemory(engine.Config{
		MemoryBytes:  s.memoryBytes,
		MaxItemSize:  s.maxItem,
		GrowthFactor: c.growthFactor,
		// engine.Config reads 0 as its default; off is negative there.
		CrawlInterval: cmp.Or(c.crawlEvery, -1),
		MemoryFile:    c.memoryFile,
	})
	if err != nil {
		return err
	}
	if r := mem.Restored(); c.memoryFile != "" && r.Reason != "" {
		s.log.Info("warm restart: starting empty", "reason", r.Reason, "memory_file", c.memoryFile)
	}
	s.mem = mem
	s.onStop(func() { mem.Close() })
	return nil
}

// openStore opens the control-plane store in --data, which only one
// memhive serve may hold, and on a first start (or in local mode) creates
// the cache "default".
func (s *serving) openStore() error {
	c := s.cfg
	// A cache of 1 MiB gets one slab page, slightly more than 1 MiB.
	policy := control.Policy{MemoryBytes: s.memoryBytes, MinLimitBytes: 1 << 20}
	if c.overcommit {
		policy.MemoryBytes = 0
	}
	if c.etcd != "" {
		return s.openEtcd(policy)
	}
	// A --data that served a cluster node before now holds the embedded
	// store: the CLI may open it directly again.
	os.Remove(filepath.Join(c.data, clusterFile))
	store, err := control.Open(filepath.Join(c.data, storeFile), policy, time.Second)
	if errors.Is(err, control.ErrLocked) {
		return fmt.Errorf("--data %s is in use by another memhive serve", c.data)
	}
	if err != nil {
		return fmt.Errorf("opening the control-plane store: %w", err)
	}
	s.store = store
	s.onStop(func() { store.Close() })
	s.created, s.password, err = ensureDefaultCache(store, s.memoryBytes, policy.MinLimitBytes, c.auth == "none")
	return err
}

// newTenants makes the caches the store lists, each an engine in the
// item memory, and keeps them in step with the store's changes.
func (s *serving) newTenants() error {
	c := s.cfg
	tenants, err := tenancy.New(tenancy.Config{
		Local:      c.auth == "none",
		LocalLimit: s.memoryBytes,
		DevIdle:    c.devIdle,
		Logger:     s.log,
	}, s.mem, s.store)
	if err != nil {
		return err
	}
	s.tenants = tenants
	s.onStop(tenants.Close)
	if c.memoryFile != "" {
		s.keepItems()
	}
	if s.etcd != nil {
		// Hold the shares of the cluster as last seen from the start,
		// rather than whole limits until the node joins (joinCluster).
		tenants.SetNodes(len(withSelf(s.etcd.Members(), s.selfMember())))
	}
	return nil
}

// keepItems finishes a warm restart, once every cache the store lists
// has its engine: the items of caches deleted meanwhile are dropped. On
// the way out, before the caches close, it has the memory keep their
// items for the next start.
func (s *serving) keepItems() {
	dropped := s.mem.DropUnrestored()
	if r := s.mem.Restored(); r.Reason == "" {
		s.log.Info("warm restart: items restored", "caches", r.Caches, "items", r.Items,
			"took", r.Took.Round(time.Millisecond).String(), "dropped_deleted_caches", len(dropped), "memory_file", s.cfg.memoryFile)
	}
	s.onStop(func() {
		start := time.Now()
		if err := s.mem.Persist(); err != nil {
			s.log.Error("warm restart: the items could not be kept; the next start will be empty", "err", err)
			return
		}
		s.log.Info("warm restart: items kept for the next start", "memory_file", s.cfg.memoryFile, "took", time.Since(start).Round(time.Millisecond).String())
	})
}

// newServer makes the memcache server, reading --tls-cert, --tls-key and
// --tls-ca with --tls-listen, but does not listen yet (startListeners).
// It comes before startHTTP: the server hooks into the caches to close
// the connections a credential change cuts off, and the admin API can
// make such changes as soon as it serves.
func (s *serving) newServer() error {
	c := s.cfg
	var tlsConfig *tls.Config
	if c.tlsListen != "" {
		var err error
		if s.certs, err = server.LoadCertificates(c.tlsCert, c.tlsKey); err != nil {
			return err
		}
		if tlsConfig, err = s.certs.TLSConfig(c.tlsCA); err != nil {
			return err
		}
	}
	s.srv = server.New(server.Config{
		Listen:         c.listen,
		Threads:        c.threads,
		MaxConns:       c.maxConns,
		Verbosity:      c.verbosity,
		AuthTimeout:    c.authTimeout,
		IdleTimeout:    c.idleTimeout,
		AuthFailLimit:  c.authFailLimit,
		AuthFailWindow: c.authFailWindow,
		TLSListen:      c.tlsListen,
		TLS:            tlsConfig,
		Route:          s.routeConfig(),
		Logger:         s.log,
	}, s.tenants)
	return nil
}

// startHTTP serves the admin API, the analytics API, /metrics and the
// dashboard on --http, unless it is "off".
func (s *serving) startHTTP() error {
	c := s.cfg
	if c.http == "off" || c.http == "" {
		return nil
	}
	token, err := adminToken(c)
	if err != nil {
		return err
	}
	// In a cluster the APIs answer for every node (stats, history and
	// flush fan out to the members), `servers` is the live list, and
	// /metrics names this node. The interface stays nil without --etcd: a
	// nil *control.Etcd in it would not be.
	var cluster control.Cluster
	var self control.Member
	if s.etcd != nil {
		cluster, self = s.etcd, s.selfMember()
	}
	admin := analytics.NewAdmin(analytics.AdminConfig{Store: s.store, Token: token, Servers: s.servers(), Cluster: cluster, Logger: s.log})
	api := analytics.NewAPI(analytics.APIConfig{Store: s.store, Source: s.tenants, Server: c.advertise, Cluster: cluster, Self: self,
		HistoryWindow: c.historyKeep, Logger: s.log})
	metrics := &analytics.Metrics{Store: s.store, Source: s.tenants, Version: server.Version, Token: token, Public: c.metricsOpen, Node: self.Name}
	var dashboard analytics.Dashboard
	httpSrv, err := analytics.ListenAndServe(c.http, func(ctx *fasthttp.RequestCtx) {
		if !admin.Handle(ctx) && !api.Handle(ctx) && !metrics.Handle(ctx) && !dashboard.Handle(ctx) {
			ctx.Error("Not found", fasthttp.StatusNotFound)
		}
	})
	if err != nil {
		return fmt.Errorf("--http %s: %w", c.http, err)
	}
	s.httpSrv = httpSrv
	s.onStop(func() { httpSrv.Shutdown() })
	return nil
}

// startSampler samples every cache's stats each --history-interval for
// the history graphs, keeping --history-retention of them.
func (s *serving) startSampler() error {
	c := s.cfg
	sampler := analytics.StartSampler(s.store, s.tenants, c.advertise, c.historyEvery, c.historyKeep, s.log)
	s.onStop(sampler.Stop)
	return nil
}

// startListeners serves memcache on --listen, and TLS on --tls-listen,
// and returns once they accept connections. They start last, so that a
// client finds everything else running, and stop first (waitForSignals).
func (s *serving) startListeners() error {
	s.runErr = make(chan error, 1)
	go func() { s.runErr <- s.srv.Run() }()
	select {
	case err := <-s.runErr:
		return fmt.Errorf("listening on %s: %w", s.cfg.listen, err)
	case <-s.srv.Ready():
		return nil
	}
}

// writeState leaves DATA/serve.json, where the CLI finds the admin API
// while this process holds the store, and removes it at shutdown. Not
// writing it only warns: the server runs; the CLI cannot reach it.
func (s *serving) writeState() error {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	s.stateOn = true
	s.writeStateLocked()
	s.onStop(func() {
		s.listMu.Lock()
		defer s.listMu.Unlock()
		s.stateOn = false
		os.Remove(filepath.Join(s.cfg.data, serveStateFile))
	})
	return nil
}

// writeStateLocked writes serve.json with the server list as it is now;
// s.listMu is held.
func (s *serving) writeStateLocked() {
	state := serveState{Servers: cmp.Or(s.list, s.cfg.advertise), Pid: os.Getpid()}
	if s.etcd != nil {
		state.Node = s.cfg.node
	}
	if s.httpSrv != nil {
		state.HTTP = s.httpSrv.Addr()
	}
	if err := atomicfile.WriteJSON(filepath.Join(s.cfg.data, serveStateFile), state); err != nil {
		s.log.Warn("writing the server's address for the CLI", "err", err)
	}
}

// servers is the server list clients use: --listen on its own, or in a
// cluster the live nodes' --advertise addresses in name order.
func (s *serving) servers() string {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if s.list == "" {
		return s.cfg.advertise
	}
	return s.list
}

// setServers records a new server list and, once serve.json exists,
// rewrites it, so that the CLI prints the list as it is now.
func (s *serving) setServers(list string) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if list == s.list {
		return
	}
	s.list = list
	if s.stateOn {
		s.writeStateLocked()
	}
}

// announce prints where the server listens, the default cache's
// credentials when it was just created, and the dashboard's address.
// Scripts and tests read these lines.
func (s *serving) announce() {
	c, out := s.cfg, s.out
	mode := "sasl"
	if c.auth == "none" {
		mode = `none: every connection uses the cache "default"`
	}
	fmt.Fprintf(out, "memhive %s listening on %s (auth %s, %d MiB)\n", server.Version, c.listen, mode, c.memoryMiB)
	if s.etcd != nil {
		fmt.Fprintf(out, "node %s of the cluster in etcd %s (prefix %s), advertised as %s, --route %s; servers: %s\n",
			c.node, c.etcd, c.etcdPrefix, c.advertise, c.route, s.servers())
	}
	if c.tlsListen != "" {
		fmt.Fprintf(out, "TLS on %s\n", s.srv.TLSAddr())
	}
	if s.created != nil {
		fmt.Fprintf(out, "created cache %q (id %d, %d MiB); its primary credential:\n", s.created.Name, s.created.ID, s.created.LimitBytes>>20)
		printEnv(out, s.servers(), s.password.Username, s.password.Password)
	}
	if s.httpSrv != nil {
		fmt.Fprintf(out, "dashboard: http://%s/\n", s.httpSrv.Addr())
	}
}

// waitForSignals serves until SIGTERM, SIGINT or SIGUSR1 (memcached's
// graceful stop), rereading the TLS certificate on each SIGHUP. On any
// of the first three it stops the memcache
// listeners gracefully: connections get --stop-timeout to receive the
// replies to what they sent. It returns the listeners' error if they
// fail instead.
func (s *serving) waitForSignals() error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP)
	for {
		select {
		case err := <-s.runErr:
			return err
		case got := <-sig:
			if got == syscall.SIGHUP {
				reloadCertificates(s.certs, s.log)
				continue
			}
			s.log.Info("shutting down", "signal", got.String())
		}
		break
	}
	if s.leave != nil {
		s.leave() // out of the server list before the listeners stop
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.stopTimeout)
	defer cancel()
	s.handOver(ctx)
	if err := s.srv.Stop(ctx); err != nil {
		s.log.Warn("stopping server", "err", err)
	}
	return nil
}

// reloadCertificates rereads the TLS certificate on SIGHUP; a bad file
// keeps the current certificate.
func reloadCertificates(certs *server.Certificates, log *slog.Logger) {
	if certs == nil {
		log.Info("SIGHUP: no TLS certificate to reload")
		return
	}
	if err := certs.Reload(); err != nil {
		log.Error("SIGHUP: reloading the TLS certificate; keeping the current one", "err", err)
		return
	}
	log.Info("SIGHUP: TLS certificate reloaded")
}

// logLevel is --log-level, lowered to debug by -v.
func logLevel(name string, verbosity int) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", name)
	}
	if verbosity > 0 {
		l = min(l, slog.LevelDebug)
	}
	return l, nil
}

// newCredential is a credential's username with its one-time plaintext
// password.
type newCredential struct{ Username, Password string }

// ensureDefaultCache creates the cache named "default", with the whole
// memory and a primary credential, when the store holds no cache at all
// (a first start), or in local mode when it is missing. It returns the
// cache and credential it created, if any.
func ensureDefaultCache(store control.Store, memoryBytes, minLimit int64, local bool) (*control.Cache, newCredential, error) {
	caches, err := store.Caches()
	if err != nil {
		return nil, newCredential{}, err
	}
	if len(caches) > 0 {
		if !local {
			return nil, newCredential{}, nil
		}
		if _, err := store.CacheByName(tenancy.DefaultCache); err == nil {
			return nil, newCredential{}, nil
		}
	}
	limit := memoryBytes
	if len(caches) > 0 {
		// Local mode over a store made in SASL mode: the default cache
		// uses the whole memory anyway; record the smallest limit.
		limit = minLimit
	}
	cache, err := store.CreateCache(control.Cache{Name: tenancy.DefaultCache, LimitBytes: limit, Enabled: true})
	if errors.Is(err, control.ErrExists) {
		// Nodes of a cluster starting at once on an empty etcd all try;
		// one creates it, the others find it.
		if _, err := store.CacheByName(tenancy.DefaultCache); err != nil {
			return nil, newCredential{}, fmt.Errorf("reading the default cache another node created: %w", err)
		}
		return nil, newCredential{}, nil
	}
	if err != nil {
		return nil, newCredential{}, fmt.Errorf("creating the default cache: %w", err)
	}
	cred, password, err := store.CreateCredential(cache.ID, control.NewCredential{Caps: control.CapAll, Primary: true})
	if err != nil {
		return nil, newCredential{}, fmt.Errorf("creating the default cache's credential: %w", err)
	}
	return &cache, newCredential{cred.Username, password}, nil
}

// adminToken is the admin API's bearer token: --admin-token (or
// $MEMHIVE_ADMIN_TOKEN), else the one kept in DATA/admin.token, else a new
// one written there (readable by the owner only) for the CLI to use.
func adminToken(c serveConfig) (string, error) {
	if c.adminToken != "" {
		return c.adminToken, nil
	}
	if t := os.Getenv("MEMHIVE_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	path := filepath.Join(c.data, adminTokenFile)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	token := control.NewPassword()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the admin token: %w", err)
	}
	return token, nil
}
