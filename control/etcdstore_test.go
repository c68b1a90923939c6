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

// credKeys reads etcd afresh and returns, for each credential record or
// username and certificate index key under prefix, the credential ID it
// holds or points at, by key.
func credKeys(t *testing.T, endpoints []string, prefix string) map[string]uint32 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]uint32{}
	for _, rel := range []string{keyCreds, keyUsernames, keyCertSHA, keyCertCN} {
		resp, err := cli.Get(ctx, prefix+"/"+rel, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			if rel == keyCreds {
				id, _ := parseID(strings.TrimPrefix(k, prefix+"/"+keyCreds))
				out[k] = id
			} else {
				id, _ := parseID(string(kv.Value))
				out[k] = id
			}
		}
	}
	return out
}

// onlyCreds reports the keys of credKeys that hold or point at a
// credential outside ids.
func onlyCreds(keys map[string]uint32, ids ...uint32) []string {
	var stray []string
	for k, id := range keys {
		if !slices.Contains(ids, id) {
			stray = append(stray, k)
		}
	}
	slices.Sort(stray)
	return stray
}

// bigCache creates a cache of n credentials on s, a third of them bound
// to a fingerprint and a fifth to a CN, after one credential of another
// cache (keep) bound to a certificate of its own.
func bigCache(t *testing.T, s *Etcd, name string, n int) (big Cache, creds []Credential, keep Cache, kept Credential) {
	t.Helper()
	var err error
	if keep, err = s.CreateCache(Cache{Name: name + "-keep", LimitBytes: mib}); err != nil {
		t.Fatal(err)
	}
	if kept, _, err = s.CreateCredential(keep.ID, NewCredential{Cert: CertBinding{SHA256: strings.Repeat("ee", 32), CN: "kept"}}); err != nil {
		t.Fatal(err)
	}
	if big, err = s.CreateCache(Cache{Name: name, LimitBytes: mib}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		var b CertBinding
		if i%3 == 0 {
			b.SHA256 = fmt.Sprintf("%064x", i+1)
		}
		if i%5 == 0 {
			b.CN = fmt.Sprintf("app-%d", i)
		}
		cr, _, err := s.CreateCredential(big.ID, NewCredential{Caps: CapAll, Cert: b})
		if err != nil {
			t.Fatalf("credential %d: %v", i, err)
		}
		creds = append(creds, cr)
	}
	t.Logf("%d credentials created in %v", n, time.Since(start))
	return big, creds, keep, kept
}

// checkGone checks that none of creds, nor their cache, can be read on n.
func checkGone(t *testing.T, n etcdNode, cache Cache, creds []Credential, live ...uint32) {
	t.Helper()
	if _, err := n.Cache(cache.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted cache: %v", err)
	}
	for _, cr := range creds {
		if got, err := n.Credential(cr.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("credential %d of the deleted cache: %+v, %v", cr.ID, got, err)
		}
		if got, err := n.CredentialByUsername(cr.Username); !errors.Is(err, ErrNotFound) {
			t.Fatalf("username %s of the deleted cache: %+v, %v", cr.Username, got, err)
		}
	}
	if got, _ := n.Credentials(cache.ID); len(got) != 0 {
		t.Errorf("the deleted cache lists %d credentials", len(got))
	}
	all, _ := n.Credentials(0)
	var ids []uint32
	for _, cr := range all {
		ids = append(ids, cr.ID)
	}
	if !slices.Equal(ids, live) {
		t.Errorf("every credential: %v, want %v", ids, live)
	}
}

