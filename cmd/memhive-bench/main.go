// Command memhive-bench is memhive's load generator and its side-by-side
// runner against memcached.
//
//	memhive-bench run --addr 127.0.0.1:11211 [flags]   one load, JSON result on stdout
//	memhive-bench compare [--write BENCHMARKS.md]       the targets' workloads, memhive vs memcached
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"time"

	"github.com/memhive/memhive/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: memhive-bench run|compare [flags]  (-h for the flags)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = run(ctx, os.Args[2:])
	case "compare":
		err = compare(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want run or compare", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "memhive-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c bench.Config
	var user, pass string
	var prefill bool
	fs := flag.NewFlagSet("memhive-bench run", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:11211", "server address")
	fs.StringVar(&c.Protocol, "protocol", "text", "text, binary or meta")
	fs.BoolVar(&c.TLS, "tls", false, "connect with TLS (the server's certificate is not verified)")
	fs.StringVar(&user, "username", "", "log every connection in (binary: SASL PLAIN; text: MemCachier's set login)")
	fs.StringVar(&pass, "password", "", "password for --username")
	fs.IntVar(&c.Conns, "connections", 50, "connections")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "requests in flight per connection")
	ratio := fs.String("ratio", "1:10", "sets:gets")
	fs.IntVar(&c.Keys, "keys", 100000, "key space size")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "key:", "key prefix")
	fs.StringVar(&c.Distribution, "distribution", "uniform", "uniform, zipf or sequential")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.1, "Zipf exponent (> 1)")
	fs.IntVar(&c.ValueMin, "value-min", 100, "smallest value in bytes")
	fs.IntVar(&c.ValueMax, "value-max", 100, "largest value in bytes")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to run (ignored with --requests)")
	fs.Int64Var(&c.Requests, "requests", 0, "stop after this many requests")
	fs.BoolVar(&prefill, "prefill", false, "store every key once before measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := fmt.Sscanf(*ratio, "%d:%d", &c.SetRatio, &c.GetRatio); err != nil {
		return fmt.Errorf("--ratio %q: want SETS:GETS", *ratio)
	}
	if c.Requests > 0 {
		c.Duration = 0
	}
	if user != "" {
		c.Logins = []bench.Login{{Username: user, Password: pass}}
	}
	if prefill {
		if err := bench.Prefill(ctx, c); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	c.Progress = os.Stderr
	r, err := bench.Run(ctx, c)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func compare(ctx context.Context, args []string) error {
	c := bench.CompareConfig{Log: os.Stderr}
	fs := flag.NewFlagSet("memhive-bench compare", flag.ContinueOnError)
	fs.StringVar(&c.Memhive, "memhive", "bin/memhive", "memhive binary")
	fs.StringVar(&c.Memcached, "memcached", "/usr/bin/memcached", "memcached binary")
	fs.IntVar(&c.MemoryMiB, "memory", 1024, "item memory of both servers, MiB")
	fs.IntVar(&c.Threads, "threads", 2, "threads of both servers")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds, each measuring memhive then memcached")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "length of each measurement")
	only := fs.String("only", "", "comma-separated workload ids (default: all)")
	write := fs.String("write", "", "rewrite the table between the bench markers of this Markdown file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *only != "" {
		c.Only = strings.Split(*only, ",")
	}
	start := time.Now()
	rows, err := bench.Compare(ctx, c)
	if err != nil {
		return err
	}
	table := bench.Table(rows)
	if len(c.Only) == 0 || contains(c.Only, "T8") {
		row, err := goBench()
		if err != nil {
			return fmt.Errorf("T8: %w", err)
		}
		table += row
	}
	fmt.Print(table)
	if *write == "" {
		return nil
	}
	cmdline := "memhive-bench compare " + strings.Join(args, " ")
	section := fmt.Sprintf("Measured %s on this machine (%s) in %s: memhive %s and Debian's memcached, %d MiB and %d threads each, %d rounds of %v, alternating.\n\nCommand: `make bench` (`%s`).\n\n%s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), time.Since(start).Round(time.Second), c.Memhive, c.MemoryMiB, c.Threads, c.Rounds, c.Duration, strings.TrimSpace(cmdline), table)
	return bench.RewriteSection(*write, section)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// goBench is T8: the hot-path micro-benchmarks' allocations, as a table row.
func goBench() (string, error) {
	cmd := exec.Command("go", "test", "./codec", "./engine", "./server", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "200ms")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	n, worst, worstName := 0, 0, ""
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") || f[len(f)-1] != "allocs/op" {
			continue
		}
		var allocs int
		fmt.Sscan(f[len(f)-2], &allocs)
		n++
		if allocs > worst || worstName == "" {
			worst, worstName = allocs, f[0]
		}
	}
	if n == 0 {
		return "", fmt.Errorf("no benchmark results in:\n%s", out)
	}
	return fmt.Sprintf("| T8 | `go test ./codec ./engine ./server -bench . -benchmem`: %d benchmarks | most allocs/op: %d (%s) | | | | | | 0 allocs/op |\n", n, worst, worstName), nil
}

func machine() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	model, cores := "", 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") && model == "" {
			model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
		}
		if strings.HasPrefix(line, "processor") {
			cores++
		}
	}
	return fmt.Sprintf("%d × %s", cores, model)
}
