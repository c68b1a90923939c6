package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memcachier/mc/v3"
)

const (
	soakCaches = 3
	// Slab pages are 1 MiB and the values span some 35 size classes, so a
	// cache needs a few dozen pages before its items outlive their next
	// read: with caches of 16 MiB resized down to 4, two of every three
	// written keys checked were found evicted, and little was verified.
	soakCacheMiB  = 32  // each cache's limit at the baseline, and again at the end
	soakMemoryMiB = 160 // --memory: the default cache's 4 MiB and every cache at its largest fit
	soakKeys      = 300 // per client
	soakIOTimeout = 5 * time.Second

	// Once the load is gone the server may keep a few more goroutines
	// (fasthttp parks idle workers for 10 s) and descriptors (a socket
	// still closing) than at the baseline, but not one per connection
	// served: the soak opens thousands.
	soakGoroutineSlack = 5
	soakFDSlack        = 2
	soakSettle         = 10 * time.Second

	opQuit = 0x07

	authFailureLine = "CLIENT_ERROR authentication failure"
	throttledPrefix = "CLIENT_ERROR too many authentication failures"
)

// soakSizes are the limits, in MiB, the resizer moves caches between.
var soakSizes = []int{8, 16, 24, 32, 48}

// TestSoak runs a bounded mixed load against one server for $MEMHIVE_SOAK
// (default 20 s; `make soak` runs 10 minutes): SASL clients (memcachier/mc)
// and text clients logging in with the set extension do set, get, delete,
// incr and append on random keys and sizes and hang up cleanly or in the
// middle of a request line, a value or a binary header; clients from
// another loopback address fail to log in; the caches are resized up and
// down. Every answer is checked against what its client wrote (a miss is
// allowed, as an eviction, but a hit must be the value written, and a
// cache never answers with another cache's key). Once every client has
// gone, the server's goroutines, file descriptors and RSS must come back
// to what they were after the warm-up.
//
// Not parallel: the settle phase and the baseline compare one process
// with itself over time, and other tests' load on the same two cores
// would only blur that.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+2*time.Minute {
		t.Fatalf("MEMHIVE_SOAK=%v does not fit in the test timeout (%v left); raise -timeout", d, time.Until(dl).Round(time.Second))
	}
	h := startHive(t, "", "--memory", strconv.Itoa(soakMemoryMiB))
	h.resize(1, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &soak{t: t, h: h, ctx: ctx, cancel: cancel, seed: uint64(time.Now().UnixNano())}
	for i := 0; i < soakCaches; i++ {
		name := fmt.Sprintf("soak%d", i)
		s.caches = append(s.caches, &soakCache{login: h.createCache(name, soakCacheMiB), name: name, tag: fmt.Sprintf("s%d", i)})
	}

	s.warmUp()
	if t.Failed() {
		t.FailNow()
	}
	base, err := s.baseline()
	if err != nil {
		t.Fatal(err)
	}

	s.load(d)
	if h.Exited() {
		t.Fatalf("the server exited during the soak; output:\n%s", h.Output())
	}
	// The limits go back to the baseline's, so that RSS can too: pages a
	// cache grew into during the load are released when it shrinks.
	for _, c := range s.caches {
		h.resize(c.CacheID, soakCacheMiB)
	}
	end, err := s.settle(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak %v: %d ops in %d sessions, %d disconnects mid-request, %d auth failures and %d unauthenticated commands from 127.0.0.2, %d resizes; %d gets checked against the value set, %d evicted keys; goroutines %d -> %d, fds %d -> %d, RSS %.1f -> %.1f MiB",
		d, s.ops.Load(), s.sessions.Load(), s.cuts.Load(), s.authFails.Load(), s.unauthed.Load(), s.resizes.Load(), s.hits.Load(), s.evicted.Load(),
		base.goroutines, end.goroutines, base.fds, end.fds, float64(base.rss)/(1<<20), float64(end.rss)/(1<<20))
	if end.goroutines > base.goroutines+soakGoroutineSlack {
		t.Errorf("goroutines: %d after the load, %d at the baseline (slack %d)", end.goroutines, base.goroutines, soakGoroutineSlack)
	}
	if end.fds > base.fds+soakFDSlack {
		t.Errorf("open file descriptors: %d after the load, %d at the baseline (slack %d)", end.fds, base.fds, soakFDSlack)
	}
	if limit := rssLimit(base.rss); end.rss > limit {
		t.Errorf("RSS: %.1f MiB after the load, %.1f MiB at the baseline (limit %.1f MiB)", float64(end.rss)/(1<<20), float64(base.rss)/(1<<20), float64(limit)/(1<<20))
	}
	if h.Exited() {
		t.Fatalf("the server exited; output:\n%s", h.Output())
	}
}

