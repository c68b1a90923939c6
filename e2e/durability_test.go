package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/etcdtest"
	"github.com/memhive/memhive/internal/testserver"
)

// Expectations of the durability test. A field that is nil is unknown: the
// server died while a change to it was in flight, so either outcome is
// right. The writer stops at its first failed request, and every round
// makes new caches and credentials, so an object is left unknown by at most
// one change and never touched again.
type (
	cacheWant struct {
		name    string
		limitMB *int
		enabled *bool
		gone    bool // deleted, acknowledged: must stay gone
	}
	credWant struct {
		cacheID  uint32
		password string
		caps     *[3]bool // write, flush, api
		primary  *bool
		gone     bool
	}
	// acked is every acknowledged (2xx-answered) admin change so far.
	acked struct {
		caches map[uint32]*cacheWant
		creds  map[string]*credWant // by username
		count  int
		// unexpected is the first answer that was neither right nor a
		// sign of the server's death.
		unexpected string
	}
)

func ptr[T any](v T) *T { return &v }

// credJSON is a credential as the admin API lists it.
type credJSON struct {
	ID       uint32 `json:"id"`
	Username string `json:"username"`
	Password string `json:"password"`
	Write    bool   `json:"write"`
	Flush    bool   `json:"flush"`
	API      bool   `json:"api"`
	Primary  bool   `json:"primary"`
}

// writeUntilKilled streams admin API changes to h, made of round's names,
// until a request fails (the server is gone). Each change's expectation is
// made unknown before the request and set when its 2xx answer arrives.
func writeUntilKilled(h *hive, round int, rng *rand.Rand, a *acked) {
	var step string // the request in flight, for unexpected's message
	ok := func(st int, err error, want int) bool {
		if err == nil && st != want {
			// The server answered, so it was not killed: a real failure.
			a.unexpected = fmt.Sprintf("round %d: %s: status %d, want %d", round, step, st, want)
		}
		return err == nil && st == want
	}
	randCaps := func() [3]bool { return [3]bool{rng.Intn(2) == 0, rng.Intn(2) == 0, rng.Intn(2) == 0} }
	capsBody := func(c [3]bool) map[string]any { return map[string]any{"write": c[0], "flush": c[1], "api": c[2]} }
	for i := 0; ; i++ {
		name := fmt.Sprintf("r%d-%d", round, i)
		var l login
		st, err := h.tryAdmin("POST", "/admin/v1/caches", map[string]any{"name": name, "memory_limit_mb": 1, "dev": i%2 == 0}, &l)
		if !ok(st, err, 201) {
			return
		}
		cache := &cacheWant{name: name, limitMB: ptr(1), enabled: ptr(true)}
		a.caches[l.CacheID] = cache
		primary := &credWant{cacheID: l.CacheID, password: l.Password, caps: &[3]bool{true, true, true}, primary: ptr(true)}
		a.creds[l.Username] = primary
		a.count++

		// A second credential, sometimes made primary at once.
		caps, makePrimary := randCaps(), rng.Intn(4) == 0
		body := capsBody(caps)
		body["primary"] = makePrimary
		if makePrimary {
			primary.primary = nil
		}
		var x credJSON
		st, err = h.tryAdmin("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", l.CacheID), body, &x)
		if !ok(st, err, 201) {
			return
		}
		second := &credWant{cacheID: l.CacheID, password: x.Password, caps: &caps, primary: ptr(makePrimary)}
		a.creds[x.Username] = second
		if makePrimary {
			primary.primary = ptr(false)
		}
		a.count++

		var path string
		var method string
		var want int
		var apply func()
		switch i % 7 {
		case 0: // change the second credential's capabilities
			caps := randCaps()
			second.caps = nil
			method, path, want, body = "PATCH", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", l.CacheID, x.ID), 200, capsBody(caps)
			apply = func() { second.caps = &caps }
		case 1: // promote it
			second.primary, primary.primary = nil, nil
			method, path, want, body = "POST", fmt.Sprintf("/admin/v1/caches/%d/credentials/primary/%d", l.CacheID, x.ID), 200, nil
			apply = func() { second.primary, primary.primary = ptr(true), ptr(false) }
		case 2: // delete it; refused (409) if it is the primary of several
			method, path, want, body = "DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%d", l.CacheID, x.ID), 200, nil
			if makePrimary {
				want, apply = 409, func() {}
				break
			}
			delete(a.creds, x.Username)
			apply = func() { a.creds[x.Username] = &credWant{cacheID: l.CacheID, password: x.Password, gone: true} }
		case 3: // resize and disable the cache
			cache.limitMB, cache.enabled = nil, nil
			method, path, want, body = "PATCH", fmt.Sprintf("/admin/v1/caches/%d", l.CacheID), 200, map[string]any{"memory_limit_mb": 2, "enabled": false}
			apply = func() { cache.limitMB, cache.enabled = ptr(2), ptr(false) }
		case 5: // rotate: a new primary replaces the first, which is deleted
			var y credJSON
			st, err = h.tryAdmin("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials", l.CacheID), capsBody([3]bool{true, true, true}), &y)
			if !ok(st, err, 201) {
				return
			}
			third := &credWant{cacheID: l.CacheID, password: y.Password, caps: &[3]bool{true, true, true}, primary: ptr(false)}
			a.creds[y.Username] = third
			a.count++
			third.primary, primary.primary, second.primary = nil, nil, nil
			st, err = h.tryAdmin("POST", fmt.Sprintf("/admin/v1/caches/%d/credentials/primary/%d", l.CacheID, y.ID), nil, nil)
			if !ok(st, err, 200) {
				return
			}
			third.primary, primary.primary, second.primary = ptr(true), ptr(false), ptr(false)
			a.count++
			delete(a.creds, l.Username)
			method, path, want, body = "DELETE", fmt.Sprintf("/admin/v1/caches/%d/credentials/%s", l.CacheID, l.Username), 200, nil
			apply = func() { a.creds[l.Username] = &credWant{cacheID: l.CacheID, password: l.Password, gone: true} }
		case 6: // a plan change up, then down
			cache.limitMB = nil
			st, err = h.tryAdmin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", l.CacheID), map[string]any{"memory_limit_mb": 4}, nil)
			if !ok(st, err, 200) {
				return
			}
			cache.limitMB = ptr(4)
			a.count++
			cache.limitMB = nil
			method, path, want, body = "PATCH", fmt.Sprintf("/admin/v1/caches/%d", l.CacheID), 200, map[string]any{"memory_limit_mb": 3}
			apply = func() { cache.limitMB = ptr(3) }
		case 4: // delete the cache
			delete(a.caches, l.CacheID)
			delete(a.creds, l.Username)
			delete(a.creds, x.Username)
			method, path, want, body = "DELETE", fmt.Sprintf("/admin/v1/caches/%d", l.CacheID), 200, nil
			apply = func() {
				a.caches[l.CacheID] = &cacheWant{name: name, gone: true}
				a.creds[l.Username] = &credWant{cacheID: l.CacheID, gone: true}
				a.creds[x.Username] = &credWant{cacheID: l.CacheID, gone: true}
			}
		}
		var b any
		if body != nil {
			b = body
		}
		step = method + " " + path
		st, err = h.tryAdmin(method, path, b, nil)
		if !ok(st, err, want) {
			return
		}
		apply()
		a.count++
	}
}

