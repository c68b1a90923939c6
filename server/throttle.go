package server

import (
	"net/netip"
	"sync"
	"time"
)

// maxThrottled bounds the addresses the throttle remembers, so that
// failures from many addresses cannot grow it without limit. Past it,
// expired entries are dropped; if none has expired, a new address is not
// tracked (it is not refused either).
const maxThrottled = 1 << 16

// authThrottle counts failed logins per source address in fixed windows:
// once an address has failed limit times in a window, its further login
// attempts are refused, right password or not, until the window ends.
// Logins happen once per connection, so one mutex is enough.
type authThrottle struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex // guards addrs and the failures in it
	addrs map[netip.Addr]*failures
}

type failures struct {
	count int
	since time.Time // the start of the current window
}

// newAuthThrottle makes a throttle allowing limit failures per window and
// address; limit <= 0 turns throttling off (nil).
func newAuthThrottle(limit int, window time.Duration) *authThrottle {
	if limit <= 0 {
		return nil
	}
	return &authThrottle{limit: limit, window: window, now: time.Now, addrs: make(map[netip.Addr]*failures)}
}

// blocked reports whether addr has used up its failures for this window.
func (t *authThrottle) blocked(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[addr]
	if f == nil {
		return false
	}
	if t.now().Sub(f.since) >= t.window {
		delete(t.addrs, addr)
		return false
	}
	return f.count >= t.limit
}

// fail counts a failed login from addr; it reports whether this failure
// used up the address's allowance (so that the caller logs it once).
func (t *authThrottle) fail(addr netip.Addr) (nowBlocked bool) {
	if t == nil || !addr.IsValid() {
		return false
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[addr]
	if f == nil || now.Sub(f.since) >= t.window {
		if f == nil && len(t.addrs) >= maxThrottled && !t.pruneLocked(now) {
			return false
		}
		f = &failures{since: now}
		t.addrs[addr] = f
	}
	f.count++
	return f.count == t.limit
}

// pruneLocked drops the entries whose window has ended and reports
// whether there is room for another.
func (t *authThrottle) pruneLocked(now time.Time) bool {
	for a, f := range t.addrs {
		if now.Sub(f.since) >= t.window {
			delete(t.addrs, a)
		}
	}
	return len(t.addrs) < maxThrottled
}