// rssLimit is what RSS may be after the load: 15% and 16 MiB over the
// baseline, for heap the Go runtime has not returned yet.
func rssLimit(base int64) int64 { return base*115/100 + 16<<20 }

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("MEMHIVE_SOAK")
	if v == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("MEMHIVE_SOAK=%q: want a positive Go duration such as 10m", v)
	}
	return d
}

// soak is the shared state of one soak run. Its counters are updated by
// every client goroutine.
type soak struct {
	t      *testing.T
	h      *hive
	caches []*soakCache
	ctx    context.Context // cancelled on the first failure
	cancel context.CancelFunc
	seed   uint64
	nextID atomic.Uint64
	errs   atomic.Int32

	ops, sessions, cuts, authFails, unauthed, resizes, hits, evicted atomic.Int64
}

// soakCache is a cache of the soak and its primary credential.
type soakCache struct {
	login
	name  string
	tag   string // every key the soak writes to the cache starts with tag + ":"
	fills int    // the warm-up wrote tag:fill:0 .. tag:fill:fills-1
}

func (c *soakCache) fillKey(rnd *rand.Rand) string {
	return fmt.Sprintf("%s:fill:%d", c.tag, rnd.IntN(c.fills))
}

// fail reports a failure from any goroutine and stops the load; the first
// few are reported, the rest would only repeat them.
func (s *soak) fail(format string, args ...any) {
	if s.errs.Add(1) <= 10 {
		s.t.Errorf(format, args...)
	}
	s.cancel()
}

func (s *soak) rand() *rand.Rand { return rand.New(rand.NewPCG(s.seed, s.nextID.Add(1))) }

// soakPool is printable text values are cut from, so that a wrong value
// reads clearly in a failure.
var soakPool = func() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = letters[r.IntN(len(letters))]
	}
	return string(b)
}()

func soakPayload(rnd *rand.Rand, n int) string {
	off := rnd.IntN(len(soakPool) - n + 1)
	return soakPool[off : off+n]
}

// soakSize draws a value size: mostly small, some of a few KiB, a few of
// tens of KiB, so that many slab classes are used.
func soakSize(rnd *rand.Rand) int {
	switch p := rnd.IntN(100); {
	case p < 60:
		return 1 + rnd.IntN(512)
	case p < 90:
		return 512 + rnd.IntN(8<<10)
	default:
		return 8<<10 + rnd.IntN(56<<10)
	}
}

// warmUp fills every cache past its limit, so that the baseline is taken
// with the slab memory in use, then runs one session of each kind so that
// whatever the server starts lazily exists at the baseline too.
func (s *soak) warmUp() {
	var wg sync.WaitGroup
	for _, c := range s.caches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.fill(c); err != nil {
				s.fail("warm-up of cache %s: %v", c.name, err)
			}
		}()
	}
	wg.Wait()
	if s.ctx.Err() != nil {
		return
	}
	for i, session := range []func(*soakWorker) error{s.mcSession, s.textSession, s.binarySession} {
		w := s.worker(s.caches[i%len(s.caches)], "warm")
		if err := session(w); err != nil {
			s.fail("warm-up session: %v", err)
		}
	}
	if err := s.badSession(s.rand()); err != nil {
		s.fail("warm-up failed login: %v", err)
	}
	s.h.resize(s.caches[0].CacheID, soakCacheMiB)
}

