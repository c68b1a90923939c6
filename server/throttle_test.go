package server

import (
	"net/netip"
	"testing"
	"time"
)

func TestAuthThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := newAuthThrottle(3, time.Minute)
	th.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")

	for i := 1; i <= 3; i++ {
		if th.blocked(a) {
			t.Fatalf("blocked after %d failures, limit 3", i-1)
		}
		if got := th.fail(a); got != (i == 3) {
			t.Fatalf("failure %d reported nowBlocked=%v", i, got)
		}
	}
	if !th.blocked(a) {
		t.Fatal("not blocked after 3 failures")
	}
	if th.blocked(b) {
		t.Fatal("another address is blocked")
	}
	now = now.Add(59 * time.Second)
	if !th.blocked(a) {
		t.Fatal("unblocked before the window ended")
	}
	now = now.Add(time.Second)
	if th.blocked(a) {
		t.Fatal("still blocked after the window")
	}
	if th.fail(a) {
		t.Fatal("the first failure of a new window blocks")
	}

	if newAuthThrottle(0, time.Minute) != nil {
		t.Fatal("limit 0 should turn the throttle off")
	}
	var off *authThrottle
	if off.fail(a) || off.blocked(a) {
		t.Fatal("a nil throttle refuses")
	}
	if th.blocked(netip.Addr{}) || th.fail(netip.Addr{}) {
		t.Fatal("an unknown address is throttled")
	}
}

// TestAuthThrottleIsBounded: failures from more addresses than
// maxThrottled do not grow the table past it.
func TestAuthThrottleIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	th := newAuthThrottle(1, time.Minute)
	th.now = func() time.Time { return now }
	for i := 0; i < maxThrottled+100; i++ {
		th.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(th.addrs); n > maxThrottled {
		t.Fatalf("%d addresses tracked, bound %d", n, maxThrottled)
	}
	now = now.Add(time.Minute)
	if th.fail(netip.MustParseAddr("192.168.0.1")); len(th.addrs) > maxThrottled {
		t.Fatal("expired entries were not pruned")
	}
}
