package testserver

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Login is a username and password that a SASL-mode server accepts.
type Login struct {
	Username string // a memhive credential's username, also in the sasldb
	Password string // its password, in clear
}

// StartMemcachedSASL starts Debian's memcached with -S (binary protocol
// only, SASL PLAIN required) and a sasldb holding logins, plus args. The
// sasldb and the memcached.conf that names it (mech_list: plain) live in
// a new temporary directory passed as SASL_CONF_PATH. It fails the test,
// loudly, when memcached or saslpasswd2 (Debian's sasl2-bin) is missing:
// run tools/install-deps.sh.
func StartMemcachedSASL(t testing.TB, logins []Login, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatalf("memcached is not installed (run tools/install-deps.sh as root): %v", err)
	}
	passwd, err := exec.LookPath("saslpasswd2")
	if err != nil {
		t.Fatalf("saslpasswd2 is not installed: it is Debian's package sasl2-bin (run tools/install-deps.sh as root): %v", err)
	}
	env, err := exec.LookPath("env")
	if err != nil {
		t.Fatalf("env (coreutils) not found: %v", err)
	}
	conf := t.TempDir()
	db := filepath.Join(conf, "sasldb2")
	for _, l := range logins {
		// -p reads the password from stdin without a prompt; -a names the
		// application, which is how memcached's sasl_server_new finds it.
		cmd := exec.Command(passwd, "-a", "memcached", "-c", "-p", "-f", db, l.Username)
		cmd.Stdin = strings.NewReader(l.Password)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("saslpasswd2 for %q: %v\n%s", l.Username, err, out)
		}
	}
	cfg := "mech_list: plain\nsasldb_path: " + db + "\n"
	if err := os.WriteFile(filepath.Join(conf, "memcached.conf"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, func(port int) []string {
		// env execs memcached in place, so the pid start records is
		// memcached's own.
		a := []string{env, "SASL_CONF_PATH=" + conf, bin, "-S", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0"}
		if os.Geteuid() == 0 {
			a = append(a, "-u", "root")
		}
		return append(a, args...)
	})
}

// CreateMemhiveCache creates a cache named name with a memory limit of mb
// MiB in the control-plane store under data (made if missing) through the
// memhive CLI, before any server holds the store, and returns its primary
// credential. A memhive started with `--auth sasl --data data` serves it.
func CreateMemhiveCache(t testing.TB, data, name string, mb int) Login {
	t.Helper()
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	memhiveJSON(t, &got, "cache", "create", name, "--memory", strconv.Itoa(mb), "--data", data, "--json")
	if got.Username == "" || got.Password == "" {
		t.Fatalf("memhive cache create %s printed no credential", name)
	}
	return Login{got.Username, got.Password}
}

// CreateMemhiveCredential adds a credential with capabilities caps (a
// comma-separated list as `memhive cred create --caps` takes it) to the
// cache named cache in the store under data, and returns it.
func CreateMemhiveCredential(t testing.TB, data, cache, caps string) Login {
	t.Helper()
	var got struct {
		Credential struct {
			Username string `json:"username"`
		} `json:"credential"`
		Password string `json:"password"`
	}
	memhiveJSON(t, &got, "cred", "create", cache, "--caps", caps, "--data", data, "--json")
	if got.Credential.Username == "" || got.Password == "" {
		t.Fatalf("memhive cred create %s printed no credential", cache)
	}
	return Login{got.Credential.Username, got.Password}
}

// memhiveJSON runs the memhive CLI with args and decodes its JSON output.
func memhiveJSON(t testing.TB, out any, args ...string) {
	t.Helper()
	cmd := exec.Command(MemhiveBinary(t), args...)
	raw, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("memhive %s: %v\n%s%s", strings.Join(args, " "), err, raw, stderr)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("memhive %s: decoding %q: %v", strings.Join(args, " "), raw, err)
	}
}
