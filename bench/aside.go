package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AsideConfig is a cache-aside load, the way applications use a cache in
// front of a database: every request is a get, and a get that misses is
// followed by a set of that key with its value. Its hit ratio is the
// server's choice of what to keep, which is what the hit-ratio workloads
// (H1, H2) compare. Text protocol, no authentication.
type AsideConfig struct {
	Addr  string
	Conns int
	// Pipeline is how many gets a connection sends at once; the sets of
	// those that missed follow, together. 1: get, then set if it missed,
	// one request at a time, as a synchronous application does.
	Pipeline int
	// Requests is the number of gets, split evenly among the connections
	// so that each connection's share, and so its keys, are fixed.
	Requests int64
	// Keys is the key space: key k is KeyPrefix followed by k.
	Keys      int
	KeyPrefix string
	// Zipf, if set, draws each get's key: key k is rank k. Nil walks the
	// key space once, in order, each connection its share (Requests is
	// then ignored): a fill in which every get misses.
	Zipf *Zipf
	// ValueMin and ValueMax bound the values' sizes, fixed per key by
	// ValueSize.
	ValueMin, ValueMax int
	// Seed, with a connection's number, seeds that connection's draws: a
	// run is repeatable, and runs with different seeds ask for different
	// sequences of keys.
	Seed uint64
}

// AsideResult is what a cache-aside run counted; every count is of
// replies received and checked.
type AsideResult struct {
	Gets, Hits, Misses int64
	// Sets are the sets that followed misses, one per miss, whatever
	// their outcome; SetsFailed of them the server refused with
	// SERVER_ERROR out of memory (memcached does when a slab class has
	// no memory and nothing to evict), which an application ignores.
	Sets, SetsFailed int64
	Seconds          float64
}

// HitRatio is Hits/Gets (0 with no gets).
func (r AsideResult) HitRatio() float64 {
	if r.Gets == 0 {
		return 0
	}
	return float64(r.Hits) / float64(r.Gets)
}

func (r *AsideResult) add(o AsideResult) {
	r.Gets += o.Gets
	r.Hits += o.Hits
	r.Misses += o.Misses
	r.Sets += o.Sets
	r.SetsFailed += o.SetsFailed
}

// RunAside drives the cache-aside load cfg describes and returns its
// counts. A wrong reply (including a hit whose value is not the key's
// size) ends the run with an error.
func RunAside(ctx context.Context, cfg AsideConfig) (AsideResult, error) {
	cfg.Conns = max(cfg.Conns, 1)
	cfg.Pipeline = max(cfg.Pipeline, 1)
	cfg.Keys = max(cfg.Keys, 1)
	cfg.ValueMax = max(cfg.ValueMax, cfg.ValueMin)
	conns := make([]*asideConn, cfg.Conns)
	for i := range conns {
		nc, err := net.DialTimeout("tcp", cfg.Addr, 5*time.Second)
		if err != nil {
			for _, o := range conns[:i] {
				o.c.Close()
			}
			return AsideResult{}, err
		}
		a := &asideConn{cfg: &cfg, c: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriterSize(nc, 64<<10),
			rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), value: make([]byte, cfg.ValueMax)}
		for j := range a.value {
			a.value[j] = 'a' + byte(j%26)
		}
		if cfg.Zipf == nil {
			a.next, a.end = i*cfg.Keys/cfg.Conns, (i+1)*cfg.Keys/cfg.Conns
			a.left = int64(a.end - a.next)
		} else {
			a.left = cfg.Requests / int64(cfg.Conns)
			if int64(i) < cfg.Requests%int64(cfg.Conns) {
				a.left++
			}
		}
		conns[i] = a
	}
	parent := ctx
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	start := time.Now()
	for i, a := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer a.c.Close()
			if errs[i] = a.run(ctx); errs[i] != nil {
				cancel() // the others stop with context.Canceled
			}
		}()
	}
	wg.Wait()
	var r AsideResult
	r.Seconds = time.Since(start).Seconds()
	for i, a := range conns {
		if errs[i] != nil && !errors.Is(errs[i], context.Canceled) {
			return r, fmt.Errorf("connection %d: %w", i, errs[i])
		}
		r.add(a.res)
	}
	return r, parent.Err()
}

// asideConn is one connection of a cache-aside run, owned by its
// goroutine.
type asideConn struct {
	cfg    *AsideConfig
	c      net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	rng    *rand.Rand
	value  []byte // the bytes every set sends a prefix of
	buf    []byte // the request being encoded
	batch  []int  // keys of the gets in flight
	missed []int  // those of them that missed
	next   int    // sequential: next key
	end    int    // sequential: end of this connection's share
	left   int64  // gets still to send
	res    AsideResult
}