// checkDeliveredOnce waits for a change made after the deletion to reach
// l, then checks that l got exactly one CacheDeleted for cache and nothing
// about its credentials.
func checkDeliveredOnce(t *testing.T, writer etcdNode, l *changeLog, cache, other Cache, sentinel string) {
	t.Helper()
	if _, err := writer.UpdateCache(other.ID, CacheUpdate{Plan: &sentinel}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the watcher to get the sentinel", func() bool {
		return l.has(func(ch Change) bool { return ch.Kind == CacheChanged && ch.Cache.Plan == sentinel })
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	deleted := 0
	for _, ch := range l.got {
		switch {
		case ch.Kind == CacheDeleted && ch.CacheID == cache.ID:
			deleted++
		case ch.CacheID == cache.ID:
			t.Errorf("a watcher was given %+v", ch)
		}
	}
	if deleted != 1 {
		t.Errorf("a watcher got %d CacheDeleted, want 1", deleted)
	}
}

// TestEtcdDeleteBigCache: a cache of more credentials than etcd takes
// writes in a transaction is deleted at once for every reader of another
// node (never some of its credentials, always all or none), its watchers
// get one CacheDeleted, and etcd keeps none of the credentials' keys.
func TestEtcdDeleteBigCache(t *testing.T) {
	const n = 300
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/big", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/big", "", Policy{})
	big, creds, keep, kept := bigCache(t, a.Etcd, "big", n)
	waitUntil(t, 10*time.Second, "b to see every credential", func() bool { got, _ := b.Credentials(big.ID); return len(got) == n })
	bLog := watchLog(b)

	// b reads all of the cache's credentials or none, throughout.
	polled := make(chan int, 1)
	go func() {
		reads := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); reads++ {
			got, _ := b.Credentials(big.ID)
			if len(got) == 0 {
				break
			}
			if len(got) != n {
				t.Errorf("b read %d of the deleted cache's %d credentials", len(got), n)
				break
			}
		}
		polled <- reads
	}()
	start := time.Now()
	if err := a.DeleteCache(big.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("a cache of %d credentials deleted in %v; b read it %d times meanwhile", n, time.Since(start), <-polled)
	checkGone(t, a, big, creds, kept.ID)
	checkGone(t, b, big, creds, kept.ID)
	checkDeliveredOnce(t, a, bLog, big, keep, "sentinel")
	if stray := onlyCreds(credKeys(t, etcd.Endpoints(), "/big"), kept.ID); len(stray) > 0 {
		t.Errorf("etcd keeps %d keys of the deleted credentials: %v", len(stray), stray[:min(len(stray), 5)])
	}
	// The certificates are free again, and the other cache's still bound.
	if _, _, err := b.CreateCredential(keep.ID, NewCredential{Cert: creds[0].Cert}); err != nil {
		t.Errorf("binding a deleted credential's certificate: %v", err)
	}
	if _, _, err := b.CreateCredential(keep.ID, NewCredential{Cert: kept.Cert}); !errors.Is(err, ErrExists) {
		t.Errorf("binding a live credential's certificate: %v", err)
	}
}

