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

// TestWatchersRunBeforeTheChangeReturns: the embedded backend calls
// watchers on the goroutine of the method that made the change, before it
// returns; a change committed while a watcher is busy with the one before
// returns only once it has been delivered, after that one.
func TestWatchersRunBeforeTheChangeReturns(t *testing.T) {
	s, _ := openTest(t, Policy{})
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
	go create("next")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.CacheByName("next"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("a change did not commit while a watcher was busy with the one before")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case name := <-created:
		t.Errorf("CreateCache(%q) returned before its change was delivered", name)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if a, b := <-created, <-created; a != "slow" || b != "next" {
		t.Fatalf("returned in the order %s, %s", a, b)
	}
	if _, err := s.CreateCache(Cache{Name: "sync", LimitBytes: mib}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "slow next sync" {
		t.Fatalf("delivered %v by the time CreateCache returned, want [slow next sync]", seen)
	}
}

// TestReopenAndLock: a held store cannot be opened again, and everything
// a store held is there after it is reopened.
func TestReopenAndLock(t *testing.T) {
	s, path := openTest(t, Policy{})
	c, err := s.CreateCache(Cache{Name: "kept", LimitBytes: mib, Plan: "gold", Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Repeat("ab", 32)
	cr, pw, err := s.CreateCredential(c.ID, NewCredential{Caps: CapWrite, Cert: CertBinding{SHA256: fp, CN: "app-1"}})
	if err != nil {
		t.Fatal(err)
	}
	when := time.Unix(1_800_000_000, 0).UTC()
	if err := s.MarkActive(map[uint32]time.Time{c.ID: when}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory([]Sample{{CacheID: c.ID, Server: "h:1", Time: when, Stats: map[string]uint64{"get_hits": 7}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Policy{}, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of a held store: %v", err)
	}
	s.Close()
	s2, err := Open(path, Policy{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.CacheByName("kept")
	if err != nil || got.ID != c.ID || got.Plan != "gold" || !got.Dev || !got.LastActive.Equal(when) || !got.Created.Equal(c.Created) {
		t.Fatalf("cache after reopening: %+v %v", got, err)
	}
	gotCr, err := s2.CredentialByUsername(cr.Username)
	if err != nil || gotCr.ID != cr.ID || !gotCr.Primary || gotCr.Caps != CapWrite || gotCr.Cert != cr.Cert || !Verify(gotCr, []byte(pw)) {
		t.Fatalf("credential after reopening: %+v %v", gotCr, err)
	}
	if h, err := s2.History(c.ID, time.Time{}); err != nil || len(h) != 1 || !h[0].Time.Equal(when) || h[0].Stats["get_hits"] != 7 {
		t.Fatalf("history after reopening: %+v %v", h, err)
	}
	// IDs are not reused after a reopen either.
	if c2, err := s2.CreateCache(Cache{Name: "new", LimitBytes: mib}); err != nil || c2.ID <= c.ID {
		t.Fatalf("a cache created after reopening: %+v %v", c2, err)
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
	writeUntilKilled(s)
}

// writeUntilKilled is the loop of a kill -9 test's child: it changes s
// and prints each change once it is acknowledged, until it is killed.
func writeUntilKilled(s Store) {
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
				fmt.Println("error", err)
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
		acked := killWriter(t, rng, round, "TestHelperWriter", "MEMHIVE_STORE_WRITER="+path)
		s, err := Open(path, Policy{}, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		checkAcked(t, round, s, acked)
		s.Close()
		total += len(acked)
	}
	t.Logf("%d acknowledged changes survived 6 kills", total)
}

// killWriter runs the helper test helper in a child process with env
// added, reads the changes it acknowledges, and kills it (SIGKILL, by
// pid) after a random number of them; it returns those it read.
func killWriter(t *testing.T, rng *rand.Rand, round int, helper string, env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), env...), "MEMHIVE_ROUND="+strconv.Itoa(round))
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
			cmd.Process.Kill()
			cmd.Wait()
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
	return acked
}

// checkAcked checks that s holds every change a killed writer acknowledged.
func checkAcked(t *testing.T, round int, s Store, acked []string) {
	t.Helper()
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
}
