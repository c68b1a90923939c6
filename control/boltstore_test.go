package control

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const mib = 1 << 20

func openTest(t *testing.T, policy Policy) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.db")
	s, err := Open(path, policy, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestCaches(t *testing.T) {
	s, _ := openTest(t, Policy{MemoryBytes: 100 * mib, MinLimitBytes: mib})
	a, err := s.CreateCache(Cache{Name: "a", LimitBytes: 40 * mib, Enabled: true})
	if err != nil || a.ID == 0 || a.Created.IsZero() || a.Plan != "40MB" {
		t.Fatalf("create: %+v %v", a, err)
	}
	errs := []struct {
		c    Cache
		want error
	}{
		{Cache{Name: "a", LimitBytes: mib}, ErrExists},
		{Cache{Name: "", LimitBytes: mib}, ErrInvalid},
		{Cache{Name: "bad name", LimitBytes: mib}, ErrInvalid},
		{Cache{Name: strings.Repeat("x", 65), LimitBytes: mib}, ErrInvalid},
		{Cache{Name: "small", LimitBytes: mib - 1}, ErrInvalid},
		{Cache{Name: "zero"}, ErrInvalid},
		{Cache{Name: "big", LimitBytes: 61 * mib}, ErrOverCommit},
	}
	for _, e := range errs {
		if _, err := s.CreateCache(e.c); !errors.Is(err, e.want) {
			t.Errorf("create %q (%d bytes): %v, want %v", e.c.Name, e.c.LimitBytes, err, e.want)
		}
	}
	b, err := s.CreateCache(Cache{Name: "b", LimitBytes: 60 * mib, Enabled: true, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	grow := int64(41 * mib)
	if _, err := s.UpdateCache(a.ID, CacheUpdate{LimitBytes: &grow}); !errors.Is(err, ErrOverCommit) {
		t.Fatalf("growing past the bound: %v", err)
	}
	shrink, off, name := int64(20*mib), false, "a2"
	a, err = s.UpdateCache(a.ID, CacheUpdate{LimitBytes: &shrink, Enabled: &off, Name: &name})
	if err != nil || a.LimitBytes != shrink || a.Enabled || a.Name != "a2" || a.Plan != "20MB" {
		t.Fatalf("update: %+v %v", a, err)
	}
	if _, err := s.CacheByName("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still found: %v", err)
	}
	if got, err := s.CacheByName("a2"); err != nil || got.ID != a.ID {
		t.Fatalf("by new name: %+v %v", got, err)
	}
	taken := "b"
	if _, err := s.UpdateCache(a.ID, CacheUpdate{Name: &taken}); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto another cache: %v", err)
	}
	if _, err := s.UpdateCache(99, CacheUpdate{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	all, err := s.Caches()
	if err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Fatalf("list: %+v %v", all, err)
	}
	when := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.MarkActive(map[uint32]time.Time{b.ID: when, 99: when}); err != nil {
		t.Fatal(err)
	}
	s.MarkActive(map[uint32]time.Time{b.ID: when.Add(-time.Minute)}) // never backwards
	if got, _ := s.Cache(b.ID); !got.LastActive.Equal(when) {
		t.Fatalf("last active %v, want %v", got.LastActive, when)
	}
	if _, _, err := s.CreateCredential(b.ID, NewCredential{Caps: CapAll}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCache(b.ID); err != nil {
		t.Fatal(err)
	}
	if creds, _ := s.Credentials(b.ID); len(creds) != 0 {
		t.Fatalf("a deleted cache's credentials remain: %+v", creds)
	}
	if err := s.DeleteCache(b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := s.CreateCache(Cache{Name: "b", LimitBytes: 80 * mib}); err != nil {
		t.Fatalf("the name and memory of a deleted cache are free again: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	s, _ := openTest(t, Policy{})
	c, _ := s.CreateCache(Cache{Name: "c", LimitBytes: mib, Enabled: true})
	first, pw, err := s.CreateCredential(c.ID, NewCredential{Caps: CapWrite})
	if err != nil || !first.Primary || len(pw) != 32 || len(first.Username) != 8 {
		t.Fatalf("first credential: %+v %q %v", first, pw, err)
	}
	if !Verify(first, []byte(pw)) || Verify(first, []byte(pw+"x")) || Verify(first, nil) {
		t.Fatal("Verify")
	}
	if strings.Contains(string(first.Hash), pw) {
		t.Fatal("password stored in the clear")
	}
	second, pw2, err := s.CreateCredential(c.ID, NewCredential{Caps: CapAll, Primary: true})
	if err != nil || !second.Primary || pw2 == pw {
		t.Fatalf("second credential: %+v %v", second, err)
	}
	if got, _ := s.Credential(first.ID); got.Primary {
		t.Fatal("a new primary did not demote the old one")
	}
	if got, err := s.CredentialByUsername(second.Username); err != nil || got.ID != second.ID {
		t.Fatalf("by username: %+v %v", got, err)
	}
	if err := s.DeleteCredential(second.ID); !errors.Is(err, ErrLastPrimary) {
		t.Fatalf("deleting the primary while others exist: %v", err)
	}
	if p, err := s.Promote(first.ID); err != nil || !p.Primary {
		t.Fatalf("promote: %+v %v", p, err)
	}
	if got, _ := s.Credential(second.ID); got.Primary {
		t.Fatal("promotion did not demote")
	}
	if got, err := s.UpdateCredential(second.ID, CredentialUpdate{Caps: new(CapFlush | 0x80)}); err != nil || got.Caps != CapFlush {
		t.Fatalf("set capabilities: %+v %v", got, err)
	}
	if err := s.DeleteCredential(second.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CredentialByUsername(second.Username); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted username still found: %v", err)
	}
	if err := s.DeleteCredential(first.ID); err != nil {
		t.Fatalf("deleting the last credential, a primary: %v", err)
	}
	for _, f := range []func() error{
		func() error { _, _, err := s.CreateCredential(99, NewCredential{Caps: CapAll}); return err },
		func() error { _, err := s.UpdateCredential(99, CredentialUpdate{Caps: new(CapAll)}); return err },
		func() error { _, err := s.Promote(99); return err },
		func() error { return s.DeleteCredential(99) },
		func() error { _, err := s.Credential(99); return err },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing record: %v", err)
		}
	}
}

func TestWatchSeesCommitsInOrder(t *testing.T) {
	s, _ := openTest(t, Policy{MemoryBytes: 10 * mib})
	var got []string
	cancel := s.Watch(func(c Change) {
		got = append(got, fmt.Sprintf("%d:%d:%d:%v", c.Kind, c.CacheID, c.CredentialID, c.Credential.Primary))
	})
	c, _ := s.CreateCache(Cache{Name: "c", LimitBytes: mib})
	s.CreateCache(Cache{Name: "refused", LimitBytes: 20 * mib}) // no change, no notice
	a, _, _ := s.CreateCredential(c.ID, NewCredential{Caps: CapAll})
	b, _, _ := s.CreateCredential(c.ID, NewCredential{Caps: CapAll, Primary: true})
	s.DeleteCache(c.ID)
	cancel()
	s.CreateCache(Cache{Name: "after", LimitBytes: mib})
	want := []string{
		fmt.Sprintf("%d:%d:0:false", CacheChanged, c.ID),
		fmt.Sprintf("%d:%d:%d:true", CredentialChanged, c.ID, a.ID),
		fmt.Sprintf("%d:%d:%d:false", CredentialChanged, c.ID, a.ID),
		fmt.Sprintf("%d:%d:%d:true", CredentialChanged, c.ID, b.ID),
		fmt.Sprintf("%d:%d:0:false", CacheDeleted, c.ID),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("changes\n got %v\nwant %v", got, want)
	}
}

// TestSlowWatcherDoesNotHoldTheWriteLock: while a watcher is busy with a
// change, other writes commit and return (history, activity) or commit
// and wait their turn to be delivered (changes), in commit order.
func TestSlowWatcherDoesNotHoldTheWriteLock(t *testing.T) {
	s, _ := openTest(t, Policy{MemoryBytes: 10 * mib})
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen []string
	s.Watch(func(c Change) {
		mu.Lock()
		seen = append(seen, c.Cache.Name)
		mu.Unlock()
		if c.Cache.Name == "slow" {
			close(entered)
			<-release
		}
	})
	created := make(chan string, 2)
	create := func(name string) {
		if _, err := s.CreateCache(Cache{Name: name, LimitBytes: mib}); err != nil {
			t.Error(err)
		}
		created <- name
	}
	go create("slow")
	<-entered

	done := make(chan error, 1)
	go func() {
		if err := s.MarkActive(map[uint32]time.Time{1: time.Now()}); err != nil {
			done <- err
			return
		}
		done <- s.AppendHistory([]Sample{{CacheID: 1, Time: time.Now()}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writing history waited for a watcher")
	}
	go create("next")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.CacheByName("next"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a change did not commit while a watcher was busy with the one before")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case name := <-created:
		t.Fatalf("CreateCache(%q) returned before its change was delivered", name)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if a, b := <-created, <-created; a != "slow" || b != "next" {
		t.Fatalf("returned in the order %s, %s", a, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "slow next" {
		t.Fatalf("delivered %v, want [slow next]", seen)
	}
}

func TestConcurrentCreationsKeepTheBound(t *testing.T) {
	s, _ := openTest(t, Policy{MemoryBytes: 100 * mib})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				s.CreateCache(Cache{Name: fmt.Sprintf("c%d-%d", i, j), LimitBytes: 7 * mib})
			}
		}(i)
	}
	wg.Wait()
	all, _ := s.Caches()
	var sum int64
	for _, c := range all {
		sum += c.LimitBytes
	}
	if sum > 100*mib || len(all) != 14 {
		t.Fatalf("%d caches, limits add up to %d MiB", len(all), sum>>20)
	}
}

func TestReopenAndLock(t *testing.T) {
	s, path := openTest(t, Policy{})
	c, _ := s.CreateCache(Cache{Name: "kept", LimitBytes: mib})
	if _, err := Open(path, Policy{}, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of a held store: %v", err)
	}
	s.Close()
	s2, err := Open(path, Policy{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.CacheByName("kept"); err != nil || got.ID != c.ID {
		t.Fatalf("after reopening: %+v %v", got, err)
	}
}

func TestNewPasswordAndUsername(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		p := NewPassword()
		if len(p) != 32 || strings.Trim(p, passwordAlphabet) != "" || seen[p] {
			t.Fatalf("password %q", p)
		}
		seen[p] = true
		if u := NewUsername(); len(u) != 8 || strings.Trim(u, "0123456789ABCDEF") != "" {
			t.Fatalf("username %q", u)
		}
	}
}

// TestHelperWriter is the child of TestKillNineLosesNothing: it changes
// the store in a loop and prints each change once it is acknowledged.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("MEMHIVE_STORE_WRITER")
	if path == "" {
		t.Skip("only run as the child of TestKillNineLosesNothing")
	}
	s, err := Open(path, Policy{}, 5*time.Second)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		c, err := s.CreateCache(Cache{Name: fmt.Sprintf("r%s-%d", os.Getenv("MEMHIVE_ROUND"), i), LimitBytes: mib})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("cache %d %s\n", c.ID, c.Name)
		cr, _, err := s.CreateCredential(c.ID, NewCredential{Caps: CapWrite})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("cred %d %s\n", cr.ID, cr.Username)
		if i%3 == 0 {
			limit := int64(2 * mib)
			if _, err := s.UpdateCache(c.ID, CacheUpdate{LimitBytes: &limit}); err != nil {
				os.Exit(1)
			}
			fmt.Printf("resized %d\n", c.ID)
		}
	}
}

// TestKillNineLosesNothing kills a writing process at random moments and
// checks that every change it was told about survived.
func TestKillNineLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.db")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	total := 0
	for round := 0; round < 6; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MEMHIVE_STORE_WRITER="+path, "MEMHIVE_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 50 + rng.Intn(100)
		var acked []string
		sc := bufio.NewScanner(out)
		deadline := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "error") {
				t.Fatalf("round %d: writer: %s", round, line)
			}
			acked = append(acked, line)
			if len(acked) == killAfter {
				syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				break
			}
		}
		deadline.Stop()
		cmd.Wait()
		if len(acked) < killAfter {
			t.Fatalf("round %d: writer stopped after %d changes", round, len(acked))
		}
		s, err := Open(path, Policy{}, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		for _, line := range acked {
			f := strings.Fields(line)
			id, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "cache":
				if c, err := s.Cache(uint32(id)); err != nil || c.Name != f[2] {
					t.Fatalf("round %d: acknowledged %q lost: %+v %v", round, line, c, err)
				}
			case "cred":
				if c, err := s.CredentialByUsername(f[2]); err != nil || c.ID != uint32(id) {
					t.Fatalf("round %d: acknowledged %q lost: %v", round, line, err)
				}
			case "resized":
				if c, err := s.Cache(uint32(id)); err != nil || c.LimitBytes != 2*mib {
					t.Fatalf("round %d: acknowledged %q lost: %+v %v", round, line, c, err)
				}
			}
		}
		s.Close()
		total += len(acked)
	}
	t.Logf("%d acknowledged changes survived 6 kills", total)
}

func TestHistory(t *testing.T) {
	s, path := openTest(t, Policy{})
	a, _ := s.CreateCache(Cache{Name: "a", LimitBytes: mib})
	b, _ := s.CreateCache(Cache{Name: "b", LimitBytes: mib})
	base := time.Unix(1_800_000_000, 0)
	var samples []Sample
	for i := 0; i < 5; i++ {
		for _, id := range []uint32{a.ID, b.ID} {
			samples = append(samples, Sample{CacheID: id, Server: "h:1", Time: base.Add(time.Duration(i) * time.Minute), Stats: map[string]uint64{"get_hits": uint64(i) + uint64(id)*100}})
		}
	}
	if err := s.AppendHistory(samples); err != nil {
		t.Fatal(err)
	}
	got, err := s.History(a.ID, base.Add(2*time.Minute))
	if err != nil || len(got) != 3 || got[0].Stats["get_hits"] != 102 || !got[2].Time.Equal(base.Add(4*time.Minute)) {
		t.Fatalf("history of a since minute 2: %+v %v", got, err)
	}
	if err := s.PruneHistory(base.Add(3 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.History(b.ID, time.Time{}); len(got) != 2 {
		t.Fatalf("b after pruning: %d samples", len(got))
	}
	s.DeleteCache(a.ID)
	if got, _ := s.History(a.ID, time.Time{}); len(got) != 0 {
		t.Fatalf("a deleted cache's history remains: %d samples", len(got))
	}
	s.Close()
	s2, err := Open(path, Policy{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, _ := s2.History(b.ID, time.Time{}); len(got) != 2 || got[1].Stats["get_hits"] != 204 {
		t.Fatalf("history after reopening: %+v", got)
	}
}
