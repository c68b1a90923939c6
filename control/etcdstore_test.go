package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/memhive/memhive/internal/etcdtest"
)

// logBuffer collects a store's log, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

type etcdNode struct {
	*Etcd
	log *logBuffer
	dir string
}

// openNode opens an Etcd on endpoints and prefix with its own directory
// (dir, or a new one), a 1 s dial timeout and lease, and closes it when
// the test ends.
func openNode(t *testing.T, endpoints []string, prefix, dir string, p Policy) etcdNode {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	lb := &logBuffer{}
	e, err := OpenEtcd(EtcdConfig{
		Endpoints: endpoints, Prefix: prefix, Dir: dir,
		DialTimeout: time.Second, LeaseTTL: time.Second,
		Logger: slog.New(slog.NewTextHandler(lb, nil)),
	}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return etcdNode{e, lb, dir}
}

// crash stops e as a killed process would: no lease revoked, no Leave.
func (e *Etcd) crash() { e.closeOnce.Do(func() { e.shutdown() }) }

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// changeLog records what a watcher is given.
type changeLog struct {
	mu  sync.Mutex
	got []Change
}

func watchLog(s Store) *changeLog {
	l := &changeLog{}
	s.Watch(func(c Change) {
		l.mu.Lock()
		l.got = append(l.got, c)
		l.mu.Unlock()
	})
	return l
}

func (l *changeLog) has(f func(Change) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.got, f)
}

