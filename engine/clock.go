package engine

import (
	"sync/atomic"
	"time"
)

// maxRelativeExptime is the largest exptime taken as relative to now (30
// days); larger values are absolute unix times.
const maxRelativeExptime = 60 * 60 * 24 * 30

// startSkew makes the process "start" a little in the past, as memcached
// does, so that server-relative times are never zero (zero means "never"
// for exptime and "no flush" for the flush time).
const startSkew = 62

// Clock is the server clock in whole seconds relative to the process start,
// memcached's current_time. It is advanced by a ticker; reading it is one
// atomic load. Safe for concurrent use.
type Clock struct {
	started int64 // unix time of "process start" (now - startSkew)
	now     atomic.Uint32
	offset  atomic.Int64 // seconds added by Advance
	stop    chan struct{}
}

// NewClock starts a clock ticking every interval. Call Stop to end it.
func NewClock(interval time.Duration) *Clock { return newClockFrom(0, interval) }

// newClockFrom starts a clock whose server-relative 0 is the unix time
// started, so that it resumes a previous process's clock (a warm
// restart); 0 starts a new one.
func newClockFrom(started int64, interval time.Duration) *Clock {
	if started == 0 {
		started = time.Now().Unix() - startSkew
	}
	c := &Clock{started: started, stop: make(chan struct{})}
	c.tick()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.tick()
			case <-c.stop:
				return
			}
		}
	}()
	return c
}

func (c *Clock) tick() { c.now.Store(uint32(time.Now().Unix() - c.started + c.offset.Load())) }

// Now is the current server-relative time in seconds.
func (c *Clock) Now() uint32 { return c.now.Load() }

// Unix is the current unix time as the clock sees it.
func (c *Clock) Unix() int64 { return c.started + int64(c.Now()) }

// Stop ends the ticker goroutine.
func (c *Clock) Stop() { close(c.stop) }

// Advance moves the clock forward by d seconds; tests use it to expire
// items without sleeping.
func (c *Clock) Advance(d uint32) { c.offset.Add(int64(d)); c.tick() }

// RelTime converts a client's exptime to server-relative time, with
// memcached's rules: 0 never expires; negative is already expired; up to 30
// days is relative to now; larger is an absolute unix time, and one at or
// before the process start becomes 1 (long expired, but not "never").
func (c *Clock) RelTime(exptime int64) uint32 {
	if exptime < 0 {
		exptime = maxRelativeExptime + 1
	}
	if exptime == 0 {
		return 0
	}
	if exptime > maxRelativeExptime {
		if exptime <= c.started {
			return 1
		}
		return uint32(exptime - c.started)
	}
	return uint32(exptime) + c.Now()
}
