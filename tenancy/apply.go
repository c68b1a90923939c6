package tenancy

import "sync"

// applier runs the work that changes queue (see Tenants.record), one job
// at a time in the order queued, on a goroutine of its own started with
// the first job: never on the goroutine that made the change, so that a
// slow job (shrinking a large cache) holds up neither the store nor its
// caller, only the jobs queued after it.
type applier struct {
	// mu guards every field below; cond, on mu, is broadcast when a job
	// is queued, when jobs are done and when the applier closes.
	mu      sync.Mutex
	cond    sync.Cond
	queue   []func()
	queued  uint64 // jobs ever queued
	done    uint64 // jobs finished
	running bool   // the goroutine has started
	closed  bool   // no more jobs are queued: they run on the caller
	exited  chan struct{}
}

// later queues job to run after the jobs queued before it.
func (t *Tenants) later(job func()) { t.applier.add(job) }

// Sync returns once the work of every change recorded before it was
// called is done: shrunk engines are within their new limits, the
// connections the changes cut off are closed, deleted caches' engines are
// closed. A change is recorded before the store's call that made it
// returns, so Sync after that call waits for all of its effects.
func (t *Tenants) Sync() { t.applier.wait() }

// initLocked readies cond; a.mu is held.
func (a *applier) initLocked() {
	if a.cond.L == nil {
		a.cond.L = &a.mu
	}
}

func (a *applier) add(job func()) {
	a.mu.Lock()
	if a.closed {
		// Closing: a change delivered while the store's watch was being
		// cancelled. Its work is still done.
		a.mu.Unlock()
		job()
		return
	}
	a.initLocked()
	a.queue = append(a.queue, job)
	a.queued++
	if !a.running {
		a.running = true
		a.exited = make(chan struct{})
		go a.run()
	}
	a.cond.Broadcast()
	a.mu.Unlock()
}

// run is the applier's goroutine: it runs the jobs queued until the
// applier is closed and nothing is left.
func (a *applier) run() {
	defer close(a.exited)
	a.mu.Lock()
	for {
		for len(a.queue) == 0 && !a.closed {
			a.cond.Wait()
		}
		if len(a.queue) == 0 {
			a.mu.Unlock()
			return
		}
		jobs := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, job := range jobs {
			job()
		}
		a.mu.Lock()
		a.done += uint64(len(jobs))
		a.cond.Broadcast()
	}
}

// wait returns once every job queued before it was called has run.
func (a *applier) wait() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.initLocked()
	for target := a.queued; a.done < target; {
		a.cond.Wait()
	}
}

// close runs the jobs still queued and stops the goroutine; jobs added
// later run at once on their caller.
func (a *applier) close() {
	a.mu.Lock()
	a.closed = true
	a.initLocked()
	a.cond.Broadcast()
	running, exited := a.running, a.exited
	a.mu.Unlock()
	if running {
		<-exited
	}
}
