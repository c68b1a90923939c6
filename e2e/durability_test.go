package e2e

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// acked records the admin API changes that were answered 2xx before the
// server was killed: what must survive the restart.
type acked struct {
	mu      sync.Mutex
	caches  map[string]uint32 // name -> id: created, never touched again
	resized map[uint32]bool   // resized to 2 MiB, never touched again
	deleted map[uint32]string // deleted: must stay gone
	creds   map[string]uint32 // username -> cache id
	count   int
}

// writeUntilKilled streams admin API changes to h from round's names until
// a request fails (the server is gone).
func writeUntilKilled(h *hive, round int, a *acked) {
	var kept []uint32
	for i := 0; ; i++ {
		name := fmt.Sprintf("r%d-%d", round, i)
		var l login
		st, err := h.tryAdmin("POST", "/admin/v1/caches", map[string]any{"name": name, "memory_limit_mb": 1}, &l)
		if err != nil || st != 201 {
			return
		}
		if i%3 != 2 {
			// (A cache about to be deleted is not recorded: if the
			// deletion's answer is lost, either outcome is right.)
			a.mu.Lock()
			a.caches[name], a.creds[l.Username] = l.CacheID, l.CacheID
			a.count += 2
			a.mu.Unlock()
		}
		switch i % 3 {
		case 0:
			kept = append(kept, l.CacheID)
		case 1:
			// Resize a cache that nothing touches afterwards.
			if len(kept) == 0 {
				continue
			}
			id := kept[0]
			kept = kept[1:]
			st, err := h.tryAdmin("PATCH", fmt.Sprintf("/admin/v1/caches/%d", id), map[string]any{"memory_limit_mb": 2}, nil)
			if err != nil || st != 200 {
				return
			}
			a.mu.Lock()
			a.resized[id] = true
			a.count++
			a.mu.Unlock()
		case 2:
			// Delete the cache just made.
			st, err := h.tryAdmin("DELETE", fmt.Sprintf("/admin/v1/caches/%d", l.CacheID), nil, nil)
			if err != nil || st != 200 {
				return
			}
			a.mu.Lock()
			a.deleted[l.CacheID] = name
			a.count++
			a.mu.Unlock()
		}
	}
}

// TestKillNineKeepsAcknowledgedChanges kills the server (SIGKILL, by pid)
// at random moments during a stream of admin API writes, 50 times, and
// checks after each restart that every acknowledged change is there.
func TestKillNineKeepsAcknowledgedChanges(t *testing.T) {
	t.Parallel()
	const rounds = 50
	data := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	a := &acked{caches: map[string]uint32{}, resized: map[uint32]bool{}, deleted: map[uint32]string{}, creds: map[string]uint32{}}
	for round := 0; round < rounds; round++ {
		h := startHive(t, data, "--overcommit", "--memory", "64")
		if round > 0 {
			verifyAcked(t, h, a, round)
		}
		done := make(chan struct{})
		go func() { defer close(done); writeUntilKilled(h, round, a) }()
		time.Sleep(time.Duration(5+rng.Intn(60)) * time.Millisecond)
		h.Kill()
		<-done
	}
	h := startHive(t, data, "--overcommit", "--memory", "64")
	verifyAcked(t, h, a, rounds)
	t.Logf("%d acknowledged changes survived %d kill -9s", a.count, rounds)
	if a.count < rounds {
		t.Fatalf("only %d changes were acknowledged in %d rounds: the test did not exercise the store", a.count, rounds)
	}
}

func verifyAcked(t *testing.T, h *hive, a *acked, round int) {
	t.Helper()
	var caches []struct {
		CacheID     uint32 `json:"cache_id"`
		Name        string `json:"name"`
		MemoryLimit int64  `json:"memory_limit"`
	}
	if st := h.admin("GET", "/admin/v1/caches", nil, &caches); st != 200 {
		t.Fatalf("after kill %d: listing caches: status %d", round, st)
	}
	byID := map[uint32]int64{}
	byName := map[string]uint32{}
	for _, c := range caches {
		byID[c.CacheID] = c.MemoryLimit
		byName[c.Name] = c.CacheID
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, id := range a.caches {
		if byName[name] != id {
			t.Fatalf("after kill %d: acknowledged cache %s (id %d) is missing", round, name, id)
		}
	}
	for id := range a.resized {
		if byID[id] != 2<<20 {
			t.Fatalf("after kill %d: acknowledged resize of cache %d lost (limit %d)", round, id, byID[id])
		}
	}
	for id, name := range a.deleted {
		if _, ok := byID[id]; ok {
			t.Fatalf("after kill %d: acknowledged deletion of cache %s (id %d) lost", round, name, id)
		}
	}
	// Every acknowledged credential logs in.
	for user, id := range a.creds {
		var creds []struct{ Username string }
		h.admin("GET", fmt.Sprintf("/admin/v1/caches/%d/credentials", id), nil, &creds)
		found := false
		for _, c := range creds {
			found = found || c.Username == user
		}
		if !found {
			t.Fatalf("after kill %d: acknowledged credential %s of cache %d is missing", round, user, id)
		}
	}
}
