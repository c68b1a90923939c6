package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	Addr     string `json:"addr"`
	Protocol string `json:"protocol"` // "text" or "binary"
	// TLS connects with TLS 1.2 or later, without verifying the server's
	// certificate: benchmarks run against throwaway ones on loopback.
	TLS bool `json:"tls,omitempty"`
	// Logins, if any, authenticate each connection (in turn): binary SASL
	// PLAIN, or MemCachier's text `set` login. Several logins spread the
	// connections over several caches.
	Logins    []Login `json:"-"`
	Conns     int     `json:"connections"`
	Pipeline  int     `json:"pipeline"`
	SetRatio  int     `json:"set_ratio"` // sets per SetRatio+GetRatio requests
	GetRatio  int     `json:"get_ratio"`
	Keys      int     `json:"keys"`
	KeyPrefix string  `json:"key_prefix"`
	// KeyList, if set, is the key space itself: key i is KeyList[i]
	// rather than KeyPrefix followed by i, and Keys is its length. For
	// workloads that need keys with a property the generator cannot
	// format, such as which node of a cluster owns them (T13).
	KeyList []string `json:"-"`
	// Distribution of keys: "uniform", "zipf" (with ZipfS > 1), or
	// "sequential" (each connection walks its share of the key space).
	Distribution string        `json:"distribution"`
	ZipfS        float64       `json:"zipf_s,omitempty"`
	ValueMin     int           `json:"value_min"`
	ValueMax     int           `json:"value_max"`
	Duration     time.Duration `json:"duration_ns,omitempty"`
	Requests     int64         `json:"requests,omitempty"` // stop after this many (0: Duration)
	// Progress, if set, gets a status line every second.
	Progress io.Writer `json:"-"`
}

// Login is a username and password.
type Login struct{ Username, Password string }

