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
	"encoding/json"
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
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
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
}

func parseServeFlags(args []string, out, errOut io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("memhive serve", flag.ContinueOnError)
	helpTo(fs, args, out, errOut)
	setUsage(fs, "usage: memhive serve [flags]\n\n"+
		"Serves memcached's text, meta and binary protocols on --listen, and the dashboard,\n"+
		"analytics API, admin API and /metrics on --http. On an empty --data it creates the\n"+
		"cache \"default\" and prints its credentials. One-letter flags are memcached's.")
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
// where to reach its admin API while it holds the store.
type serveState struct {
	HTTP    string `json:"http"`
	Servers string `json:"servers"`
	Pid     int    `json:"pid"`
}

const (
	storeFile      = "control.db"
	serveStateFile = "serve.json"
	adminTokenFile = "admin.token"
)

func serve(args []string, out, errOut io.Writer) error {
	c, err := parseServeFlags(args, out, errOut)
	if err != nil {
		return err
	}
	maxItem, err := parseSize(c.maxItemSize)
	if err != nil {
		return fmt.Errorf("--max-item-size: %w", err)
	}
	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	level, _ := logLevel(c.logLevel, c.verbosity)
	var handler slog.Handler = slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})
	if c.logFormat == "json" {
		handler = slog.NewJSONHandler(errOut, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(handler)
	memoryBytes := c.memoryMiB << 20
	if path := os.Getenv("MEMHIVE_CPUPROFILE"); path != "" {
		// For profiling under a real load (BENCHMARKS.md says how): the
		// profile covers the whole run and is written at shutdown.
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("MEMHIVE_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("MEMHIVE_CPUPROFILE: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	mem, err := engine.NewMemory(engine.Config{
		MemoryBytes:  memoryBytes,
		MaxItemSize:  maxItem,
		GrowthFactor: c.growthFactor,
		// engine.Config reads 0 as its default; off is negative there.
		CrawlInterval: cmp.Or(c.crawlEvery, -1),
	})
	if err != nil {
		return err
	}
	defer mem.Close()

	// A cache of 1 MiB gets one slab page, slightly more than 1 MiB.
	policy := control.Policy{MemoryBytes: memoryBytes, MinLimitBytes: 1 << 20}
	if c.overcommit {
		policy.MemoryBytes = 0
	}
	store, err := control.Open(filepath.Join(c.data, storeFile), policy, time.Second)
	if errors.Is(err, control.ErrLocked) {
		return fmt.Errorf("--data %s is in use by another memhive serve", c.data)
	}
	if err != nil {
		return fmt.Errorf("opening the control-plane store: %w", err)
	}
	defer store.Close()
	created, password, err := ensureDefaultCache(store, memoryBytes, policy.MinLimitBytes, c.auth == "none")
	if err != nil {
		return err
	}

	tenants, err := tenancy.New(tenancy.Config{
		Local:      c.auth == "none",
		LocalLimit: memoryBytes,
		DevIdle:    c.devIdle,
		Logger:     log,
	}, mem, store)
	if err != nil {
		return err
	}
	defer tenants.Close()

	var certs *server.Certificates
	var tlsConfig *tls.Config
	if c.tlsListen != "" {
		if certs, err = server.LoadCertificates(c.tlsCert, c.tlsKey); err != nil {
			return err
		}
		if tlsConfig, err = certs.TLSConfig(c.tlsCA); err != nil {
			return err
		}
	}
	srv := server.New(server.Config{
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
		Logger:         log,
	}, tenants)

	var httpSrv *analytics.HTTPServer
	if c.http != "off" && c.http != "" {
		token, err := adminToken(c)
		if err != nil {
			return err
		}
		admin := analytics.NewAdmin(analytics.AdminConfig{Store: store, Token: token, Servers: c.listen, Logger: log})
		api := analytics.NewAPI(analytics.APIConfig{Store: store, Source: tenants, Server: c.listen, HistoryWindow: c.historyKeep, Logger: log})
		metrics := &analytics.Metrics{Store: store, Source: tenants, Version: server.Version, Token: token, Public: c.metricsOpen}
		var dashboard analytics.Dashboard
		httpSrv, err = analytics.ListenAndServe(c.http, func(ctx *fasthttp.RequestCtx) {
			if !admin.Handle(ctx) && !api.Handle(ctx) && !metrics.Handle(ctx) && !dashboard.Handle(ctx) {
				ctx.Error("Not found", fasthttp.StatusNotFound)
			}
		})
		if err != nil {
			return fmt.Errorf("--http %s: %w", c.http, err)
		}
		defer httpSrv.Shutdown()
	}
	sampler := analytics.StartSampler(store, tenants, c.listen, c.historyEvery, c.historyKeep, log)
	defer sampler.Stop()

	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	select {
	case err := <-runErr:
		return fmt.Errorf("listening on %s: %w", c.listen, err)
	case <-srv.Ready():
	}
	state := serveState{Servers: c.listen, Pid: os.Getpid()}
	if httpSrv != nil {
		state.HTTP = httpSrv.Addr()
	}
	statePath := filepath.Join(c.data, serveStateFile)
	if err := writeJSONFile(statePath, state); err != nil {
		log.Warn("writing the server's address for the CLI", "err", err)
	}
	defer os.Remove(statePath)

	mode := "sasl"
	if c.auth == "none" {
		mode = `none: every connection uses the cache "default"`
	}
	fmt.Fprintf(out, "memhive %s listening on %s (auth %s, %d MiB)\n", server.Version, c.listen, mode, c.memoryMiB)
	if c.tlsListen != "" {
		fmt.Fprintf(out, "TLS on %s\n", srv.TLSAddr())
	}
	if created != nil {
		fmt.Fprintf(out, "created cache %q (id %d, %d MiB); its primary credential:\n", created.Name, created.ID, created.LimitBytes>>20)
		printEnv(out, c.listen, password.Username, password.Password)
	}
	if httpSrv != nil {
		fmt.Fprintf(out, "dashboard: http://%s/\n", httpSrv.Addr())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		select {
		case err := <-runErr:
			return err
		case s := <-sig:
			if s == syscall.SIGHUP {
				reloadCertificates(certs, log)
				continue
			}
			log.Info("shutting down", "signal", s.String())
		}
		break
	}
	// The deferred calls then stop the sampler and the HTTP server, close
	// every cache and close the store, which syncs it.
	ctx, cancel := context.WithTimeout(context.Background(), c.stopTimeout)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		log.Warn("stopping server", "err", err)
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

// writeJSONFile replaces path with v as JSON, atomically.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
