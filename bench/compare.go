package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// CompareConfig is a side-by-side run of memhive against memcached.
type CompareConfig struct {
	Memhive   string        // memhive binary
	Memcached string        // memcached binary
	MemoryMiB int           // item memory of both servers
	Threads   int           // worker threads / event loops of both
	Rounds    int           // A B rounds per workload
	Duration  time.Duration // each measurement
	Only      []string      // workload ids to run (empty: all)
	Log       io.Writer     // progress
}

// Workload is one line of the targets table.
type Workload struct {
	ID, Name string
	Target   string
	Load     Config
	Prefill  int  // keys to store before measuring (0: none)
	SASL     bool // every connection authenticates (binary SASL)
	Idle     int  // idle connections held open while measuring
	TLS      bool // both servers serve TLS with a throwaway certificate
	// MemoryMiB, if set, is both servers' item memory for this workload
	// instead of CompareConfig.MemoryMiB: for workloads sized against a
	// memory (H1, H2) or that need more of it (T4c).
	MemoryMiB int
}

// Workloads are the targets' workloads; Load.Addr and Logins are filled
// in per server.
func Workloads() []Workload {
	t1 := Config{Protocol: "text", Conns: 50, Pipeline: 1, SetRatio: 1, GetRatio: 10, Keys: 100000, ValueMin: 100, ValueMax: 100}
	t2 := t1
	t2.Pipeline = 16
	t2b := t2
	t2b.Protocol = "binary"
	t3 := t1
	t3.Protocol = "binary"
	t9 := t1
	t9.TLS = true
	t10 := t1
	t10.Protocol = "meta"
	t10b := t2
	t10b.Protocol = "meta"
	return []Workload{
		{ID: "T1", Name: "text, 50 conns, pipeline 1, 1:10, 100 B, 100k keys", Target: "ops >= 1.10, p99 <= 1.0", Load: t1, Prefill: 100000},
		{ID: "T2", Name: "T1 with pipeline 16", Target: "ops >= 2.0", Load: t2, Prefill: 100000},
		{ID: "T2b", Name: "binary, pipeline 16, otherwise T1", Target: "ops >= 1.0", Load: t2b, Prefill: 100000},
		{ID: "T3", Name: "binary, every connection SASL-authenticated, otherwise T1", Target: "ops >= 1.10", Load: t3, Prefill: 100000, SASL: true},
		{ID: "T6", Name: "T1 plus 10,000 idle connections", Target: "ops >= 0.9x T1, <= 8 KiB per idle conn", Load: t1, Prefill: 100000, Idle: 10000},
		{ID: "T10", Name: "T1 with meta commands (mg v f, ms T0)", Target: "recorded (meta issue)", Load: t10, Prefill: 100000},
		{ID: "T10b", Name: "T10 with pipeline 16", Target: "recorded (meta issue)", Load: t10b, Prefill: 100000},
		{ID: "T9", Name: "T1 over TLS (memcached -Z; memhive --tls-listen), ECDSA P-256 certificate", Target: "recorded (reliability issue)", Load: t9, Prefill: 100000, TLS: true},
	}
}

// Measurement is one workload's figures on one server.
type Measurement struct {
	Server     string
	Ops        []float64 // ops/s per round
	P99        []float64 // µs per round
	P999       []float64
	IdleKiB    float64 // memory per idle connection, KiB (T6)
	ItemsBytes float64 // RSS per item, bytes (T4, T4b, T4c)
	// HitRatio is get_hits/(get_hits+get_misses) per round, from the
	// server's own counters (H1, H2).
	HitRatio []float64
	Items    int64 // curr_items at the end (H1, H2)
}

// Row is a workload's side-by-side result.
type Row struct {
	Workload Workload
	Memhive  Measurement
	Memc     Measurement
	Note     string
}

const saslUser, saslPass = "bench", "benchpass"

