package difftest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/internal/testserver"
)

// TestSASLDifferential replays generated binary traffic in SASL mode
// against memcached -S (Cyrus SASL PLAIN, a sasldb) and memhive --auth
// sasl, both knowing the same two logins, and fails at the first reply
// or close that differs.
//
//	DIFF_SASL_SEED=n        replay the run of seed n (default: a fresh seed)
//	DIFF_SASL_REQUESTS=n    number of requests (default 100,000; 10,000 with -short)
//	DIFF_SASL_SESSION=n,m   run only these sessions of the seed, one by one
//	DIFF_SASL_AGAINST=memcached  compare memcached -S with a second one,
//	                        which validates the harness itself
//
// memhive runs without the auth-fail throttle and with a long
// --auth-timeout: memcached has neither, and the run makes thousands of
// failed logins from one address in sessions that stay unauthenticated
// for a while.
func TestSASLDifferential(t *testing.T) {
	seed := envSeed(t, "DIFF_SASL_SEED")
	requests := envRequests(t, "DIFF_SASL_REQUESTS")
	var sessions []int
	if s := os.Getenv("DIFF_SASL_SESSION"); s != "" {
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 0 {
				t.Fatalf("DIFF_SASL_SESSION=%q: want session numbers", s)
			}
			sessions = append(sessions, v)
		}
	}
	against := envAgainst(t, "DIFF_SASL_AGAINST")
	// The seed goes out first, to stderr as well: if the package runs out
	// of time, go test prints only a panic, and t.Logf output may be lost.
	msg := fmt.Sprintf("difftest SASL: seed %d, %d requests (replay with DIFF_SASL_SEED=%d go test ./tools/difftest/ -run TestSASLDifferential)", seed, requests, seed)
	fmt.Fprintln(os.Stderr, msg)
	t.Log(msg)

	// memhive generates its credentials; memcached's sasldb gets the same.
	data := t.TempDir()
	first := testserver.CreateMemhiveCache(t, data, "difftest", 1024)
	second := testserver.CreateMemhiveCredential(t, data, "difftest", "write,flush")
	logins := []testserver.Login{first, second}
	ref := testserver.StartMemcachedSASL(t, logins, "-m", "1024", "-t", "2")
	other := SASLServer{Name: "memhive"}
	if against == "memcached" {
		other.Name = "memcached-2"
		other.Addr = testserver.StartMemcachedSASL(t, logins, "-m", "1024", "-t", "2").Addr
	} else {
		other.Addr = testserver.StartMemhive(t, "--auth", "sasl", "--data", data, "--memory", "1024", "--threads", "2",
			"--auth-fail-limit", "0", "--auth-timeout", "1h").Addr
	}
	opt := SASLOptions{
		Seed:             seed,
		Requests:         requests,
		Logins:           [2]SASLLogin{{first.Username, first.Password}, {second.Username, second.Password}},
		Sessions:         sessions,
		VersionAuthError: against != "memcached",
	}
	if dl, ok := t.Deadline(); ok {
		opt.MaxDuration = time.Until(dl) * 3 / 4
	}
	sum, err := RunSASL(SASLServer{Name: "memcached", Addr: ref.Addr}, other, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d requests (and %d fences) in %d sessions, %d closed by the servers, in %v",
		seed, sum.Requests, sum.Fences, sum.Sessions, sum.Closed, sum.Elapsed.Round(time.Millisecond))
	t.Logf("requests by kind: %s", sum.KindCounts())
	if len(sessions) == 0 && (sum.Kinds["sasl-auth-ok"] == 0 || sum.Kinds["sasl-auth-empty"] == 0 || sum.Closed == 0) {
		t.Fatalf("the run covered too little: %d right logins, %d empty AUTHs, %d closed sessions", sum.Kinds["sasl-auth-ok"], sum.Kinds["sasl-auth-empty"], sum.Closed)
	}
}