// unclean matches what a server that did not start cleanly would log.
var unclean = regexp.MustCompile(`(?i)level=(error|warn)|panic|corrupt|recover`)

// TestKillNineKeepsAcknowledgedChanges kills the server (SIGKILL, by pid)
// at random moments during a stream of admin API writes, many times, and
// checks after each restart on the same --data that every acknowledged
// change is there (and every acknowledged deletion stays done), that the
// server started cleanly, and, with the killed server down, that the store
// read afresh agrees. It runs against each control-plane store: the
// embedded bbolt file, and etcd (an embedded etcd in this process, the
// server a cluster node of it).
func TestKillNineKeepsAcknowledgedChanges(t *testing.T) {
	t.Parallel()
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		killNineRounds(t, durabilityBackend{
			rounds: 50,
			// With no server running, the store opens directly.
			verifyDown: verifyDirect,
		})
	})
	t.Run("etcd", func(t *testing.T) {
		t.Parallel()
		etcd := etcdtest.Start(t)
		node := func(name string) []string { return []string{"--etcd", etcd.Endpoint(), "--node", name} }
		killNineRounds(t, durabilityBackend{
			rounds: 50,
			flags:  node("n1"),
			// A node that never saw the state reads it from etcd alone.
			verifyDown: func(t *testing.T, _ string, a *acked, round int) {
				t.Helper()
				fresh := startHiveOn(t, 0, "", "", append([]string{"--overcommit", "--memory", "64"}, node("n2")...)...)
				verifyAcked(t, fresh, a, round)
				fresh.Stop()
			},
		})
	})
}

// durabilityBackend is a control-plane store the kill -9 test runs
// against.
type durabilityBackend struct {
	rounds int
	// flags are serve's flags that choose the store (none: bbolt in --data).
	flags []string
	// verifyDown checks the expectations while the killed server is down,
	// every tenth round, by reading the store as an operator would.
	verifyDown func(t *testing.T, data string, a *acked, round int)
}

