package server

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTrigger: pulls from many goroutines run fire on the loop, merged
// while one is pending, never lost (a pull after a run is another run),
// and without allocating; once the server has stopped, a pull reports
// that the trigger cannot be used.
func TestTrigger(t *testing.T) {
	nodes := startCluster(t, 2, time.Second)
	a := nodes[0]
	c := dialText(t, a.addr, "alice", "ecila")
	c.roundTrip("version\r\n", "\r\n")
	a.s.peers.loopsMu.Lock()
	ls := a.s.peers.loops[0]
	a.s.peers.loopsMu.Unlock()

	var runs atomic.Int64
	fired := make(chan struct{}, 1)
	tr := a.s.newTrigger(ls.el, func() {
		runs.Add(1)
		select {
		case fired <- struct{}{}:
		default:
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for tr.wake.Load() < 0 {
		if time.Now().After(deadline) {
			t.Fatal("the trigger was not registered in 5 s")
		}
		time.Sleep(time.Millisecond)
	}

	// One pull, one run.
	if !tr.pull() {
		t.Fatal("pull failed on a registered trigger")
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("fire did not run within 5 s of a pull")
	}

	// Concurrent pulls: at least one run after the last of them.
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				tr.pull()
			}
		}()
	}
	wg.Wait()
	before := runs.Load()
	tr.pull()
	for runs.Load() == before {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("a pull after the others was lost")
		}
		time.Sleep(time.Millisecond)
	}
	if n := runs.Load(); n > 1+8*1000+1 {
		t.Errorf("%d runs for %d pulls", n, 8*1000+2)
	}

	// Waiting for the run between pulls keeps the measurement to pull.
	if allocs := testing.AllocsPerRun(100, func() {
		for !tr.pull() {
		}
		<-fired
	}); allocs != 0 {
		t.Errorf("a pull and its run allocate %.1f times", allocs)
	}

	a.stop()
	select {
	case <-a.s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop in 10 s")
	}
	if tr.pull() {
		t.Error("pull succeeded on a stopped server's trigger")
	}
}