// fill writes one and a half times the cache's limit in values of 8 to 32
// KiB.
func (s *soak) fill(c *soakCache) error {
	tc, err := dialSoakText(&net.Dialer{Timeout: soakIOTimeout}, s.h.Addr)
	if err != nil {
		return err
	}
	defer tc.c.Close()
	if got, err := tc.store("set", c.Username, c.Password); err != nil || got != "STORED" {
		return fmt.Errorf("text login: %q %v", got, err)
	}
	rnd := s.rand()
	for written := 0; written < soakCacheMiB<<20*3/2; c.fills++ {
		key := fmt.Sprintf("%s:fill:%d", c.tag, c.fills)
		v := key + "|" + soakPayload(rnd, 8<<10+rnd.IntN(24<<10))
		if err := tc.set(key, v); err != nil {
			return err
		}
		written += len(v)
	}
	return nil
}

// soakFigures are the server's resources the soak holds to a baseline.
type soakFigures struct {
	goroutines, fds int
	rss             int64
}

// figures reads the server's goroutines (its /metrics), open descriptors
// and RSS (both from /proc). The descriptors are counted before the
// scrape, whose own connection would otherwise be one of them.
func (s *soak) figures() (soakFigures, error) {
	var f soakFigures
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.h.Pid))
	if err != nil {
		return f, err
	}
	f.fds = len(fds)
	if f.rss, err = s.h.RSS(); err != nil {
		return f, err
	}
	req, _ := http.NewRequest("GET", "http://"+s.h.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.h.token)
	// No keep-alive: an idle connection would hold a descriptor (and a
	// goroutine) in the server between samples.
	client := http.Client{Timeout: soakIOTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return f, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return f, fmt.Errorf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f.goroutines, err = strconv.Atoi(strings.TrimSpace(v))
			return f, err
		}
	}
	return f, errors.New("/metrics has no go_goroutines")
}