// server starts one of the two servers for a workload.
func (c *CompareConfig) server(name string, w Workload, dir string) (*Proc, []Login, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	mem := fmt.Sprint(c.MemoryMiB)
	if w.MemoryMiB > 0 {
		mem = fmt.Sprint(w.MemoryMiB)
	}
	threads := fmt.Sprint(c.Threads)
	conns := "20000"
	var certFile, keyFile string
	if w.TLS {
		if certFile, keyFile, err = writeThrowawayCert(dir); err != nil {
			return nil, nil, err
		}
	}
	if name == "memcached" {
		argv := []string{c.Memcached, "-l", host, "-p", port, "-U", "0", "-m", mem, "-t", threads, "-c", conns}
		if w.TLS {
			argv = append(argv, "-Z", "-o", "ssl_chain_cert="+certFile+",ssl_key="+keyFile)
		}
		if os.Geteuid() == 0 {
			argv = append(argv, "-u", "root")
		}
		var env []string
		var logins []Login
		if w.SASL {
			conf, err := saslConfig(dir)
			if err != nil {
				return nil, nil, err
			}
			argv = append(argv, "-S")
			env = append(env, "SASL_CONF_PATH="+conf)
			logins = []Login{{saslUser, saslPass}}
		}
		p, err := StartProc(name, addr, argv, env)
		return p, logins, err
	}
	data := filepath.Join(dir, "memhive-data")
	os.RemoveAll(data)
	auth := "none"
	if w.SASL {
		auth = "sasl"
	}
	argv := []string{c.Memhive, "serve", "--listen", addr, "--http", "off", "--data", data, "-m", mem, "-t", threads, "-c", conns, "--auth", auth}
	var tlsAddr string
	if w.TLS {
		if tlsAddr, err = FreeAddr(); err != nil {
			return nil, nil, err
		}
		argv = append(argv, "--tls-listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	}
	p, err := StartProc(name, addr, argv, nil)
	if err == nil && w.TLS {
		// Started (and waited for) on the plain port; measured on TLS.
		p.Addr = tlsAddr
	}
	if err != nil || !w.SASL {
		return p, nil, err
	}
	// The default cache's credential is printed once, at the first start.
	out, _ := os.ReadFile(p.log.Name())
	var l Login
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "MEMCACHIER_USERNAME="); ok {
			l.Username = v
		}
		if v, ok := strings.CutPrefix(line, "MEMCACHIER_PASSWORD="); ok {
			l.Password = v
		}
	}
	if l.Username == "" {
		p.Stop()
		return nil, nil, fmt.Errorf("memhive printed no credential: %s", out)
	}
	return p, []Login{l}, nil
}

// saslConfig makes a Cyrus SASL configuration for memcached -S with one
// PLAIN user, and returns its directory.
func saslConfig(dir string) (string, error) {
	conf := filepath.Join(dir, "sasl")
	os.MkdirAll(conf, 0o700)
	db := filepath.Join(conf, "sasldb2")
	os.Remove(db)
	cmd := exec.Command("saslpasswd2", "-a", "memcached", "-c", "-p", "-f", db, saslUser)
	cmd.Stdin = strings.NewReader(saslPass)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("saslpasswd2 (Debian's sasl2-bin; run tools/install-deps.sh): %v %s", err, out)
	}
	cfg := "mech_list: plain\nsasldb_path: " + db + "\n"
	return conf, os.WriteFile(filepath.Join(conf, "memcached.conf"), []byte(cfg), 0o600)
}

func (c *CompareConfig) logf(format string, a ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", a...)
	}
}