// Result is what a run measured.
type Result struct {
	Config  Config  `json:"config"`
	Ops     int64   `json:"ops"`
	Sets    int64   `json:"sets"`
	Gets    int64   `json:"gets"`
	Hits    int64   `json:"hits"`
	Misses  int64   `json:"misses"`
	Seconds float64 `json:"seconds"`
	OpsSec  float64 `json:"ops_per_sec"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	P999us  float64 `json:"p999_us"`
	MaxUs   float64 `json:"max_us"`
	hist    Histogram
}

// Histogram is the run's latency histogram, in nanoseconds.
func (r *Result) Histogram() *Histogram { return &r.hist }

func (c *Config) defaults() error {
	if c.Protocol == "" {
		c.Protocol = "text"
	}
	if c.Protocol != "text" && c.Protocol != "binary" && c.Protocol != "meta" {
		return fmt.Errorf("protocol %q: want text, binary or meta", c.Protocol)
	}
	c.Conns = max(c.Conns, 1)
	c.Pipeline = max(c.Pipeline, 1)
	if c.SetRatio+c.GetRatio == 0 {
		c.SetRatio, c.GetRatio = 1, 10
	}
	if len(c.KeyList) > 0 {
		c.Keys = len(c.KeyList)
	}
	c.Keys = max(c.Keys, 1)
	if c.KeyPrefix == "" {
		c.KeyPrefix = "key:"
	}
	if c.Distribution == "" {
		c.Distribution = "uniform"
	}
	if c.Distribution == "zipf" && c.ZipfS <= 1 {
		c.ZipfS = 1.1
	}
	if c.ValueMin <= 0 {
		c.ValueMin = 100
	}
	c.ValueMax = max(c.ValueMax, c.ValueMin)
	if c.Duration <= 0 && c.Requests <= 0 {
		c.Duration = 10 * time.Second
	}
	return nil
}

// Run drives the load described by cfg and returns what it measured. Any
// wrong reply ends the run with an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	workers := make([]*worker, cfg.Conns)
	for i := range workers {
		w, err := dialWorker(&cfg, i)
		if err != nil {
			for _, o := range workers[:i] {
				o.conn.Close()
			}
			return nil, err
		}
		workers[i] = w
	}
	var budget atomic.Int64
	budget.Store(cfg.Requests)
	var wg sync.WaitGroup
	errs := make(chan error, len(workers))
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			defer w.conn.Close()
			if err := w.run(ctx, &budget); err != nil && ctx.Err() == nil {
				errs <- err
				cancel()
			}
		}(w)
	}
	if cfg.Progress != nil {
		go progress(ctx, cfg.Progress, workers, start)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	r := &Result{Config: cfg, Seconds: elapsed.Seconds()}
	for _, w := range workers {
		r.Ops += w.ops.Load()
		r.Sets += w.sets
		r.Gets += w.gets
		r.Hits += w.hits
		r.Misses += w.misses
		r.hist.Merge(&w.hist)
	}
	r.OpsSec = float64(r.Ops) / r.Seconds
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	r.P50us, r.P99us, r.P999us, r.MaxUs = us(r.hist.Quantile(0.5)), us(r.hist.Quantile(0.99)), us(r.hist.Quantile(0.999)), us(r.hist.Max())
	return r, nil
}

func progress(ctx context.Context, out io.Writer, workers []*worker, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return
		case <-t.C:
		}
		var ops int64
		for _, w := range workers {
			ops += w.ops.Load()
		}
		fmt.Fprintf(out, "\r%5.0fs  %10d ops  %9d ops/s", time.Since(start).Seconds(), ops, ops-last)
		last = ops
	}
}

// worker is one connection.
type worker struct {
	cfg                      *Config
	id                       int
	conn                     net.Conn
	r                        *bufio.Reader
	w                        *bufio.Writer
	rng                      *rand.Rand
	zipf                     *rand.Zipf
	seq                      int
	value                    []byte
	buf                      []byte
	kinds                    []bool // per pipelined request: true for a set
	hist                     Histogram
	ops                      atomic.Int64
	sets, gets, hits, misses int64
}

func dialWorker(cfg *Config, id int) (*worker, error) {
	c, err := net.DialTimeout("tcp", cfg.Addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if cfg.TLS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: TLS handshake: %w", id, err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	w := &worker{cfg: cfg, id: id, conn: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10),
		rng: rand.New(rand.NewPCG(uint64(id), 0x6d656d68)), value: make([]byte, cfg.ValueMax)}
	for i := range w.value {
		w.value[i] = 'a' + byte(i%26)
	}
	if cfg.Distribution == "zipf" {
		w.zipf = rand.NewZipf(w.rng, cfg.ZipfS, 1, uint64(cfg.Keys-1))
	}
	w.seq = id * cfg.Keys / cfg.Conns
	if len(cfg.Logins) > 0 {
		if err := w.login(cfg.Logins[id%len(cfg.Logins)]); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: %w", id, err)
		}
	}
	return w, nil
}

func (w *worker) login(l Login) error {
	w.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer w.conn.SetDeadline(time.Time{})
	if w.cfg.Protocol != "binary" {
		// MemCachier's text login, for meta connections too.
		fmt.Fprintf(w.w, "set %s 0 0 %d\r\n%s\r\n", l.Username, len(l.Password), l.Password)
		w.w.Flush()
		line, err := w.r.ReadString('\n')
		if err != nil || line != "STORED\r\n" {
			return fmt.Errorf("text login: %q %v", line, err)
		}
		return nil
	}
	body := "\x00" + l.Username + "\x00" + l.Password
	w.buf = binHeader(w.buf[:0], 0x21, 5, 0, len("PLAIN")+len(body), 0)
	w.buf = append(w.buf, "PLAIN"...)
	w.buf = append(w.buf, body...)
	w.w.Write(w.buf)
	w.w.Flush()
	status, _, err := w.readBinary()
	if err != nil || status != 0 {
		return fmt.Errorf("SASL login: status %#x %v", status, err)
	}
	return nil
}

func (w *worker) key() int {
	switch w.cfg.Distribution {
	case "zipf":
		return int(w.zipf.Uint64())
	case "sequential":
		k := w.seq % w.cfg.Keys
		w.seq++
		return k
	}
	return w.rng.IntN(w.cfg.Keys)
}

// appendKey appends key number k to dst: KeyPrefix and k, or KeyList[k].
// One well-predicted branch per request when there is no list.
func (w *worker) appendKey(dst []byte, k int) []byte {
	if w.cfg.KeyList != nil {
		return append(dst, w.cfg.KeyList[k]...)
	}
	return strconv.AppendInt(append(dst, w.cfg.KeyPrefix...), int64(k), 10)
}

func (w *worker) run(ctx context.Context, budget *atomic.Int64) error {
	total := w.cfg.SetRatio + w.cfg.GetRatio
	var keybuf []byte
	for ctx.Err() == nil {
		n := w.cfg.Pipeline
		if w.cfg.Requests > 0 {
			left := budget.Add(-int64(n))
			if left < 0 {
				n += int(left)
				if n <= 0 {
					return nil
				}
			}
		}
		w.kinds = w.kinds[:0]
		for i := 0; i < n; i++ {
			keybuf = w.appendKey(keybuf[:0], w.key())
			set := w.rng.IntN(total) < w.cfg.SetRatio
			size := w.cfg.ValueMin
			if w.cfg.ValueMax > w.cfg.ValueMin {
				size += w.rng.IntN(w.cfg.ValueMax - w.cfg.ValueMin + 1)
			}
			w.encode(keybuf, set, size)
			w.kinds = append(w.kinds, set)
		}
		sent := time.Now()
		w.conn.SetDeadline(sent.Add(10 * time.Second))
		if err := w.w.Flush(); err != nil {
			return err
		}
		for _, set := range w.kinds {
			if err := w.reply(set); err != nil {
				return err
			}
			w.hist.Record(time.Since(sent).Nanoseconds())
		}
		w.ops.Add(int64(n))
	}
	return nil
}

func (w *worker) encode(key []byte, set bool, size int) {
	if w.cfg.Protocol == "text" {
		if set {
			w.buf = append(w.buf[:0], "set "...)
			w.buf = append(w.buf, key...)
			w.buf = append(w.buf, " 0 0 "...)
			w.buf = strconv.AppendInt(w.buf, int64(size), 10)
			w.buf = append(w.buf, "\r\n"...)
			w.buf = append(w.buf, w.value[:size]...)
			w.buf = append(w.buf, "\r\n"...)
		} else {
			w.buf = append(w.buf[:0], "get "...)
			w.buf = append(w.buf, key...)
			w.buf = append(w.buf, "\r\n"...)
		}
		w.w.Write(w.buf)
		return
	}
	if w.cfg.Protocol == "meta" {
		if set {
			w.buf = append(w.buf[:0], "ms "...)
			w.buf = append(w.buf, key...)
			w.buf = append(w.buf, ' ')
			w.buf = strconv.AppendInt(w.buf, int64(size), 10)
			w.buf = append(w.buf, " T0\r\n"...)
			w.buf = append(w.buf, w.value[:size]...)
			w.buf = append(w.buf, "\r\n"...)
		} else {
			w.buf = append(w.buf[:0], "mg "...)
			w.buf = append(w.buf, key...)
			w.buf = append(w.buf, " v f\r\n"...)
		}
		w.w.Write(w.buf)
		return
	}
	if set {
		w.buf = binHeader(w.buf[:0], 0x01, len(key), 8, len(key)+8+size, 0)
		w.buf = append(w.buf, 0, 0, 0, 0, 0, 0, 0, 0) // flags, exptime
		w.buf = append(w.buf, key...)
		w.buf = append(w.buf, w.value[:size]...)
	} else {
		w.buf = binHeader(w.buf[:0], 0x00, len(key), 0, len(key), 0)
		w.buf = append(w.buf, key...)
	}
	w.w.Write(w.buf)
}

func binHeader(dst []byte, op byte, keylen, extlen, bodylen int, opaque uint32) []byte {
	var h [24]byte
	h[0], h[1] = 0x80, op
	binary.BigEndian.PutUint16(h[2:], uint16(keylen))
	h[4] = byte(extlen)
	binary.BigEndian.PutUint32(h[8:], uint32(bodylen))
	binary.BigEndian.PutUint32(h[12:], opaque)
	return append(dst, h[:]...)
}

// errReply is a reply the workload did not expect.
var errReply = errors.New("unexpected reply")

// reply reads and checks one reply.
func (w *worker) reply(set bool) error {
	if w.cfg.Protocol == "binary" {
		status, _, err := w.readBinary()
		if err != nil {
			return err
		}
		switch {
		case set && status == 0:
			w.sets++
		case !set && status == 0:
			w.gets++
			w.hits++
		case !set && status == 1:
			w.gets++
			w.misses++
		default:
			return fmt.Errorf("%w: binary status %#x", errReply, status)
		}
		return nil
	}
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if w.cfg.Protocol == "meta" {
		return w.metaReply(set, line)
	}
	if set {
		if string(line) != "STORED\r\n" {
			return fmt.Errorf("%w: set answered %q", errReply, line)
		}
		w.sets++
		return nil
	}
	w.gets++
	if string(line) == "END\r\n" {
		w.misses++
		return nil
	}
	// VALUE <key> <flags> <bytes>
	var n int
	i := len(line) - 3
	for i > 0 && line[i] != ' ' {
		i--
	}
	if len(line) < 6 || string(line[:6]) != "VALUE " {
		return fmt.Errorf("%w: get answered %q", errReply, line)
	}
	n, err = strconv.Atoi(string(line[i+1 : len(line)-2]))
	if err != nil {
		return fmt.Errorf("%w: get answered %q", errReply, line)
	}
	if _, err := w.r.Discard(n + 2); err != nil {
		return err
	}
	end, err := w.r.ReadSlice('\n')
	if err != nil || string(end) != "END\r\n" {
		return fmt.Errorf("%w: value not followed by END: %q", errReply, end)
	}
	w.hits++
	return nil
}

// metaReply checks the status line of an ms (HD) or an mg (VA with its
// value, or EN).
func (w *worker) metaReply(set bool, line []byte) error {
	if set {
		if string(line) != "HD\r\n" {
			return fmt.Errorf("%w: ms answered %q", errReply, line)
		}
		w.sets++
		return nil
	}
	w.gets++
	if string(line) == "EN\r\n" {
		w.misses++
		return nil
	}
	// VA <bytes> f<flags>
	if len(line) < 5 || string(line[:3]) != "VA " {
		return fmt.Errorf("%w: mg answered %q", errReply, line)
	}
	end := 3
	for end < len(line) && line[end] >= '0' && line[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(string(line[3:end]))
	if err != nil {
		return fmt.Errorf("%w: mg answered %q", errReply, line)
	}
	if _, err := w.r.Discard(n + 2); err != nil {
		return err
	}
	w.hits++
	return nil
}

// readBinary reads one binary reply; it returns its status and body length.
func (w *worker) readBinary() (uint16, int, error) {
	var h [24]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		return 0, 0, err
	}
	if h[0] != 0x81 {
		return 0, 0, fmt.Errorf("%w: binary magic %#x", errReply, h[0])
	}
	body := int(binary.BigEndian.Uint32(h[8:]))
	if _, err := w.r.Discard(body); err != nil {
		return 0, 0, err
	}
	return binary.BigEndian.Uint16(h[6:]), body, nil
}

// Prefill stores every key of cfg's key space exactly once, with cfg's
// value sizes: each connection sets its own share, pipelined.
func Prefill(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if !cfg.TLS {
		// Over TLS the workload's own depth: memcached 1.6.18 with -Z
		// stopped answering this generator's 64-deep pipelines of sets
		// (reads timed out), and answers them one at a time.
		cfg.Pipeline = max(cfg.Pipeline, 64)
	}
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Conns)
	for i := 0; i < cfg.Conns; i++ {
		w, err := dialWorker(&cfg, i)
		if err != nil {
			return err
		}
		from, to := i*cfg.Keys/cfg.Conns, (i+1)*cfg.Keys/cfg.Conns
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.conn.Close()
			errs <- w.fill(ctx, from, to)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// fill sets keys from..to-1.
func (w *worker) fill(ctx context.Context, from, to int) error {
	var key []byte
	for k := from; k < to && ctx.Err() == nil; {
		n := min(w.cfg.Pipeline, to-k)
		for i := 0; i < n; i++ {
			key = w.appendKey(key[:0], k+i)
			size := w.cfg.ValueMin
			if w.cfg.ValueMax > w.cfg.ValueMin {
				size += w.rng.IntN(w.cfg.ValueMax - w.cfg.ValueMin + 1)
			}
			w.encode(key, true, size)
		}
		w.conn.SetDeadline(time.Now().Add(30 * time.Second))
		if err := w.w.Flush(); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := w.reply(true); err != nil {
				return err
			}
		}
		k += n
	}
	return ctx.Err()
}