// TestEtcdDeleteCacheCrash: a node that dies between DeleteCache's two
// steps leaves orphaned credentials that no node shows, whose
// certificates are free at once, and that the next node to load the
// state removes.
func TestEtcdDeleteCacheCrash(t *testing.T) {
	const n = 60
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/orphans", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/orphans", "", Policy{})
	big, creds, keep, kept := bigCache(t, a.Etcd, "big", n)
	waitUntil(t, 10*time.Second, "b to see every credential", func() bool { got, _ := b.Credentials(big.ID); return len(got) == n })
	bLog := watchLog(b)

	a.stopAfterCacheDelete.Store(true)
	if err := a.DeleteCache(big.ID); err != nil {
		t.Fatal(err)
	}
	a.crash()
	keys := credKeys(t, etcd.Endpoints(), "/orphans")
	if stray := onlyCreds(keys, kept.ID); len(stray) < n {
		t.Fatalf("the crash left %d keys of the deleted credentials, want at least %d (one record each)", len(stray), n)
	}
	waitUntil(t, 5*time.Second, "b to see the deletion", func() bool { _, err := b.Cache(big.ID); return err != nil })
	checkGone(t, b, big, creds, kept.ID)
	orphan := creds[0]
	if _, err := b.UpdateCredential(orphan.ID, CredentialUpdate{Caps: new(CapWrite)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("updating an orphan: %v", err)
	}
	if _, err := b.Promote(orphan.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("promoting an orphan: %v", err)
	}
	if err := b.DeleteCredential(orphan.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting an orphan: %v", err)
	}

	// An orphan's certificate is free at once: created bound to one
	// orphan's, and another's bound by an update.
	if orphan.Cert.SHA256 == "" || orphan.Cert.CN == "" || creds[3].Cert.SHA256 == "" {
		t.Fatal("the test wants certificates on credentials 0 and 3")
	}
	nc, _, err := b.CreateCredential(keep.ID, NewCredential{Cert: orphan.Cert})
	if err != nil {
		t.Fatalf("binding an orphan's certificate: %v", err)
	}
	rebound, err := b.UpdateCredential(kept.ID, CredentialUpdate{CertSHA256: &creds[3].Cert.SHA256})
	if err != nil {
		t.Fatalf("binding an orphan's fingerprint by an update: %v", err)
	}

	// The next node to load the state removes the orphans, and only them.
	c := openNode(t, etcd.Endpoints(), "/orphans", "", Policy{})
	start := time.Now()
	waitUntil(t, 10*time.Second, "the orphans to be removed", func() bool {
		return len(onlyCreds(credKeys(t, etcd.Endpoints(), "/orphans"), kept.ID, nc.ID)) == 0
	})
	t.Logf("%d orphans removed in %v by a node loading the state", n, time.Since(start))
	keys = credKeys(t, etcd.Endpoints(), "/orphans")
	for k, want := range map[string]uint32{
		"/orphans/" + keyCertSHA + orphan.Cert.SHA256:   nc.ID,
		"/orphans/" + keyCertCN + orphan.Cert.CN:        nc.ID,
		"/orphans/" + keyCertSHA + creds[3].Cert.SHA256: kept.ID,
		"/orphans/" + keyCertCN + "kept":                kept.ID,
	} {
		if got, ok := keys[k]; !ok || got != want {
			t.Errorf("%s: %d (present %v), want %d", k, got, ok, want)
		}
	}
	for _, n := range []etcdNode{b, c} {
		checkGone(t, n, big, creds, kept.ID, nc.ID)
		if got, err := n.Credential(nc.ID); err != nil || got.Cert != orphan.Cert {
			t.Errorf("the credential bound to an orphan's certificate: %+v, %v", got, err)
		}
		if got, err := n.Credential(kept.ID); err != nil || got.Cert != rebound.Cert {
			t.Errorf("the credential rebound: %+v, %v", got, err)
		}
	}
	checkDeliveredOnce(t, b, bLog, big, keep, "sentinel")
}

// TestEtcdOrphansSweptOnReload: a running node that reloads the state (its
// watch fell behind a compaction) removes the orphans a crashed node left.
func TestEtcdOrphansSweptOnReload(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := openNode(t, etcd.Endpoints(), "/sweep", "", Policy{})
	b := openNode(t, etcd.Endpoints(), "/sweep", "", Policy{})
	big, creds, _, kept := bigCache(t, a.Etcd, "big", 10)
	waitUntil(t, 5*time.Second, "b to see every credential", func() bool { got, _ := b.Credentials(big.ID); return len(got) == len(creds) })

	gate := make(chan struct{})
	hold := func() { <-gate }
	b.beforeWatch.Store(&hold)
	b.cut()
	a.stopAfterCacheDelete.Store(true)
	if err := a.DeleteCache(big.ID); err != nil {
		t.Fatal(err)
	}
	a.crash()
	if stray := onlyCreds(credKeys(t, etcd.Endpoints(), "/sweep"), kept.ID); len(stray) < len(creds) {
		t.Fatalf("the crash left %d keys of the deleted credentials, want at least %d", len(stray), len(creds))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Writes elsewhere, so that the compaction passes b's next revision.
	for range 2 {
		if _, err := cli.Put(ctx, "/elsewhere", "x"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "/sweep/secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	b.beforeWatch.Store(nil)
	close(gate)
	waitUntil(t, 10*time.Second, "b to reload and remove the orphans", func() bool {
		return len(onlyCreds(credKeys(t, etcd.Endpoints(), "/sweep"), kept.ID)) == 0
	})
	checkGone(t, b, big, creds, kept.ID)
	if n := b.log.count("revision was compacted"); n != 1 {
		t.Errorf("b reloaded %d times, want once", n)
	}
}