// Compare runs every workload against both servers, alternating them
// round by round, and returns the rows of the table.
func Compare(ctx context.Context, c CompareConfig) ([]Row, error) {
	dir, err := os.MkdirTemp("", "memhive-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var rows []Row
	for _, w := range Workloads() {
		if len(c.Only) > 0 && !contains(c.Only, w.ID) {
			continue
		}
		row, err := c.runWorkload(ctx, w, dir)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", w.ID, err)
		}
		rows = append(rows, row)
	}
	if len(c.Only) == 0 || contains(c.Only, "T5") {
		row, err := c.residentItems(ctx, dir)
		if err != nil {
			return rows, fmt.Errorf("T5: %w", err)
		}
		rows = append(rows, row)
	}
	if len(c.Only) == 0 || contains(c.Only, "T7") {
		row, err := c.manyCaches(ctx, dir)
		if err != nil {
			return rows, fmt.Errorf("T7: %w", err)
		}
		rows = append(rows, row)
	}
	for _, t4 := range []struct {
		id, name  string
		valueSize int
		memoryMiB int // 0: CompareConfig.MemoryMiB
	}{
		{"T4", "1,000,000 items, 15-byte keys, 100-byte values: RSS per item", 100, 0},
		{"T4b", "T4 with 10-byte values", 10, 0},
		// 1,000,000 items of 1,000 bytes are about 1.1 GB of items in
		// either server: more than the default 1,024 MiB.
		{"T4c", "T4 with 1,000-byte values (both servers -m 2048)", 1000, 2048},
	} {
		if len(c.Only) > 0 && !contains(c.Only, t4.id) {
			continue
		}
		row, err := c.rssPerItem(ctx, dir, t4.id, t4.name, t4.valueSize, t4.memoryMiB)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", t4.id, err)
		}
		rows = append(rows, row)
	}
	for _, h := range []struct {
		id  string
		run func(context.Context, string) (Row, error)
	}{{"H1", c.hitRatioH1}, {"H2", c.hitRatioH2}} {
		if len(c.Only) > 0 && !contains(c.Only, h.id) {
			continue
		}
		row, err := h.run(ctx, dir)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", h.id, err)
		}
		rows = append(rows, row)
	}
	if len(c.Only) == 0 || contains(c.Only, "T11") {
		row, err := c.clusterNode(ctx, dir)
		if err != nil {
			return rows, fmt.Errorf("T11: %w", err)
		}
		rows = append(rows, row)
	}
	if len(c.Only) == 0 || contains(c.Only, "T13") || contains(c.Only, "T13b") {
		both, err := c.routing(ctx, dir)
		if err != nil {
			return rows, fmt.Errorf("T13: %w", err)
		}
		rows = append(rows, both...)
	}
	if len(c.Only) == 0 || contains(c.Only, "T12") {
		row, err := c.propagation(dir)
		if err != nil {
			return rows, fmt.Errorf("T12: %w", err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *CompareConfig) runWorkload(ctx context.Context, w Workload, dir string) (Row, error) {
	row := Row{Workload: w, Memhive: Measurement{Server: "memhive"}, Memc: Measurement{Server: "memcached"}}
	type side struct {
		p      *Proc
		logins []Login
		m      *Measurement
	}
	var sides []side
	for _, name := range []string{"memhive", "memcached"} {
		p, logins, err := c.server(name, w, dir)
		if err != nil {
			for _, s := range sides {
				s.p.Stop()
			}
			return row, err
		}
		m := &row.Memhive
		if name == "memcached" {
			m = &row.Memc
		}
		sides = append(sides, side{p, logins, m})
	}
	defer func() {
		for _, s := range sides {
			s.p.Stop()
		}
	}()
	for _, s := range sides {
		load := w.Load
		load.Addr, load.Logins = s.p.Addr, s.logins
		if w.Prefill > 0 {
			pre := load
			pre.Keys = w.Prefill
			if err := Prefill(ctx, pre); err != nil {
				return row, fmt.Errorf("prefill %s: %w", s.p.Name, err)
			}
		}
	}
	for round := 0; round < c.Rounds; round++ {
		for _, s := range sides {
			load := w.Load
			load.Addr, load.Logins, load.Duration = s.p.Addr, s.logins, c.Duration
			var idle []net.Conn
			if w.Idle > 0 {
				// Opened per measurement: this process may not hold the
				// idle connections of both servers at once (RLIMIT_NOFILE).
				before, _ := s.p.RSS()
				var err error
				if idle, err = openIdle(s.p.Addr, w.Idle); err != nil {
					return row, fmt.Errorf("%s: opening %d idle connections: %w", s.p.Name, w.Idle, err)
				}
				time.Sleep(300 * time.Millisecond)
				after, _ := s.p.RSS()
				s.m.IdleKiB = max(s.m.IdleKiB, float64(after-before)/float64(w.Idle)/1024)
			}
			r, err := Run(ctx, load)
			closeAll(idle)
			if err != nil {
				return row, fmt.Errorf("%s round %d: %w", s.p.Name, round+1, err)
			}
			s.m.Ops = append(s.m.Ops, r.OpsSec)
			s.m.P99 = append(s.m.P99, r.P99us)
			s.m.P999 = append(s.m.P999, r.P999us)
			c.logf("%-4s %-9s round %d: %9.0f ops/s  p99 %7.0f µs  p99.9 %7.0f µs", w.ID, s.p.Name, round+1, r.OpsSec, r.P99us, r.P999us)
		}
	}
	return row, nil
}

func openIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// rssPerItem is T4 and its variants: the RSS each server adds per item
// for 1,000,000 items of ~15-byte keys and valueSize-byte values, with
// memoryMiB of item memory (0: CompareConfig.MemoryMiB). Every item must
// still be held after the prefill (curr_items): an eviction would make
// the figure per item held, not per item stored.
func (c *CompareConfig) rssPerItem(ctx context.Context, dir, id, name string, valueSize, memoryMiB int) (Row, error) {
	const items = 1_000_000
	w := Workload{ID: id, Name: name, Target: "RSS/item <= 0.75", MemoryMiB: memoryMiB,
		Load: Config{Protocol: "binary", Conns: 8, Pipeline: 64, Keys: items, KeyPrefix: "memtier-", ValueMin: valueSize, ValueMax: valueSize}}
	row := Row{Workload: w, Memhive: Measurement{Server: "memhive"}, Memc: Measurement{Server: "memcached"}}
	for _, server := range []string{"memhive", "memcached"} {
		p, _, err := c.server(server, w, dir)
		if err != nil {
			return row, err
		}
		before, _ := p.RSS()
		load := w.Load
		load.Addr = p.Addr
		err = Prefill(ctx, load)
		time.Sleep(300 * time.Millisecond)
		after, _ := p.RSS()
		var st map[string]int64
		if err == nil {
			st, err = ServerStats(p.Addr)
		}
		p.Stop()
		if err != nil {
			return row, err
		}
		if st["curr_items"] != items {
			return row, fmt.Errorf("%s holds %d items after storing %d (evictions %d): raise its memory", server, st["curr_items"], items, st["evictions"])
		}
		perItem := float64(after-before) / items
		if server == "memhive" {
			row.Memhive.ItemsBytes = perItem
		} else {
			row.Memc.ItemsBytes = perItem
		}
		c.logf("%-4s %-9s %.1f bytes of RSS per item", id, server, perItem)
	}
	return row, nil
}

// stats is min, median and max.
func stats(xs []float64) (lo, med, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// Table renders the rows as Markdown.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| id | workload | memhive ops/s (min / median / max) | memcached ops/s (min / median / max) | ratio | memhive p99 µs | memcached p99 µs | p99 ratio | target |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		w := r.Workload
		if w.ID == "H1" || w.ID == "H2" {
			b.WriteString(hitRatioLine(r))
			continue
		}
		if w.ID == "T4" || w.ID == "T4b" || w.ID == "T4c" {
			fmt.Fprintf(&b, "| %s | %s | %.0f B/item | %.0f B/item | **%.2f** | | | | %s |\n",
				w.ID, w.Name, r.Memhive.ItemsBytes, r.Memc.ItemsBytes, r.Memhive.ItemsBytes/r.Memc.ItemsBytes, w.Target)
			continue
		}
		if w.ID == "T12" {
			fmt.Fprintf(&b, "| %s | %s | %s | | | | | | %s |\n", w.ID, w.Name, r.Note, w.Target)
			continue
		}
		a1, a2, a3 := stats(r.Memhive.Ops)
		b1, b2, b3 := stats(r.Memc.Ops)
		_, pa, _ := stats(r.Memhive.P99)
		_, pb, _ := stats(r.Memc.P99)
		name := w.Name
		if w.ID == "T5" {
			_, qa, _ := stats(r.Memhive.P999)
			_, qb, _ := stats(r.Memc.P999)
			name += fmt.Sprintf(" (p99.9: %.0f µs vs %.0f µs, **%.2f**; %s)", qa, qb, qa/qb, r.Note)
		}
		if w.ID == "T11" || w.ID == "T13" || w.ID == "T13b" {
			name += " (" + r.Note + ")"
		}
		if w.Idle > 0 {
			name += fmt.Sprintf(" (memory per idle connection: memhive %.1f KiB, memcached %.1f KiB)", r.Memhive.IdleKiB, r.Memc.IdleKiB)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | **%.2f** | %.0f | %.0f | %.2f | %s |\n",
			w.ID, name, a1, a2, a3, b1, b2, b3, a2/b2, pa, pb, pa/pb, w.Target)
	}
	return b.String()
}

// Markers delimit the generated section of BENCHMARKS.md.
const (
	beginMarker = "<!-- bench:begin (written by make bench) -->"
	endMarker   = "<!-- bench:end -->"
)

// RewriteSection replaces what lies between the markers in the Markdown
// file at path with section (appending the markers if absent).
func RewriteSection(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	block := beginMarker + "\n" + section + "\n" + endMarker
	if i < 0 || j < i {
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	} else {
		s = s[:i] + block + s[j+len(endMarker):]
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// manyCaches is T7, memhive only: T1 spread over 1,000 caches, against T1
// on one cache, both logged in with MemCachier's text login. Each of T1's
// 50 connections works on its own cache and T1's key space is split among
// them, so both sides hold the same number of items: what differs is only
// that the requests go to 50 engines instead of one.
func (c *CompareConfig) manyCaches(ctx context.Context, dir string) (Row, error) {
	const caches, token = 1000, "bench-token"
	w := Workload{ID: "T7", Name: "T1 spread over 1,000 caches: each of the 50 connections on its own cache, the 100k keys split among them (memhive only; the memcached column is memhive with one cache)",
		Target: "ops >= 0.95x one cache", Load: Workloads()[0].Load}
	row := Row{Workload: w, Memhive: Measurement{Server: "memhive, 1,000 caches"}, Memc: Measurement{Server: "memhive, 1 cache"}}
	p, httpAddr, err := c.memhiveWithHTTP(filepath.Join(dir, "memhive-t7"), max(c.MemoryMiB, 2048),
		"--admin-token", token, "--overcommit", "-c", "20000", "--auth", "sasl")
	if err != nil {
		return row, err
	}
	addr := p.Addr
	defer p.Stop()
	var logins []Login
	for i := 0; i < caches; i++ {
		l, err := createCache(httpAddr, token, fmt.Sprintf("c%04d", i), 32)
		if err != nil {
			return row, fmt.Errorf("creating cache %d: %w", i, err)
		}
		if len(logins) < w.Load.Conns {
			logins = append(logins, l)
		}
	}
	c.logf("T7   created %d caches", caches)
	load := w.Load
	load.Addr = addr
	spreadKeys := load.Keys / len(logins)
	one := []Login{logins[0]}
	for _, pre := range []struct {
		logins []Login
		keys   int
	}{{one, load.Keys}, {logins[1:], spreadKeys}} {
		for _, l := range pre.logins {
			fill := load
			fill.Conns, fill.Logins, fill.Keys = 4, []Login{l}, pre.keys
			if err := Prefill(ctx, fill); err != nil {
				return row, fmt.Errorf("prefill: %w", err)
			}
		}
	}
	for round := 0; round < c.Rounds; round++ {
		for _, side := range []struct {
			m      *Measurement
			logins []Login
			keys   int
		}{{&row.Memhive, logins, spreadKeys}, {&row.Memc, one, load.Keys}} {
			l := load
			l.Logins, l.Keys, l.Duration = side.logins, side.keys, c.Duration
			r, err := Run(ctx, l)
			if err != nil {
				return row, err
			}
			side.m.Ops = append(side.m.Ops, r.OpsSec)
			side.m.P99 = append(side.m.P99, r.P99us)
			side.m.P999 = append(side.m.P999, r.P999us)
			c.logf("T7   %-22s round %d: %9.0f ops/s  p99 %7.0f µs", side.m.Server, round+1, r.OpsSec, r.P99us)
		}
	}
	return row, nil
}

// memhiveWithHTTP starts memhive on a fresh data directory with its HTTP
// endpoints on, for the memhive-only workloads; it returns the process and
// the HTTP address.
func (c *CompareConfig) memhiveWithHTTP(data string, memoryMiB int, extra ...string) (*Proc, string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	httpAddr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	os.RemoveAll(data)
	argv := append([]string{c.Memhive, "serve", "--listen", addr, "--http", httpAddr, "--data", data,
		"-m", fmt.Sprint(memoryMiB), "-t", fmt.Sprint(c.Threads)}, extra...)
	p, err := StartProc("memhive", addr, argv, nil)
	return p, httpAddr, err
}

// createCache makes a cache through memhive's admin API and returns its
// primary credential.
func createCache(httpAddr, token, name string, mb int) (Login, error) {
	body := fmt.Sprintf(`{"name":%q,"memory_limit_mb":%d}`, name, mb)
	req, _ := http.NewRequest("POST", "http://"+httpAddr+"/admin/v1/caches", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Login{}, err
	}
	defer resp.Body.Close()
	var out struct{ Username, Password string }
	if resp.StatusCode != 201 {
		return Login{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return Login{out.Username, out.Password}, err
}

// residentItems is T5, memhive only: T1's p99.9 with 10,000,000 items
// resident against T1's with 100,000, and the Go heap with 10,000,000.
func (c *CompareConfig) residentItems(ctx context.Context, dir string) (Row, error) {
	const small, large = 100_000, 10_000_000
	w := Workload{ID: "T5", Name: "T1 with 10,000,000 items resident (memhive only; the memcached column is memhive with 100,000 items)",
		Target: "p99.9 <= 1.2x its own with 100k; Go heap <= 64 MiB", Load: Workloads()[0].Load}
	row := Row{Workload: w, Memhive: Measurement{Server: "memhive, 10M items"}, Memc: Measurement{Server: "memhive, 100k items"}}
	p, httpAddr, err := c.memhiveWithHTTP(filepath.Join(dir, "memhive-t5"), 4096, "--metrics-public", "--auth", "none")
	if err != nil {
		return row, err
	}
	addr := p.Addr
	defer p.Stop()
	measure := func(m *Measurement, keys int) error {
		load := w.Load
		load.Addr, load.Keys, load.Duration = addr, keys, c.Duration
		for round := 0; round < c.Rounds; round++ {
			r, err := Run(ctx, load)
			if err != nil {
				return err
			}
			m.Ops = append(m.Ops, r.OpsSec)
			m.P99 = append(m.P99, r.P99us)
			m.P999 = append(m.P999, r.P999us)
			c.logf("T5   %-20s round %d: %9.0f ops/s  p99 %7.0f µs  p99.9 %7.0f µs", m.Server, round+1, r.OpsSec, r.P99us, r.P999us)
		}
		return nil
	}
	fill := Config{Protocol: "binary", Conns: 8, Pipeline: 64, Addr: addr, ValueMin: 100, ValueMax: 100}
	fill.Keys = small
	if err := Prefill(ctx, fill); err != nil {
		return row, err
	}
	if err := measure(&row.Memc, small); err != nil {
		return row, err
	}
	fill.Keys = large
	if err := Prefill(ctx, fill); err != nil {
		return row, err
	}
	if err := measure(&row.Memhive, large); err != nil {
		return row, err
	}
	heap, err := goHeap(httpAddr)
	if err != nil {
		return row, err
	}
	row.Note = fmt.Sprintf("Go heap with 10M items: %.1f MiB", float64(heap)/(1<<20))
	c.logf("T5   %s", row.Note)
	return row, nil
}

// goHeap reads go_memstats_heap_alloc_bytes from memhive's /metrics.
func goHeap(httpAddr string) (int64, error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_alloc_bytes "); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no go_memstats_heap_alloc_bytes in /metrics")
}