// TestEtcdTwoNodes: a change on one node reaches the other's reads and
// watchers, and nodes changing the same caches at once never break the
// invariants: one primary per cache with credentials, unique usernames
// and cache names.
func TestEtcdTwoNodes(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/two", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/two", "", Policy{})
	bLog := watchLog(b)

	c, err := a.CreateCache(Cache{Name: "shared", LimitBytes: mib, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cr, pw, err := a.CreateCredential(c.ID, NewCredential{Caps: CapAll})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to see a's credential", func() bool {
		got, err := b.CredentialByUsername(cr.Username)
		return err == nil && Verify(got, []byte(pw)) && got.Primary
	})
	waitUntil(t, 5*time.Second, "b's watcher to get a's credential", func() bool {
		return bLog.has(func(ch Change) bool { return ch.Kind == CredentialChanged && ch.CredentialID == cr.ID })
	})
	if _, err := b.UpdateCache(c.ID, CacheUpdate{Plan: new("gold")}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "a to see b's update", func() bool {
		got, err := a.Cache(c.ID)
		return err == nil && got.Plan == "gold"
	})
	// Activity is the latest any node reported, and notifies nobody.
	t1 := time.Unix(1_800_000_000, 0).UTC()
	if err := a.MarkActive(map[uint32]time.Time{c.ID: t1}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to see a's activity", func() bool { got, _ := b.Cache(c.ID); return got.LastActive.Equal(t1) })
	if err := b.MarkActive(map[uint32]time.Time{c.ID: t1.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Cache(c.ID); !got.LastActive.Equal(t1) {
		t.Errorf("an older time from another node moved activity back to %v", got.LastActive)
	}
	if err := b.MarkActive(map[uint32]time.Time{c.ID: t1.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "a to see b's later activity", func() bool { got, _ := a.Cache(c.ID); return got.LastActive.Equal(t1.Add(time.Hour)) })
	if bLog.has(func(ch Change) bool { return ch.Kind == CacheChanged && !ch.Cache.LastActive.IsZero() }) {
		t.Error("activity was delivered as a change")
	}

	// The secret is one for the cluster.
	if a.Secret() == "" || a.Secret() != b.Secret() || len(a.Secret()) != 64 {
		t.Errorf("secrets %q and %q: want one of 64 hex digits", a.Secret(), b.Secret())
	}

	// Both nodes create caches of the same names at once: one wins each.
	var wg sync.WaitGroup
	wins := make([]int, 10)
	var winMu sync.Mutex
	for _, n := range []*Etcd{a.Etcd, b.Etcd} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range wins {
				_, err := n.CreateCache(Cache{Name: fmt.Sprintf("dup%d", i), LimitBytes: mib})
				if err == nil {
					winMu.Lock()
					wins[i]++
					winMu.Unlock()
				} else if !errors.Is(err, ErrExists) {
					t.Errorf("create dup%d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	for i, w := range wins {
		if w != 1 {
			t.Errorf("dup%d created %d times", i, w)
		}
	}

	// Hammer credentials of three caches from both nodes.
	var caches []uint32
	for i := range 3 {
		c, err := a.CreateCache(Cache{Name: fmt.Sprintf("h%d", i), LimitBytes: mib})
		if err != nil {
			t.Fatal(err)
		}
		caches = append(caches, c.ID)
	}
	waitUntil(t, 5*time.Second, "b to see the caches", func() bool { _, err := b.Cache(caches[2]); return err == nil })
	for g := range 8 {
		n := []*Etcd{a.Etcd, b.Etcd}[g%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for range 25 {
				cacheID := caches[rng.Intn(len(caches))]
				creds, _ := n.Credentials(cacheID)
				var err error
				switch op := rng.Intn(4); {
				case op == 0 || len(creds) == 0:
					_, _, err = n.CreateCredential(cacheID, NewCredential{Primary: rng.Intn(2) == 0})
				case op == 1:
					_, err = n.Promote(creds[rng.Intn(len(creds))].ID)
				case op == 2:
					err = n.DeleteCredential(creds[rng.Intn(len(creds))].ID)
				default:
					_, _, err = n.CreateCredential(cacheID, NewCredential{})
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrLastPrimary) {
					t.Errorf("hammer: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	// Once b has a's last change, both copies are the same.
	last, err := a.CreateCache(Cache{Name: "last", LimitBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to catch up", func() bool { _, err := b.Cache(last.ID); return err == nil })
	fresh := openNode(t, etcd.Endpoints(), "/two", "", Policy{})
	want, _ := fresh.Credentials(0)
	for _, n := range []etcdNode{a, b} {
		if got, _ := n.Credentials(0); !slices.EqualFunc(got, want, func(x, y Credential) bool {
			return x.ID == y.ID && x.Primary == y.Primary && x.Username == y.Username
		}) {
			t.Errorf("a node's copy differs from etcd:\n%+v\n%+v", got, want)
		}
	}
	usernames := map[string]bool{}
	for _, cacheID := range caches {
		creds, _ := fresh.Credentials(cacheID)
		var primaries []uint32
		for _, cr := range creds {
			if cr.Primary {
				primaries = append(primaries, cr.ID)
			}
			if usernames[cr.Username] {
				t.Errorf("username %s twice", cr.Username)
			}
			usernames[cr.Username] = true
		}
		if len(creds) > 0 && len(primaries) != 1 {
			t.Errorf("cache %d: %d credentials, primaries %v; want exactly one", cacheID, len(creds), primaries)
		}
		fresh.mu.RLock()
		id, _, ok := fresh.st.index(idKey(keyPrimary, cacheID))
		fresh.mu.RUnlock()
		if len(creds) > 0 && (!ok || id != primaries[0]) || len(creds) == 0 && ok {
			t.Errorf("cache %d: primary index %d (%v), primaries %v", cacheID, id, ok, primaries)
		}
	}
	t.Logf("%d credentials left in 3 caches after the hammering", len(usernames))
}

// TestEtcdMembership: the member list is sorted; Leave removes a node at
// once; a node that dies leaves within its lease; a name held by another
// live node is refused; a node joins again; limits are split over the
// live nodes.
func TestEtcdMembership(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/members", "", Policy{MemoryBytes: 10 * mib})
	b := openNode(t, etcd.Endpoints(), "/members", "", Policy{})
	var mu sync.Mutex
	var lists [][]string
	names := func(ms []Member) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	a.WatchMembers(func(ms []Member) {
		mu.Lock()
		lists = append(lists, names(ms))
		mu.Unlock()
	})
	sees := func(n etcdNode, want ...string) func() bool {
		return func() bool { return slices.Equal(names(n.Members()), want) }
	}
	if _, err := a.CreateCache(Cache{Name: "big", LimitBytes: 15 * mib}); !errors.Is(err, ErrOverCommit) {
		t.Fatalf("15 MiB on a lone 10 MiB node: %v", err)
	}
	// Joined in the reverse order of names: listed by name.
	if err := b.Join(Member{Name: "node-b", Advertise: "127.0.0.1:2", HTTP: "127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(Member{Name: "node-a", Advertise: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "both to see both", func() bool { return sees(a, "node-a", "node-b")() && sees(b, "node-a", "node-b")() })
	if m := a.Members()[1]; m.Advertise != "127.0.0.1:2" || m.HTTP != "127.0.0.1:3" {
		t.Errorf("member as seen by another node: %+v", m)
	}
	// Two nodes: each holds half of every cache.
	if _, err := a.CreateCache(Cache{Name: "big", LimitBytes: 15 * mib}); err != nil {
		t.Errorf("15 MiB over two 10 MiB nodes: %v", err)
	}
	c := openNode(t, etcd.Endpoints(), "/members", "", Policy{})
	if err := c.Join(Member{Name: "node-a", Advertise: "127.0.0.1:9"}); !errors.Is(err, ErrExists) {
		t.Fatalf("joining under a live node's name: %v", err)
	}
	// Leave: gone at once, well before the lease would expire.
	start := time.Now()
	b.Leave()
	if !sees(b, "node-a")() {
		t.Errorf("the leaving node still lists %v", names(b.Members()))
	}
	waitUntil(t, time.Second, "a to see b leave", sees(a, "node-a"))
	t.Logf("left in %v", time.Since(start))
	// A crash: gone when the lease expires.
	if err := c.Join(Member{Name: "node-c"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "a to see c", sees(a, "node-a", "node-c"))
	start = time.Now()
	c.crash()
	waitUntil(t, 10*time.Second, "a to see c's lease expire", sees(a, "node-a"))
	t.Logf("a crashed node left in %v", time.Since(start))
	// Joining again.
	if err := b.Join(Member{Name: "node-b"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "a to see b again", sees(a, "node-a", "node-b"))
	mu.Lock()
	got := slices.Clone(lists)
	mu.Unlock()
	want := [][]string{nil, {"node-b"}, {"node-a", "node-b"}, {"node-a"}, {"node-a", "node-c"}, {"node-a"}, {"node-a", "node-b"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("WatchMembers saw %v, want %v", got, want)
	}

	// A node killed and restarted within its lease takes its key over
	// (same name and addresses), and keeps it when the old lease expires.
	d := openNode(t, etcd.Endpoints(), "/members", "", Policy{})
	self := Member{Name: "node-d", Advertise: "127.0.0.1:4", HTTP: "127.0.0.1:5"}
	if err := d.Join(self); err != nil {
		t.Fatal(err)
	}
	d.crash()
	d2 := openNode(t, etcd.Endpoints(), "/members", "", Policy{})
	if err := d2.Join(self); err != nil {
		t.Fatalf("joining again right after a crash: %v", err)
	}
	time.Sleep(3 * time.Second) // past the old lease
	if !sees(a, "node-a", "node-b", "node-d")() {
		t.Errorf("after the old lease expired a sees %v", names(a.Members()))
	}
}

// TestEtcdOutage: with etcd away, changes are ErrUnavailable promptly
// and reads answer; a node opened meanwhile serves the last state it
// saved; when etcd is back, changes flow to every node and members join
// again.
func TestEtcdOutage(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/outage", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/outage", "", Policy{})
	closed := openNode(t, etcd.Endpoints(), "/outage", "", Policy{})
	if err := a.Join(Member{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	c, err := a.CreateCache(Cache{Name: "kept", LimitBytes: mib, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cr, pw, err := a.CreateCredential(c.ID, NewCredential{Caps: CapAll})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to see the credential", func() bool { _, err := b.Credential(cr.ID); return err == nil })
	secret := b.Secret()
	time.Sleep(2 * saveDebounce) // b's copy on disk

	etcd.Stop()
	start := time.Now()
	_, err = a.CreateCache(Cache{Name: "refused", LimitBytes: mib})
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Fatalf("a change with etcd away: %v after %v; want ErrUnavailable within 3s", err, time.Since(start))
	}
	waitUntil(t, 5*time.Second, "a and b to notice", func() bool { return !a.Online() && !b.Online() })
	start = time.Now()
	if err := b.DeleteCredential(cr.ID); !errors.Is(err, ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("a change on a node that knows etcd is away: %v after %v", err, time.Since(start))
	}
	if got, err := a.CredentialByUsername(cr.Username); err != nil || !Verify(got, []byte(pw)) {
		t.Errorf("a read with etcd away: %v", err)
	}
	if err := closed.Join(Member{Name: "closed"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("joining with etcd away: %v", err)
	}
	start = time.Now()
	closed.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close with etcd away took %v", d)
	}
	// b restarts while etcd is away: it serves what it saved.
	b.Close()
	b2 := openNode(t, etcd.Endpoints(), "/outage", b.dir, Policy{})
	if got, err := b2.CredentialByUsername(cr.Username); err != nil || !Verify(got, []byte(pw)) || got.ID != cr.ID {
		t.Fatalf("the saved state after a restart: %+v %v", got, err)
	}
	if b2.Online() || b2.Secret() != secret || len(b2.Members()) != 1 {
		t.Errorf("restarted away from etcd: online %v, secret %q (want %q), members %v", b2.Online(), b2.Secret(), secret, b2.Members())
	}
	// A new node with nothing saved cannot start.
	if _, err := OpenEtcd(EtcdConfig{Endpoints: etcd.Endpoints(), Prefix: "/outage", Dir: t.TempDir(), DialTimeout: 500 * time.Millisecond}, Policy{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("opening with neither etcd nor a saved state: %v", err)
	}
	time.Sleep(2 * time.Second) // past a's lease
	b2Log := watchLog(b2)

	etcd.Restart()
	waitUntil(t, 10*time.Second, "both to see etcd again", func() bool { return a.Online() && b2.Online() })
	var made Cache
	waitUntil(t, 10*time.Second, "a change to be accepted", func() bool {
		made, err = b2.CreateCache(Cache{Name: "after", LimitBytes: mib})
		return err == nil
	})
	waitUntil(t, 5*time.Second, "a to see b2's change", func() bool { _, err := a.Cache(made.ID); return err == nil })
	waitUntil(t, 5*time.Second, "b2's watcher to get it", func() bool {
		return b2Log.has(func(ch Change) bool { return ch.Kind == CacheChanged && ch.CacheID == made.ID })
	})
	waitUntil(t, 10*time.Second, "a to join again", func() bool { return len(b2.Members()) == 1 && b2.Members()[0].Name == "a" })
	for _, n := range []etcdNode{a, b2} {
		if u, r := n.log.count("etcd unreachable; serving the last state seen"), n.log.count("etcd reachable again"); u != 1 || r != 1 {
			t.Errorf("logged unreachable %d times, reachable again %d; want once each:\n%s", u, r, n.log.buf.String())
		}
	}
}

// TestEtcdCompactedWatch: a node whose watch resumes from a compacted
// revision reloads and delivers the difference as Changes.
func TestEtcdCompactedWatch(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/compact", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/compact", "", Policy{})
	gone, err := a.CreateCache(Cache{Name: "gone", LimitBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := a.CreateCache(Cache{Name: "kept", LimitBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	cr, _, err := a.CreateCredential(kept.ID, NewCredential{})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to see them", func() bool { _, err := b.Credential(cr.ID); return err == nil })
	bLog := watchLog(b)

	gate := make(chan struct{})
	hold := func() { <-gate }
	b.beforeWatch.Store(&hold)
	b.cut()
	var last Cache
	for i := range 30 {
		if last, err = a.CreateCache(Cache{Name: fmt.Sprintf("n%d", i), LimitBytes: mib}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeleteCache(gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteCredential(cr.ID); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/compact/secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Cache(last.ID); err == nil {
		t.Fatal("b saw changes while its watch was cut")
	}
	b.beforeWatch.Store(nil)
	close(gate)
	waitUntil(t, 5*time.Second, "b to converge", func() bool {
		_, err1 := b.Cache(last.ID)
		_, err2 := b.Cache(gone.ID)
		_, err3 := b.Credential(cr.ID)
		return err1 == nil && errors.Is(err2, ErrNotFound) && errors.Is(err3, ErrNotFound)
	})
	waitUntil(t, 5*time.Second, "b's watcher to get the difference", func() bool {
		return bLog.has(func(ch Change) bool { return ch.Kind == CacheChanged && ch.CacheID == last.ID }) &&
			bLog.has(func(ch Change) bool { return ch.Kind == CacheDeleted && ch.CacheID == gone.ID }) &&
			bLog.has(func(ch Change) bool { return ch.Kind == CredentialDeleted && ch.CredentialID == cr.ID })
	})
	if n := b.log.count("revision was compacted"); n != 1 {
		t.Errorf("logged the compaction %d times, want once", n)
	}
	// And b follows again.
	again, err := a.CreateCache(Cache{Name: "again", LimitBytes: mib})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "b to follow again", func() bool { _, err := b.Cache(again.ID); return err == nil })
}

// TestHelperEtcdWriter is the child of TestEtcdKillNineLosesNothing.
func TestHelperEtcdWriter(t *testing.T) {
	endpoint := os.Getenv("MEMHIVE_ETCD_WRITER")
	if endpoint == "" {
		t.Skip("only run as the child of TestEtcdKillNineLosesNothing")
	}
	s, err := OpenEtcd(EtcdConfig{Endpoints: []string{endpoint}, Prefix: "/kill", Dir: os.Getenv("MEMHIVE_ETCD_DIR")}, Policy{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	writeUntilKilled(s)
}

// TestEtcdKillNineLosesNothing kills a process writing through an Etcd at
// random moments and checks, reading etcd afresh, that every change it
// was told about is there.
func TestEtcdKillNineLosesNothing(t *testing.T) {
	etcd := etcdtest.Start(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	total := 0
	for round := range 4 {
		acked := killWriter(t, rng, round, "TestHelperEtcdWriter", "MEMHIVE_ETCD_WRITER="+etcd.Endpoint(), "MEMHIVE_ETCD_DIR="+t.TempDir())
		s := openNode(t, etcd.Endpoints(), "/kill", "", Policy{})
		checkAcked(t, round, s, acked)
		s.Close()
		total += len(acked)
	}
	t.Logf("%d acknowledged changes survived 4 kills", total)
}