// closeAdminConns drops the keep-alive connections the admin API calls
// leave in http.DefaultTransport: each holds a descriptor in the server.
func closeAdminConns() {
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// baseline is the least of a few samples taken once the warm-up's
// connections have closed: a sample can catch a connection mid-close.
func (s *soak) baseline() (soakFigures, error) {
	closeAdminConns()
	time.Sleep(time.Second)
	var base soakFigures
	for i := 0; i < 3; i++ {
		f, err := s.figures()
		if err != nil {
			return base, err
		}
		if i == 0 {
			base = f
		}
		base.goroutines, base.fds, base.rss = min(base.goroutines, f.goroutines), min(base.fds, f.fds), min(base.rss, f.rss)
		time.Sleep(300 * time.Millisecond)
	}
	return base, nil
}

// settle waits, at most soakSettle, for the figures to come back within
// their slack of the baseline, and returns the last ones read.
func (s *soak) settle(base soakFigures) (soakFigures, error) {
	deadline := time.Now().Add(soakSettle)
	for {
		closeAdminConns()
		f, err := s.figures()
		if err != nil {
			return f, err
		}
		back := f.goroutines <= base.goroutines+soakGoroutineSlack && f.fds <= base.fds+soakFDSlack && f.rss <= rssLimit(base.rss)
		if back || time.Now().After(deadline) {
			return f, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// load runs every kind of client for d, and returns once all of them have
// hung up.
func (s *soak) load(d time.Duration) {
	ctx, stop := context.WithTimeout(s.ctx, d)
	defer stop()
	var wg sync.WaitGroup
	run := func(name string, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					s.fail("%s panicked: %v", name, r)
				}
			}()
			f()
		}()
	}
	// sessions runs one client's sessions back to back until the end.
	sessions := func(name string, w *soakWorker, session func(*soakWorker) error) {
		w.ctx = ctx
		run(name, func() {
			for ctx.Err() == nil {
				if err := session(w); err != nil {
					s.fail("%s on cache %s: %v", name, w.cache.name, err)
					return
				}
				s.sessions.Add(1)
			}
		})
	}
	for i := 0; i < 3; i++ {
		c := s.caches[i%len(s.caches)]
		sessions(fmt.Sprintf("SASL client m%d", i), s.worker(c, fmt.Sprintf("m%d", i)), s.mcSession)
		sessions(fmt.Sprintf("text client t%d", i), s.worker(s.caches[(i+1)%len(s.caches)], fmt.Sprintf("t%d", i)), s.textSession)
	}
	sessions("binary client b0", s.worker(s.caches[2%len(s.caches)], "b0"), s.binarySession)
	run("failing logins", func() {
		rnd := s.rand()
		for ctx.Err() == nil {
			if err := s.badSession(rnd); err != nil {
				s.fail("failing logins from 127.0.0.2: %v", err)
				return
			}
			sleepCtx(ctx, time.Duration(5+rnd.IntN(25))*time.Millisecond)
		}
	})
	run("resizer", func() {
		rnd := s.rand()
		for sleepCtx(ctx, time.Duration(200+rnd.IntN(500))*time.Millisecond) {
			c, mb := s.caches[rnd.IntN(len(s.caches))], soakSizes[rnd.IntN(len(soakSizes))]
			st, err := s.h.tryAdmin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", c.CacheID), map[string]any{"memory_limit_mb": mb}, nil)
			if err != nil || st != 200 {
				s.fail("resizing cache %s to %d MiB: status %d %v", c.name, mb, st, err)
				return
			}
			s.resizes.Add(1)
		}
	})
	run("exit watch", func() {
		for sleepCtx(ctx, 100*time.Millisecond) {
			if s.h.Exited() {
				s.fail("the server exited during the load; output:\n%s", s.h.Output())
				return
			}
		}
	})
	wg.Wait()
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// soakWorker is one client's keys and what it wrote to them. Only that
// client writes them, so it knows what each must hold: its value (or a
// miss, when evicted), and a miss for good once deleted or seen evicted.
type soakWorker struct {
	s     *soak
	ctx   context.Context
	cache *soakCache
	ns    string // the worker's keys are ns:0 .. ns:soakKeys-1, and ns:ctr
	rnd   *rand.Rand
	want  map[string]string
}

func (s *soak) worker(c *soakCache, name string) *soakWorker {
	return &soakWorker{s: s, ctx: s.ctx, cache: c, ns: c.tag + ":" + name, rnd: s.rand(), want: map[string]string{}}
}

func (w *soakWorker) key(i int) string { return w.ns + ":" + strconv.Itoa(i) }

// foreignKey is a key the warm-up wrote to another cache.
func (w *soakWorker) foreignKey() string {
	for {
		if c := w.s.caches[w.rnd.IntN(len(w.s.caches))]; c != w.cache {
			return c.fillKey(w.rnd)
		}
	}
}

// soakClient is the part of a memcache client the soak drives.
type soakClient interface {
	set(key, val string) error
	get(key string) (val string, found bool, err error)
	del(key string) (found bool, err error)
	// incr fails with NOT_FOUND on a missing key, as the text command does.
	incr(key string, delta uint64) (n uint64, found bool, err error)
	appendTo(key, val string) (stored bool, err error)
}

// exercise runs a few dozen random commands on c; an error is one the
// client saw (protocol or I/O), a wrong answer is reported at once.
func (w *soakWorker) exercise(c soakClient) error {
	n := 20 + w.rnd.IntN(200)
	for i := 0; i < n && w.ctx.Err() == nil; i++ {
		if err := w.step(c); err != nil {
			return err
		}
		w.s.ops.Add(1)
	}
	return nil
}

func (w *soakWorker) step(c soakClient) error {
	key := w.key(w.rnd.IntN(soakKeys))
	want, known := w.want[key]
	p := w.rnd.IntN(100)
	if p >= 82 && p < 90 && known && len(want) > 64<<10 {
		p = 0 // rewrite rather than append: the value must stay under the item size limit
	}
	switch {
	case p < 35:
		v := key + "|" + soakPayload(w.rnd, soakSize(w.rnd))
		if err := c.set(key, v); err != nil {
			return err
		}
		w.want[key] = v
	case p < 75:
		v, found, err := c.get(key)
		if err != nil {
			return err
		}
		w.check(key, v, found)
	case p < 82:
		found, err := c.del(key)
		if err != nil {
			return err
		}
		if found && !known {
			w.s.fail("%s: delete %s found a key deleted or evicted before", w.ns, key)
		}
		if !found && known {
			w.s.evicted.Add(1)
		}
		delete(w.want, key)
	case p < 90:
		tail := soakPayload(w.rnd, 1+w.rnd.IntN(256))
		stored, err := c.appendTo(key, tail)
		if err != nil {
			return err
		}
		switch {
		case stored && !known:
			w.s.fail("%s: append to %s stored onto a key deleted or evicted before", w.ns, key)
		case stored:
			w.want[key] = want + tail
		case known:
			w.s.evicted.Add(1)
			delete(w.want, key)
		}
	case p < 97:
		return w.count(c)
	default:
		fk := w.foreignKey()
		v, found, err := c.get(fk)
		if err != nil {
			return err
		}
		if found {
			w.s.fail("%s: cache %s answered a get of another cache's key %s: %d bytes %.40q", w.ns, w.cache.name, fk, len(v), v)
		}
	}
	return nil
}

// check holds a get's answer to what the worker wrote.
func (w *soakWorker) check(key, v string, found bool) {
	want, known := w.want[key]
	switch {
	case !found:
		if known {
			w.s.evicted.Add(1)
			delete(w.want, key)
		}
	case !strings.HasPrefix(v, key+"|"):
		w.s.fail("%s: get %s on cache %s returned another key's value (%d bytes): %.60q", w.ns, key, w.cache.name, len(v), v)
	case !known:
		w.s.fail("%s: get %s hit a key deleted or evicted before: %d bytes", w.ns, key, len(v))
	case v != want:
		w.s.fail("%s: get %s returned %d bytes %.60q..., want the %d bytes set: %.60q...", w.ns, key, len(v), v, len(want), want)
	default:
		w.s.hits.Add(1)
	}
}

// count increments the worker's counter, creating it again when evicted.
func (w *soakWorker) count(c soakClient) error {
	key := w.ns + ":ctr"
	delta := uint64(1 + w.rnd.IntN(100))
	n, found, err := c.incr(key, delta)
	if err != nil {
		return err
	}
	want, known := w.want[key]
	if !found {
		if known {
			w.s.evicted.Add(1)
		}
		w.want[key] = "0"
		return c.set(key, "0")
	}
	old, _ := strconv.ParseUint(want, 10, 64)
	switch {
	case !known:
		w.s.fail("%s: incr %s found a counter evicted before (= %d)", w.ns, key, n)
	case n != old+delta:
		w.s.fail("%s: incr %s by %d from %d gave %d", w.ns, key, delta, old, n)
	}
	w.want[key] = strconv.FormatUint(n, 10)
	return nil
}

// mcSession logs in over SASL with memcachier/mc, runs commands and quits.
func (s *soak) mcSession(w *soakWorker) error {
	cfg := mc.DefaultConfig()
	cfg.Retries = 0 // a retried write could run twice
	cfg.Failover = false
	cfg.ConnectionTimeout = soakIOTimeout
	c := mc.NewMCwithConfig(s.h.Addr, w.cache.Username, w.cache.Password, cfg)
	defer c.Quit()
	return w.exercise(soakMC{c})
}

// soakMC adapts memcachier/mc to soakClient.
type soakMC struct{ c *mc.Client }

func mcStatus(err error) uint16 {
	var e *mc.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return mc.StatusUnknownError
}

func (m soakMC) set(key, val string) error {
	if _, err := m.c.Set(key, val, 0, 0, 0); err != nil {
		return fmt.Errorf("set %s (%d bytes): %w", key, len(val), err)
	}
	return nil
}

func (m soakMC) get(key string) (string, bool, error) {
	v, _, _, err := m.c.Get(key)
	if err != nil && mcStatus(err) == mc.StatusNotFound {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("get %s: %w", key, err)
	}
	return v, true, nil
}

func (m soakMC) del(key string) (bool, error) {
	err := m.c.Del(key)
	if err != nil && mcStatus(err) == mc.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return true, nil
}

func (m soakMC) incr(key string, delta uint64) (uint64, bool, error) {
	// An expiry of all ones: NOT_FOUND instead of creating the counter.
	n, _, err := m.c.Incr(key, delta, 0, 0xffffffff, 0)
	if err != nil && mcStatus(err) == mc.StatusNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("incr %s: %w", key, err)
	}
	return n, true, nil
}

func (m soakMC) appendTo(key, val string) (bool, error) {
	_, err := m.c.Append(key, val, 0)
	if err != nil && mcStatus(err) == mc.StatusValueNotStored {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("append %s: %w", key, err)
	}
	return true, nil
}

// soakText is a text-protocol client that returns errors instead of
// failing the test, for use from the load's goroutines.
type soakText struct {
	c net.Conn
	r *bufio.Reader
}

func dialSoakText(d *net.Dialer, addr string) (*soakText, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &soakText{c: c, r: bufio.NewReader(c)}, nil
}

func (tc *soakText) send(s string) error {
	tc.c.SetDeadline(time.Now().Add(soakIOTimeout))
	_, err := io.WriteString(tc.c, s)
	return err
}

func (tc *soakText) line() (string, error) {
	l, err := tc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

func (tc *soakText) call(req string) (string, error) {
	if err := tc.send(req); err != nil {
		return "", err
	}
	return tc.line()
}

func (tc *soakText) store(verb, key, val string) (string, error) {
	return tc.call(fmt.Sprintf("%s %s 0 0 %d\r\n%s\r\n", verb, key, len(val), val))
}

func (tc *soakText) set(key, val string) error {
	if got, err := tc.store("set", key, val); err != nil || got != "STORED" {
		return fmt.Errorf("set %s (%d bytes): %q %v", key, len(val), got, err)
	}
	return nil
}

func (tc *soakText) get(key string) (string, bool, error) {
	vals, err := tc.getMulti(key)
	v, ok := vals[key]
	return v, ok, err
}

// getMulti reads a get's VALUE blocks; an answer for a key that was not
// asked for is an error.
func (tc *soakText) getMulti(keys ...string) (map[string]string, error) {
	vals := map[string]string{}
	l, err := tc.call("get " + strings.Join(keys, " ") + "\r\n")
	for ; err == nil && l != "END"; l, err = tc.line() {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "VALUE" {
			return nil, fmt.Errorf("get %v: %q", keys, l)
		}
		if !slices.Contains(keys, f[1]) {
			return nil, fmt.Errorf("get %v: an answer for key %q", keys, f[1])
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("get %v: %q", keys, l)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(tc.r, b); err != nil {
			return nil, fmt.Errorf("get %v: reading %d bytes: %v", keys, n, err)
		}
		if string(b[n:]) != "\r\n" {
			return nil, fmt.Errorf("get %v: the value of %s does not end in CRLF", keys, f[1])
		}
		vals[f[1]] = string(b[:n])
	}
	if err != nil {
		return nil, fmt.Errorf("get %v: %v", keys, err)
	}
	return vals, nil
}

func (tc *soakText) del(key string) (bool, error) {
	switch got, err := tc.call("delete " + key + "\r\n"); {
	case err == nil && got == "DELETED":
		return true, nil
	case err == nil && got == "NOT_FOUND":
		return false, nil
	default:
		return false, fmt.Errorf("delete %s: %q %v", key, got, err)
	}
}

func (tc *soakText) incr(key string, delta uint64) (uint64, bool, error) {
	got, err := tc.call(fmt.Sprintf("incr %s %d\r\n", key, delta))
	if err == nil && got == "NOT_FOUND" {
		return 0, false, nil
	}
	n, perr := strconv.ParseUint(got, 10, 64)
	if err != nil || perr != nil {
		return 0, false, fmt.Errorf("incr %s: %q %v", key, got, err)
	}
	return n, true, nil
}

func (tc *soakText) appendTo(key, val string) (bool, error) {
	switch got, err := tc.store("append", key, val); {
	case err == nil && got == "STORED":
		return true, nil
	case err == nil && got == "NOT_STORED":
		return false, nil
	default:
		return false, fmt.Errorf("append %s: %q %v", key, got, err)
	}
}

// textSession logs in with the set extension, runs commands, checks a
// multi-get that mixes its keys with another cache's, and hangs up in one
// of several ways.
func (s *soak) textSession(w *soakWorker) error {
	tc, err := dialSoakText(&net.Dialer{Timeout: soakIOTimeout}, s.h.Addr)
	if err != nil {
		return err
	}
	defer tc.c.Close()
	if got, err := tc.store("set", w.cache.Username, w.cache.Password); err != nil || got != "STORED" {
		return fmt.Errorf("text login: %q %v", got, err)
	}
	if err := w.exercise(tc); err != nil {
		return err
	}
	mine := []string{w.key(w.rnd.IntN(soakKeys)), w.key(w.rnd.IntN(soakKeys))}
	foreign := []string{w.foreignKey(), w.foreignKey()}
	vals, err := tc.getMulti(append(slices.Clone(mine), foreign...)...)
	if err != nil {
		return err
	}
	for _, k := range foreign {
		if v, ok := vals[k]; ok {
			s.fail("%s: cache %s answered a get of another cache's key %s: %d bytes", w.ns, w.cache.name, k, len(v))
		}
	}
	for _, k := range mine {
		v, ok := vals[k]
		w.check(k, v, ok)
	}

	scratch := w.ns + ":scratch" // never read: a cut request may or may not have run
	switch w.rnd.IntN(6) {
	case 0:
		if err := tc.send("quit\r\n"); err != nil {
			return err
		}
		if _, err := tc.r.ReadByte(); err != io.EOF {
			return fmt.Errorf("after quit: %v, want the server to close", err)
		}
		return nil
	case 1:
		return nil // closed after the last answer
	case 2:
		line := "get " + w.key(0) + "\r\n"
		err = tc.send(line[:1+w.rnd.IntN(len(line)-1)])
	case 3:
		err = tc.send(fmt.Sprintf("set %s 0 0 4096\r\n%s", scratch, soakPayload(w.rnd, w.rnd.IntN(4096))))
	case 4:
		// Answers the client never reads: the server writes into a
		// closed socket.
		err = tc.send(strings.Repeat("get "+w.cache.fillKey(w.rnd)+"\r\n", 30))
	case 5:
		line := fmt.Sprintf("append %s 0 0 10\r\n", scratch)
		err = tc.send(line[:1+w.rnd.IntN(len(line)-1)])
	}
	s.cuts.Add(1)
	return err
}

// soakBinRequest encodes one binary request.
func soakBinRequest(op byte, key, extras, value []byte) []byte {
	h := make([]byte, 24, 24+len(extras)+len(key)+len(value))
	h[0], h[1] = 0x80, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	return append(append(append(h, extras...), key...), value...)
}

// soakBinCall sends one binary request and reads its response's status
// and value.
func soakBinCall(c net.Conn, r *bufio.Reader, req []byte) (uint16, []byte, error) {
	c.SetDeadline(time.Now().Add(soakIOTimeout))
	if _, err := c.Write(req); err != nil {
		return 0, nil, err
	}
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0] != 0x81 || h[1] != req[1] {
		return 0, nil, fmt.Errorf("binary response magic %#x opcode %#x to opcode %#x", h[0], h[1], req[1])
	}
	body := make([]byte, binary.BigEndian.Uint32(h[8:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	skip := int(h[4]) + int(binary.BigEndian.Uint16(h[2:]))
	if skip > len(body) {
		return 0, nil, fmt.Errorf("binary response: extras and key longer than its body")
	}
	return binary.BigEndian.Uint16(h[6:]), body[skip:], nil
}

// binarySession logs in over SASL on a raw connection, sets and reads
// back a few keys, and hangs up, mostly in the middle of a binary
// request.
func (s *soak) binarySession(w *soakWorker) error {
	c, err := net.DialTimeout("tcp", s.h.Addr, soakIOTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	st, _, err := soakBinCall(c, r, soakBinRequest(opSASLAuth, []byte("PLAIN"), nil, []byte("\x00"+w.cache.Username+"\x00"+w.cache.Password)))
	if err != nil || st != stOK {
		return fmt.Errorf("SASL login: status %#x %v", st, err)
	}
	for n := 5 + w.rnd.IntN(20); n > 0 && w.ctx.Err() == nil; n-- {
		key := w.key(w.rnd.IntN(soakKeys))
		v := key + "|" + soakPayload(w.rnd, soakSize(w.rnd))
		if st, _, err := soakBinCall(c, r, soakBinRequest(opSet, []byte(key), storeExtras(0, 0), []byte(v))); err != nil || st != stOK {
			return fmt.Errorf("SET %s: status %#x %v", key, st, err)
		}
		w.want[key] = v
		st, got, err := soakBinCall(c, r, soakBinRequest(opGet, []byte(key), nil, nil))
		if err != nil || (st != stOK && st != stNotFound) {
			return fmt.Errorf("GET %s: status %#x %v", key, st, err)
		}
		w.check(key, string(got), st == stOK)
		s.ops.Add(2)
	}

	switch w.rnd.IntN(4) {
	case 0:
		req := soakBinRequest(opGet, []byte(w.key(0)), nil, nil)
		_, err = c.Write(req[:1+w.rnd.IntN(23)])
	case 1:
		// The header announces a value that never fully arrives.
		req := soakBinRequest(opSet, []byte(w.ns+":scratch"), storeExtras(0, 0), []byte(soakPayload(w.rnd, 4096)))
		_, err = c.Write(req[:24+w.rnd.IntN(len(req)-24)])
	case 2:
		var reqs []byte
		for i := 0; i < 30; i++ {
			reqs = append(reqs, soakBinRequest(opGet, []byte(w.cache.fillKey(w.rnd)), nil, nil)...)
		}
		_, err = c.Write(reqs)
	case 3:
		if _, _, err := soakBinCall(c, r, soakBinRequest(opQuit, nil, nil, nil)); err != nil {
			return fmt.Errorf("QUIT: %v", err)
		}
		if _, err := r.ReadByte(); err != io.EOF {
			return fmt.Errorf("after QUIT: %v, want the server to close", err)
		}
		return nil
	}
	s.cuts.Add(1)
	return err
}

// soakBadDialer dials from another loopback address: the server throttles
// failed logins per source address, and the soak's good clients, on
// 127.0.0.1, must not be.
var soakBadDialer = &net.Dialer{Timeout: soakIOTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}

// badSession fails to log in, or sends a command without logging in, or
// hangs up halfway through a login. Past the server's allowance of
// failures the address is throttled, which is one more way to fail.
func (s *soak) badSession(rnd *rand.Rand) error {
	tc, err := dialSoakText(soakBadDialer, s.h.Addr)
	if err != nil {
		return err
	}
	defer tc.c.Close()
	c := s.caches[rnd.IntN(len(s.caches))]
	wrong := c.Password[:len(c.Password)-1] + "?"
	textFailure := func(user, pass string) error {
		got, err := tc.store("set", user, pass)
		if err != nil || (got != authFailureLine && !strings.HasPrefix(got, throttledPrefix)) {
			return fmt.Errorf("text login as %q with a wrong password: %q %v", user, got, err)
		}
		s.authFails.Add(1)
		return nil
	}
	switch rnd.IntN(6) {
	case 0:
		return textFailure(c.Username, wrong)
	case 1:
		return textFailure("nosuchuser"+strconv.Itoa(rnd.IntN(1000)), wrong)
	case 2:
		st, _, err := soakBinCall(tc.c, tc.r, soakBinRequest(opSASLAuth, []byte("PLAIN"), nil, []byte("\x00"+c.Username+"\x00"+wrong)))
		if err != nil || st != stAuthError {
			return fmt.Errorf("SASL with a wrong password: status %#x %v", st, err)
		}
		s.authFails.Add(1)
	case 3:
		got, err := tc.call("get " + c.fillKey(rnd) + "\r\n")
		if err != nil || !strings.HasPrefix(got, "CLIENT_ERROR ") {
			return fmt.Errorf("text get before logging in: %q %v", got, err)
		}
		s.unauthed.Add(1)
	case 4:
		st, v, err := soakBinCall(tc.c, tc.r, soakBinRequest(opGet, []byte(c.fillKey(rnd)), nil, nil))
		if err != nil || st != stAuthError {
			return fmt.Errorf("binary GET before logging in: status %#x %.40q %v", st, v, err)
		}
		s.unauthed.Add(1)
	case 5:
		login := fmt.Sprintf("set %s 0 0 %d\r\n%s", c.Username, len(c.Password), c.Password)
		if err := tc.send(login[:1+rnd.IntN(len(login)-1)]); err != nil {
			return err
		}
		s.cuts.Add(1)
	}
	return nil
}