func (a *asideConn) key() int {
	if a.cfg.Zipf != nil {
		return a.cfg.Zipf.Rank(a.rng)
	}
	k := a.next
	a.next++
	return k
}

func (a *asideConn) appendKey(dst []byte, k int) []byte {
	return strconv.AppendInt(append(dst, a.cfg.KeyPrefix...), int64(k), 10)
}

func (a *asideConn) run(ctx context.Context) error {
	for a.left > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(a.cfg.Pipeline), a.left))
		a.left -= int64(n)
		a.batch, a.missed = a.batch[:0], a.missed[:0]
		for i := 0; i < n; i++ {
			k := a.key()
			a.batch = append(a.batch, k)
			a.buf = append(a.appendKey(append(a.buf[:0], "get "...), k), "\r\n"...)
			a.w.Write(a.buf)
		}
		a.c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := a.w.Flush(); err != nil {
			return err
		}
		for _, k := range a.batch {
			hit, err := a.readGet(k)
			if err != nil {
				return err
			}
			if !hit {
				a.missed = append(a.missed, k)
			}
		}
		if len(a.missed) == 0 {
			continue
		}
		for _, k := range a.missed {
			size := ValueSize(k, a.cfg.ValueMin, a.cfg.ValueMax)
			a.buf = append(a.appendKey(append(a.buf[:0], "set "...), k), " 0 0 "...)
			a.buf = strconv.AppendInt(a.buf, int64(size), 10)
			a.buf = append(a.buf, "\r\n"...)
			a.buf = append(a.buf, a.value[:size]...)
			a.buf = append(a.buf, "\r\n"...)
			a.w.Write(a.buf)
		}
		if err := a.w.Flush(); err != nil {
			return err
		}
		for range a.missed {
			if err := a.readSet(); err != nil {
				return err
			}
		}
	}
	return nil
}

// readGet reads the reply to a get of key k: END (a miss), or its value
// followed by END (a hit), whose size must be k's.
func (a *asideConn) readGet(k int) (hit bool, err error) {
	line, err := a.r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	a.res.Gets++
	if string(line) == "END\r\n" {
		a.res.Misses++
		return false, nil
	}
	// VALUE <key> <flags> <bytes>\r\n
	i := bytes.LastIndexByte(line, ' ')
	if !bytes.HasPrefix(line, []byte("VALUE ")) || i < 0 || !bytes.HasSuffix(line, []byte("\r\n")) {
		return false, fmt.Errorf("%w: get answered %q", errReply, line)
	}
	n, err := strconv.Atoi(string(line[i+1 : len(line)-2]))
	if err != nil {
		return false, fmt.Errorf("%w: get answered %q", errReply, line)
	}
	if want := ValueSize(k, a.cfg.ValueMin, a.cfg.ValueMax); n != want {
		return false, fmt.Errorf("%w: key %d's value has %d bytes, want %d", errReply, k, n, want)
	}
	if _, err := a.r.Discard(n + 2); err != nil {
		return false, err
	}
	end, err := a.r.ReadSlice('\n')
	if err != nil || string(end) != "END\r\n" {
		return false, fmt.Errorf("%w: value not followed by END: %q %v", errReply, end, err)
	}
	a.res.Hits++
	return true, nil
}

// readSet reads the reply to a set: STORED, or the out-of-memory error
// an application would shrug off.
func (a *asideConn) readSet() error {
	line, err := a.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	a.res.Sets++
	switch {
	case string(line) == "STORED\r\n":
	case bytes.HasPrefix(line, []byte("SERVER_ERROR out of memory")):
		a.res.SetsFailed++
	default:
		return fmt.Errorf("%w: set answered %q", errReply, line)
	}
	return nil
}

// crossCheck fails when a server's get_hits and get_misses deltas over a
// window disagree grossly (by more than 1% of the gets) with the
// driver's counts: the server would be counting something else, or
// another client would be talking to it.
func crossCheck(r AsideResult, hits, misses int64) error {
	tol := r.Gets / 100
	if abs64(hits-r.Hits) > tol || abs64(misses-r.Misses) > tol {
		return fmt.Errorf("the server counted %d hits and %d misses, the driver %d and %d", hits, misses, r.Hits, r.Misses)
	}
	return nil
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// ServerStats returns a server's general stats (the text protocol's
// "stats") that are integers, by name: get_hits, get_misses, curr_items,
// evictions and the like, which memhive and memcached name alike.
func ServerStats(addr string) (map[string]int64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	stats := make(map[string]int64)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("reading stats: %w", err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "END" {
			return stats, nil
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "STAT" {
			return nil, fmt.Errorf("%w: stats answered %q", errReply, line)
		}
		if v, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			stats[f[1]] = v
		}
	}
}