// killNineRounds is TestKillNineKeepsAcknowledgedChanges on backend b.
func killNineRounds(t *testing.T, b durabilityBackend) {
	data := t.TempDir()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))         // the writer's
	killRng := rand.New(rand.NewSource(seed + 1)) // the test's own
	a := &acked{caches: map[uint32]*cacheWant{}, creds: map[string]*credWant{}}
	// The same addresses each round, as a machine restarted after a crash
	// has: a cluster node then takes its membership over at once rather
	// than waiting for the lease of the one killed.
	port, httpAddr := testserver.FreePort(t), fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	start := func() *hive {
		h := startHiveOn(t, port, httpAddr, data, append([]string{"--overcommit", "--memory", "64"}, b.flags...)...)
		if unclean.MatchString(h.Output()) {
			t.Fatalf("the server did not start cleanly after a kill -9:\n%s", h.Output())
		}
		return h
	}
	for round := 0; round < b.rounds; round++ {
		h := start()
		if round > 0 {
			verifyAcked(t, h, a, round)
		}
		done := make(chan struct{})
		go func() { defer close(done); writeUntilKilled(h, round, rng, a) }()
		time.Sleep(time.Duration(2+killRng.Intn(60)) * time.Millisecond)
		h.Kill()
		<-done
		if a.unexpected != "" {
			t.Fatalf("admin API: %s", a.unexpected)
		}
		if round%10 == 9 {
			b.verifyDown(t, data, a, round)
		}
	}
	h := start()
	verifyAcked(t, h, a, b.rounds)
	t.Logf("%d acknowledged changes survived %d kill -9s", a.count, b.rounds)
	if a.count < 2*b.rounds {
		t.Fatalf("only %d changes were acknowledged in %d rounds: the test did not exercise the store", a.count, b.rounds)
	}
}

// verifyAcked checks every expectation through the admin API.
func verifyAcked(t *testing.T, h *hive, a *acked, round int) {
	t.Helper()
	var caches []struct {
		CacheID     uint32 `json:"cache_id"`
		Name        string `json:"name"`
		MemoryLimit int64  `json:"memory_limit"`
		Enabled     bool   `json:"enabled"`
	}
	if st := h.admin("GET", "/admin/v1/caches", nil, &caches); st != 200 {
		t.Fatalf("after kill %d: listing caches: status %d", round, st)
	}
	byID := map[uint32]int{}
	defaults := 0
	for i, c := range caches {
		byID[c.CacheID] = i
		if c.Name == "default" {
			defaults++
		}
	}
	if defaults != 1 {
		t.Fatalf("after kill %d: %d caches named default", round, defaults)
	}
	for id, w := range a.caches {
		i, present := byID[id]
		switch {
		case w.gone && present:
			t.Fatalf("after kill %d: the acknowledged deletion of cache %s (id %d) was lost", round, w.name, id)
		case w.gone:
		case !present:
			t.Fatalf("after kill %d: acknowledged cache %s (id %d) is missing", round, w.name, id)
		case caches[i].Name != w.name:
			t.Fatalf("after kill %d: cache %d is named %q, want %q", round, id, caches[i].Name, w.name)
		case w.limitMB != nil && caches[i].MemoryLimit != int64(*w.limitMB)<<20:
			t.Fatalf("after kill %d: cache %s: limit %d, acknowledged %d MiB", round, w.name, caches[i].MemoryLimit, *w.limitMB)
		case w.enabled != nil && caches[i].Enabled != *w.enabled:
			t.Fatalf("after kill %d: cache %s: enabled %v, acknowledged %v", round, w.name, caches[i].Enabled, *w.enabled)
		}
	}
	creds := map[uint32]map[string]credJSON{}
	for _, c := range caches {
		var list []credJSON
		if st := h.admin("GET", fmt.Sprintf("/admin/v1/caches/%d/credentials", c.CacheID), nil, &list); st != 200 {
			t.Fatalf("after kill %d: listing cache %d's credentials: status %d", round, c.CacheID, st)
		}
		creds[c.CacheID] = map[string]credJSON{}
		for _, cr := range list {
			creds[c.CacheID][cr.Username] = cr
		}
	}
	for user, w := range a.creds {
		checkCred(t, fmt.Sprintf("after kill %d", round), user, w, creds)
	}
	verifyLogins(t, h, a, round)
}

