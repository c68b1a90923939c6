// Command memhive is the memhive server and its command-line tools.
//
//	memhive serve [flags]   run the memcache server (the default command)
//	memhive version         print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/server"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, os.Stdout, os.Stderr)
	case "version":
		fmt.Println("memhive", server.Version)
	case "help":
		fmt.Println("usage: memhive serve [flags]   (memhive serve -h lists the flags)")
	default:
		err = fmt.Errorf("unknown command %q (try: memhive serve -h)", cmd)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "memhive:", err)
		}
		os.Exit(2)
	}
}

// serveConfig is what `memhive serve` is told on its command line.
type serveConfig struct {
	listen       string
	port         int
	memoryMiB    int64
	threads      int
	maxConns     int
	maxItemSize  string
	auth         string
	data         string
	verbosity    int
	growthFactor float64
}

func parseServeFlags(args []string, errOut io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("memhive serve", flag.ContinueOnError)
	fs.SetOutput(errOut)
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
	fs.Int64Var(&c.memoryMiB, "memory", 1024, "item memory in MiB for the whole process")
	fs.Int64Var(&c.memoryMiB, "m", 1024, "same as --memory")
	integer(&c.threads, "threads", "t", 0, "event loops (0: one per core)")
	integer(&c.maxConns, "max-conns", "c", 1024, "maximum simultaneous connections")
	str(&c.maxItemSize, "max-item-size", "I", "1m", "largest key+value (bytes, or with k/m suffix)")
	str(&c.auth, "auth", "", "none", "authentication: none (local mode, one cache named default)")
	str(&c.data, "data", "", "./data", "directory for the control-plane store")
	fs.IntVar(&c.verbosity, "v", 0, "verbosity")
	fs.Float64Var(&c.growthFactor, "f", 1.25, "slab chunk-size growth factor")
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
	case "none":
	case "sasl":
		return c, errors.New("--auth sasl is not available in this build yet; use --auth none")
	default:
		return c, fmt.Errorf("--auth %q: want none or sasl", c.auth)
	}
	if c.memoryMiB <= 0 {
		return c, fmt.Errorf("--memory %d: must be positive", c.memoryMiB)
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

func serve(args []string, out, errOut io.Writer) error {
	c, err := parseServeFlags(args, errOut)
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
	level := slog.LevelInfo
	if c.verbosity > 0 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))

	eng, err := engine.New(engine.Config{
		MemoryBytes:  c.memoryMiB << 20,
		MaxItemSize:  maxItem,
		GrowthFactor: c.growthFactor,
	})
	if err != nil {
		return err
	}
	defer eng.Close()

	srv := server.New(server.Config{
		Listen:    c.listen,
		Threads:   c.threads,
		MaxConns:  c.maxConns,
		Verbosity: c.verbosity,
		Logger:    log,
	}, eng)

	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	select {
	case err := <-runErr:
		return fmt.Errorf("listening on %s: %w", c.listen, err)
	case <-srv.Ready():
	}
	fmt.Fprintf(out, "memhive %s listening on %s (auth %s: every connection uses the cache \"default\", %d MiB)\n",
		server.Version, c.listen, c.auth, c.memoryMiB)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
		return nil
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		log.Warn("stopping server", "err", err)
	}
	return nil
}