// verifyLogins logs in on the memcache port with credentials whose state
// is known: a few acknowledged ones of enabled caches must log in, a few
// acknowledged deletions must fail (few, to stay under the server's
// failed-login throttle).
func verifyLogins(t *testing.T, h *hive, a *acked, round int) {
	t.Helper()
	live, dead := 0, 0
	for user, w := range a.creds {
		if w.password == "" {
			continue
		}
		cache := a.caches[w.cacheID]
		switch {
		case w.gone && dead < 3:
			dead++
			tc := dialText(t, h.Addr)
			if got := tc.asciiLogin(login{Username: user, Password: w.password}); got != "CLIENT_ERROR authentication failure" {
				t.Fatalf("after kill %d: credential %s, deleted and acknowledged, logs in: %q", round, user, got)
			}
			tc.c.Close()
		case !w.gone && cache != nil && !cache.gone && cache.enabled != nil && *cache.enabled && live < 5:
			live++
			tc := dialText(t, h.Addr)
			if got := tc.asciiLogin(login{Username: user, Password: w.password}); got != "STORED" {
				t.Fatalf("after kill %d: acknowledged credential %s of cache %s fails to log in: %q", round, user, cache.name, got)
			}
			tc.c.Close()
		}
	}
}

func checkCred(t *testing.T, when, user string, w *credWant, creds map[uint32]map[string]credJSON) {
	t.Helper()
	got, present := creds[w.cacheID][user]
	switch {
	case w.gone && present:
		t.Fatalf("%s: the acknowledged deletion of credential %s (cache %d) was lost", when, user, w.cacheID)
	case w.gone:
	case !present:
		t.Fatalf("%s: acknowledged credential %s of cache %d is missing", when, user, w.cacheID)
	case w.caps != nil && [3]bool{got.Write, got.Flush, got.API} != *w.caps:
		t.Fatalf("%s: credential %s: write/flush/api %v %v %v, acknowledged %v", when, user, got.Write, got.Flush, got.API, *w.caps)
	case w.primary != nil && got.Primary != *w.primary:
		t.Fatalf("%s: credential %s: primary %v, acknowledged %v", when, user, got.Primary, *w.primary)
	}
}

// verifyDirect opens the store of a killed server with the CLI, as an
// operator would with no server running, and checks it against the
// expectations: a store a kill -9 left behind must open without a server.
func verifyDirect(t *testing.T, data string, a *acked, round int) {
	t.Helper()
	cli := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(testserver.MemhiveBinary(t), append(args, "--data", data, "--json", "--overcommit")...)
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("after kill %d, no server running: memhive %s: %v\n%s%s", round, strings.Join(args, " "), err, out, stderr)
		}
		return out
	}
	var caches []struct {
		ID          uint32 `json:"id"`
		Name        string `json:"name"`
		MemoryLimit int64  `json:"memory_limit"`
		Enabled     bool   `json:"enabled"`
	}
	if err := json.Unmarshal(cli("cache", "list"), &caches); err != nil {
		t.Fatalf("cache list --json: %v", err)
	}
	byID := map[uint32]bool{}
	for _, c := range caches {
		byID[c.ID] = true
		if w := a.caches[c.ID]; w != nil && w.gone {
			t.Fatalf("after kill %d, store opened directly: deleted cache %s is back", round, w.name)
		}
		if w := a.caches[c.ID]; w != nil && w.limitMB != nil && c.MemoryLimit != int64(*w.limitMB)<<20 {
			t.Fatalf("after kill %d, store opened directly: cache %s limit %d, acknowledged %d MiB", round, w.name, c.MemoryLimit, *w.limitMB)
		}
	}
	for id, w := range a.caches {
		if !w.gone && !byID[id] {
			t.Fatalf("after kill %d, store opened directly: acknowledged cache %s (id %d) is missing", round, w.name, id)
		}
	}
	// A few caches' credentials (one process each), in the CLI's own
	// format.
	checked := 0
	for id, w := range a.caches {
		if w.gone {
			continue
		}
		if checked++; checked > 3 {
			break
		}
		var list []struct {
			Username     string `json:"username"`
			Capabilities string `json:"capabilities"`
			Primary      bool   `json:"primary"`
		}
		out := cli("cred", "list", fmt.Sprint(id))
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("cred list --json: %v\n%s", err, out)
		}
		got := map[string]credJSON{}
		for _, c := range list {
			caps := strings.Split(c.Capabilities, ",")
			has := func(c string) bool { return slices.Contains(caps, c) }
			got[c.Username] = credJSON{Username: c.Username, Write: has("write"), Flush: has("flush"), API: has("api"), Primary: c.Primary}
		}
		for user, cw := range a.creds {
			if cw.cacheID == id {
				checkCred(t, fmt.Sprintf("after kill %d, store opened directly", round), user, cw, map[uint32]map[string]credJSON{id: got})
			}
		}
	}
}
