package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/internal/atomicfile"
)

// runCmd calls a subcommand as main would and returns its output.
func runCmd(t *testing.T, fn func([]string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := fn(args, &out, &errOut)
	return out.String(), err
}

// runCmdErr is runCmd that also returns the standard error.
func runCmdErr(t *testing.T, fn func([]string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := fn(args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func cacheCmd(args []string, out, errOut *bytes.Buffer) error { return runCache(args, out, errOut) }
func credCmd(args []string, out, errOut *bytes.Buffer) error  { return runCred(args, out, errOut) }
func envCmd(args []string, out, errOut *bytes.Buffer) error   { return runEnv(args, out, errOut) }

// envLines parses MEMCACHIER_* lines.
func envLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "MEMCACHIER_") {
			m[k] = v
		}
	}
	return m
}

// evalName is a shell variable assignment as memhive env prints it.
var evalName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=[^\s'"$` + "`" + `;&|<>()*?\[\\#]*$`)

// checkEvalSafe fails unless every line memhive env printed on standard
// output is NAME=value with nothing the shell would expand or split, and
// every line on standard error is a "#" comment (so that even
// eval "$(memhive env CACHE 2>&1)" works). If sh is installed it also
// evals the output, quoted and unquoted, and compares the variables.
func checkEvalSafe(t *testing.T, out, errOut string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !evalName.MatchString(l) {
			t.Errorf("memhive env stdout line %q is not NAME=value", l)
		}
	}
	for _, l := range strings.Split(strings.TrimSuffix(errOut, "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("memhive env stderr line %q is not a comment", l)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		return
	}
	want := envLines(out)
	for _, script := range []string{
		`eval "$1"`,              // eval "$(memhive env app)"
		`eval $(printf %s "$1")`, // eval $(memhive env app)
		`eval "$1
$2"`, // eval "$(memhive env app 2>&1)"
	} {
		got, err := exec.Command(sh, "-c", script+`; printf '%s|%s|%s' "$MEMCACHIER_SERVERS" "$MEMCACHIER_USERNAME" "$MEMCACHIER_PASSWORD"`, "sh", out, errOut).CombinedOutput()
		w := want["MEMCACHIER_SERVERS"] + "|" + want["MEMCACHIER_USERNAME"] + "|" + want["MEMCACHIER_PASSWORD"]
		if err != nil || string(got) != w {
			t.Errorf("sh -c %q: %v, got %q, want %q", script, err, got, w)
		}
	}
}

// countCreds is the number of credentials of cache in dir, through the CLI.
func countCreds(t *testing.T, data, cache string) int {
	t.Helper()
	out, err := runCmd(t, credCmd, "list", cache, "--json", data)
	var creds []credView
	if err != nil || json.Unmarshal([]byte(out), &creds) != nil {
		t.Fatalf("cred list: %v\n%s", err, out)
	}
	return len(creds)
}

// exercise runs every cache, cred and env command against the store in
// dir (directly, or through a server that holds it) and checks the store.
func exercise(t *testing.T, dir string, check func() (control.Store, func())) {
	data := "--data=" + dir
	out, err := runCmd(t, cacheCmd, "create", "app", "--memory", "32", data)
	if err != nil || !strings.Contains(out, "app") || envLines(out)["MEMCACHIER_PASSWORD"] == "" {
		t.Fatalf("cache create: %v\n%s", err, out)
	}
	if _, err := runCmd(t, cacheCmd, "create", "app", data); !errors.Is(err, control.ErrExists) && !strings.Contains(err.Error(), "exists") {
		t.Fatalf("creating a duplicate: %v", err)
	}
	if _, err := runCmd(t, cacheCmd, "create", "huge", "--memory", "5000", data); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Fatalf("creating past the memory bound: %v", err)
	}
	if out, err = runCmd(t, cacheCmd, "list", data); err != nil || !strings.Contains(out, "32 MiB") {
		t.Fatalf("cache list: %v\n%s", err, out)
	}
	if _, err = runCmd(t, cacheCmd, "resize", "app", "16", data); err != nil {
		t.Fatalf("cache resize: %v", err)
	}
	if _, err = runCmd(t, cacheCmd, "disable", "app", data); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, credCmd, "create", "app", "--caps", "write", data)
	user := envLines(out)["MEMCACHIER_USERNAME"]
	if err != nil || user == "" {
		t.Fatalf("cred create: %v\n%s", err, out)
	}
	if _, err = runCmd(t, credCmd, "update", "app", user, "--caps", "write,api", data); err != nil {
		t.Fatalf("cred update: %v", err)
	}
	if _, err = runCmd(t, credCmd, "promote", "app", user, data); err != nil {
		t.Fatalf("cred promote: %v", err)
	}
	// memhive env: the primary's username, no password, nothing created.
	before := countCreds(t, data, "app")
	out, errOut, err := runCmdErr(t, envCmd, "app", data)
	env := envLines(out)
	if err != nil || len(env) != 2 || env["MEMCACHIER_SERVERS"] == "" || env["MEMCACHIER_USERNAME"] != user {
		t.Fatalf("env: %v, want SERVERS and USERNAME=%s (the primary)\n%s", err, user, out)
	}
	if strings.Contains(out, "PASSWORD") || !strings.Contains(errOut, "memhive env app --new-credential") || !strings.Contains(errOut, "memhive cred create app") {
		t.Errorf("env printed a password or no way to get one:\nstdout: %s\nstderr: %s", out, errOut)
	}
	checkEvalSafe(t, out, errOut)
	if n := countCreds(t, data, "app"); n != before {
		t.Fatalf("env without --new-credential changed the credentials from %d to %d", before, n)
	}
	out, err = runCmd(t, envCmd, "app", "--json", data)
	var envJSON struct {
		Servers    string   `json:"servers"`
		Credential credView `json:"credential"`
		Password   *string  `json:"password"`
	}
	if err != nil || json.Unmarshal([]byte(out), &envJSON) != nil || envJSON.Credential.Username != user || !envJSON.Credential.Primary || envJSON.Password != nil {
		t.Fatalf("env --json: %v\n%s", err, out)
	}

	// memhive env --new-credential: exactly one new credential, named.
	out, errOut, err = runCmdErr(t, envCmd, "app", "--new-credential", data)
	env = envLines(out)
	if err != nil || len(env) != 3 || env["MEMCACHIER_SERVERS"] == "" || env["MEMCACHIER_PASSWORD"] == "" || env["MEMCACHIER_USERNAME"] == user {
		t.Fatalf("env --new-credential: %v\n%s", err, out)
	}
	checkEvalSafe(t, out, errOut)
	out, err = runCmd(t, credCmd, "list", "app", "--json", data)
	var creds []credView
	if err != nil || json.Unmarshal([]byte(out), &creds) != nil || len(creds) != before+1 {
		t.Fatalf("cred list after env --new-credential: %v, want %d\n%s", err, before+1, out)
	}
	var made credView
	for _, c := range creds {
		if c.Username == env["MEMCACHIER_USERNAME"] {
			made = c
		}
	}
	if made.Caps != "write,flush" || made.Primary {
		t.Fatalf("the credential env --new-credential made: %+v", made)
	}
	if name := fmt.Sprintf("credential %d (%s,", made.ID, made.Username); !strings.Contains(errOut, name) || !strings.Contains(errOut, fmt.Sprintf("memhive cred delete app %d", made.ID)) {
		t.Errorf("env --new-credential does not name %q and how to delete it:\n%s", name, errOut)
	}
	if _, err = runCmd(t, credCmd, "delete", "app", env["MEMCACHIER_USERNAME"], data); err != nil {
		t.Fatalf("cred delete: %v", err)
	}

	store, release := check()
	defer release()
	c, err := store.CacheByName("app")
	if err != nil || c.LimitBytes != 16<<20 || c.Enabled {
		t.Fatalf("the cache after the commands: %+v %v", c, err)
	}
	cr, err := store.CredentialByUsername(user)
	if err != nil || !cr.Primary || cr.Caps != control.CapWrite|control.CapAPI {
		t.Fatalf("the credential after the commands: %+v %v", cr, err)
	}
	if _, err := store.CredentialByUsername(env["MEMCACHIER_USERNAME"]); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("a deleted credential remains: %v", err)
	}
	release()

	// A cache whose only credential was deleted has no primary to name.
	out, err = runCmd(t, cacheCmd, "create", "bare", "--memory", "1", data)
	if err != nil {
		t.Fatalf("cache create bare: %v\n%s", err, out)
	}
	if _, err = runCmd(t, credCmd, "delete", "bare", envLines(out)["MEMCACHIER_USERNAME"], data); err != nil {
		t.Fatalf("deleting bare's only credential: %v", err)
	}
	if out, err = runCmd(t, envCmd, "bare", data); err == nil || out != "" || !strings.Contains(err.Error(), "--new-credential") {
		t.Fatalf("env of a cache without credentials: %v, stdout %q", err, out)
	}
	if _, err = runCmd(t, cacheCmd, "delete", "bare", data); err != nil {
		t.Fatalf("cache delete bare: %v", err)
	}

	if _, err = runCmd(t, cacheCmd, "delete", "app", data); err != nil {
		t.Fatalf("cache delete: %v", err)
	}
	if _, err = runCmd(t, cacheCmd, "show", "app", data); err == nil {
		t.Fatal("showing a deleted cache succeeded")
	}
	var usage usageError
	if _, err = runCmd(t, cacheCmd, "resize", "app", data); !errors.As(err, &usage) {
		t.Fatalf("a missing argument: %v", err)
	}
	if _, err = runCmd(t, credCmd, "create", "app", "--caps", "root", data); !errors.As(err, &usage) {
		t.Fatalf("an unknown capability: %v", err)
	}
}

func TestCLIDirect(t *testing.T) {
	dir := t.TempDir()
	exercise(t, dir, func() (control.Store, func()) {
		s, err := control.Open(filepath.Join(dir, storeFile), control.Policy{}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close() }
	})
	exerciseCerts(t, dir, func() (control.Store, func()) {
		s, err := control.Open(filepath.Join(dir, storeFile), control.Policy{}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close() }
	})
}

func TestCLIThroughARunningServer(t *testing.T) {
	dir := t.TempDir()
	store, err := control.Open(filepath.Join(dir, storeFile), control.Policy{MemoryBytes: 1 << 30, MinLimitBytes: 1 << 20}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	admin := analytics.NewAdmin(analytics.AdminConfig{Store: store, Token: "tok", Servers: "127.0.0.1:11999"})
	srv, err := analytics.ListenAndServe("127.0.0.1:0", func(ctx *fasthttp.RequestCtx) { admin.Handle(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if err := atomicfile.WriteJSON(filepath.Join(dir, serveStateFile), serveState{HTTP: srv.Addr(), Servers: "127.0.0.1:11999"}); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, cacheCmd, "list", "--data", dir); err == nil || !strings.Contains(err.Error(), "admin-token") {
		t.Fatalf("without a token: %v", err)
	}
	os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("tok\n"), 0o600)
	out, _ := runCmd(t, envCmd, "--data", dir, "nosuchcache")
	if out != "" {
		t.Fatalf("env of a missing cache printed %q", out)
	}
	exercise(t, dir, func() (control.Store, func()) { return store, func() {} })
	exerciseCerts(t, dir, func() (control.Store, func()) { return store, func() {} })
}

// writeCertPEM writes a self-signed client certificate with subject CN cn
// to a PEM file in dir, its private key after it (as in a combined file),
// and returns the path and the certificate's fingerprint.
func writeCertPEM(t *testing.T, dir, cn string) (path, fingerprint string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, cn+".pem")
	pemBytes := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, control.Fingerprint(der)
}

// credsJSON is cred list --json of cache, by username.
func credsJSON(t *testing.T, data, cache string) map[string]credView {
	t.Helper()
	out, err := runCmd(t, credCmd, "list", cache, "--json", data)
	var creds []credView
	if err != nil || json.Unmarshal([]byte(out), &creds) != nil {
		t.Fatalf("cred list: %v\n%s", err, out)
	}
	m := map[string]credView{}
	for _, c := range creds {
		m[c.Username] = c
	}
	return m
}

// exerciseCerts binds credentials to TLS client certificates with cred
// create and update, against the store in dir directly or through a
// server that holds it. A refused binding (the certificate is bound to
// another credential, the file is no certificate, the fingerprint is
// malformed) fails with a one-line error and a non-zero exit, and changes
// nothing: no credential is left behind.
func exerciseCerts(t *testing.T, dir string, check func() (control.Store, func())) {
	data := "--data=" + dir
	certA, fpA := writeCertPEM(t, t.TempDir(), "client-a")
	_, fpB := writeCertPEM(t, t.TempDir(), "client-b")
	if _, err := runCmd(t, cacheCmd, "create", "tls", "--memory", "1", data); err != nil {
		t.Fatalf("cache create: %v", err)
	}

	// --cert binds the file's fingerprint (not its CN: anyone can write
	// any CN into a certificate of their own).
	out, err := runCmd(t, credCmd, "create", "tls", "--cert", certA, "--caps", "write", data)
	userA := envLines(out)["MEMCACHIER_USERNAME"]
	if err != nil || userA == "" || !strings.Contains(out, "CERT") || !strings.Contains(out, fpA[:16]+"…") || strings.Contains(out, "cn=") {
		t.Fatalf("cred create --cert: %v\n%s", err, out)
	}
	if c := credsJSON(t, data, "tls")[userA]; c.CertSHA256 != fpA || c.CertCN != "" || c.Caps != "write" {
		t.Fatalf("the credential cred create --cert made: %+v, want bound to %s", c, fpA)
	}
	// The fingerprint as openssl prints it, and a CN beside it.
	openssl := "SHA256 Fingerprint=" + strings.ToUpper(regexp.MustCompile("..").ReplaceAllString(fpB, "$0:"))
	out, err = runCmd(t, credCmd, "create", "tls", "--cert-sha256", strings.TrimSuffix(openssl, ":"), "--cert-cn", "client-b", "--json", data)
	var made struct {
		Credential credView `json:"credential"`
		Password   string   `json:"password"`
	}
	if err != nil || json.Unmarshal([]byte(out), &made) != nil || made.Credential.CertSHA256 != fpB || made.Credential.CertCN != "client-b" || made.Password == "" {
		t.Fatalf("cred create --cert-sha256 --cert-cn: %v\n%s", err, out)
	}
	userB := made.Credential.Username

	// Refusals: a clear one-line error, exit 1 or 2, nothing created.
	snapshot := func() string {
		store, release := check()
		defer release()
		creds, err := store.Credentials(0)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v", creds)
	}
	before := snapshot()
	notPEM := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "tls", "--cert", certA}, "already exists"},
		{[]string{"create", "tls", "--cert-cn", "client-b", "--primary"}, "already exists"},
		{[]string{"create", "tls", "--cert", notPEM}, "no PEM CERTIFICATE"},
		{[]string{"create", "tls", "--cert", filepath.Join(dir, "missing.pem")}, "missing.pem"},
		{[]string{"create", "tls", "--cert-sha256", "abcd"}, "64 hex digits"},
		{[]string{"create", "tls", "--cert-cn", "bad\x01cn"}, "control character"},
		{[]string{"create", "tls", "--cert", certA, "--cert-sha256", fpB}, "pass one"},
		{[]string{"create", "tls", "--no-cert"}, "for memhive cred update"},
		{[]string{"update", "tls", userB, "--cert", certA}, "already exists"},
		{[]string{"update", "tls", userB, "--cert-cn", "x", "--caps", "none", "--cert-sha256", fpA}, "already exists"},
		{[]string{"update", "tls", userB, "--cert", notPEM, "--caps", "none"}, "no PEM CERTIFICATE"},
		{[]string{"update", "tls", userB, "--no-cert", "--cert-cn", "x"}, "--no-cert"},
		{[]string{"update", "tls", userB}, "needs --caps"},
		{[]string{"list", "tls", "--cert", certA}, "create and update"},
	} {
		var o, e bytes.Buffer
		code := run(append([]string{"cred"}, append(tc.args, data)...), &o, &e)
		if code == 0 || !strings.Contains(e.String(), tc.want) || strings.Count(e.String(), "\n") != 1 {
			t.Errorf("memhive cred %v: exit %d, stderr %q; want a non-zero exit and one line containing %q", tc.args, code, e.String(), tc.want)
		}
		if after := snapshot(); after != before {
			t.Fatalf("memhive cred %v changed the credentials:\nbefore %v\nafter  %v", tc.args, before, after)
		}
	}

	// update: what is not given stays; a flag with capabilities applies both.
	if out, err = runCmd(t, credCmd, "update", "tls", userA, "--cert-cn", "client-a", "--caps", "write,flush", data); err != nil || !strings.Contains(out, fpA[:16]+"… cn=client-a") {
		t.Fatalf("cred update --cert-cn --caps: %v\n%s", err, out)
	}
	if c := credsJSON(t, data, "tls")[userA]; c.CertSHA256 != fpA || c.CertCN != "client-a" || c.Caps != "write,flush" {
		t.Fatalf("after cred update --cert-cn --caps: %+v", c)
	}
	if _, err = runCmd(t, credCmd, "update", "tls", userA, "--cert-sha256", "", data); err != nil {
		t.Fatalf("cred update --cert-sha256 '': %v", err)
	}
	if c := credsJSON(t, data, "tls")[userA]; c.CertSHA256 != "" || c.CertCN != "client-a" {
		t.Fatalf("an empty --cert-sha256 did not clear only the fingerprint: %+v", c)
	}
	// --no-cert clears both, and may come with capabilities.
	out, err = runCmd(t, credCmd, "update", "tls", userB, "--no-cert", "--caps", "api", data)
	if err != nil || !regexp.MustCompile(`(?m)^\d+\s+`+userB+`\s+api\s+false\s+-$`).MatchString(out) {
		t.Fatalf("cred update --no-cert --caps api: %v\n%s", err, out)
	}
	// fpB is free again.
	if _, err = runCmd(t, credCmd, "update", "tls", userA, "--cert-sha256", fpB, data); err != nil {
		t.Fatalf("binding a fingerprint just unbound: %v", err)
	}
	if out, err = runCmd(t, credCmd, "list", "tls", data); err != nil || !strings.Contains(out, fpB[:16]+"… cn=client-a") {
		t.Fatalf("cred list: %v\n%s", err, out)
	}

	store, release := check()
	a, errA := store.CredentialByUsername(userA)
	b, errB := store.CredentialByUsername(userB)
	all, _ := store.Credentials(a.CacheID)
	if errA != nil || a.Cert != (control.CertBinding{SHA256: fpB, CN: "client-a"}) || errB != nil || b.Cert.Bound() || b.Caps != control.CapAPI || len(all) != 3 {
		t.Fatalf("the store after the commands: %+v %v, %+v %v, %d credentials", a, errA, b, errB, len(all))
	}
	release()
	if _, err = runCmd(t, cacheCmd, "delete", "tls", data); err != nil {
		t.Fatalf("cache delete: %v", err)
	}
}

// TestHelp checks that memhive, memhive help and memhive --help list every
// subcommand, and that each subcommand's --help shows its flags as the
// README writes them ("--name", memcached's one-letter aliases beside),
// on standard output, exiting 0, without printing a secret from the
// environment.
func TestHelp(t *testing.T) {
	t.Setenv("MEMHIVE_ADMIN_TOKEN", "secret-token-from-env")
	call := func(args ...string) (code int, out, errOut string) {
		var o, e bytes.Buffer
		code = run(args, &o, &e)
		return code, o.String(), e.String()
	}
	for _, args := range [][]string{{}, {"help"}, {"--help"}, {"-h"}} {
		code, out, errOut := call(args...)
		text := out + errOut
		wantCode, wantOn := 0, out
		if len(args) == 0 {
			wantCode, wantOn = 2, errOut // no command at all is a usage error
		}
		if code != wantCode || wantOn != text {
			t.Errorf("memhive %v: exit %d, stdout %d bytes, stderr %d bytes; want exit %d and the list on one stream", args, code, len(out), len(errOut), wantCode)
		}
		for _, c := range commands {
			if !strings.Contains(text, "\n  "+c.name+" ") {
				t.Errorf("memhive %v does not list %q:\n%s", args, c.name, text)
			}
		}
	}
	flags := map[string][]string{
		"serve": {"-l, --listen string", "-m, --memory int", "-I, --max-item-size string", "--auth string", "--tls-listen string", "--admin-token string", "--crawl-interval duration", "  -p int", "  -v int",
			"--etcd string", "--etcd-prefix string", "--etcd-ca string", "--etcd-cert string", "--etcd-key string", "--node string", "--advertise string",
			"--route string", "--forward-timeout duration"},
		"cache": {"--memory int", "--dev", "--data string", "--json"},
		"cred":  {"--caps string", "--primary", "--data string", "--cert string", "--cert-sha256 string", "--cert-cn string", "--no-cert", "--tls-ca"},
		"env":   {"--data string", "--admin-token string"},
	}
	for cmd, want := range flags {
		for _, args := range [][]string{{cmd, "--help"}, {cmd, "-h"}, {"help", cmd}} {
			code, out, errOut := call(args...)
			if code != 0 || errOut != "" {
				t.Errorf("memhive %v: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: memhive "+cmd) || !strings.Contains(out, "\nflags:\n") {
				t.Errorf("memhive %v: no usage line and flags:\n%s", args, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("memhive %v: no %q in\n%s", args, w, out)
				}
			}
			if strings.Contains(out, "secret-token-from-env") {
				t.Errorf("memhive %v prints $MEMHIVE_ADMIN_TOKEN", args)
			}
		}
	}
	if code, out, _ := call("cache", "create", "--help"); code != 0 || !strings.Contains(out, "--memory int") {
		t.Errorf("memhive cache create --help: exit %d\n%s", code, out)
	}
	if code, out, _ := call("version", "--help"); code != 0 || !strings.HasPrefix(out, "usage: memhive version") {
		t.Errorf("memhive version --help: exit %d %q", code, out)
	}
	if code, _, errOut := call("bogus"); code != 2 || !strings.Contains(errOut, `unknown command "bogus"`) || !strings.Contains(errOut, "\n  serve ") {
		t.Errorf("memhive bogus: exit %d\n%s", code, errOut)
	}
	if code, out, errOut := call("serve", "--no-such-flag"); code != 2 || out != "" || !strings.Contains(errOut, "usage: memhive serve") {
		t.Errorf("memhive serve --no-such-flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestCrawlIntervalFlag checks --crawl-interval: 10 s by default, 0 (the
// crawler off, as the differential test runs it) accepted, negative
// refused.
func TestCrawlIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
		ok   bool
	}{
		{nil, 10 * time.Second, true},
		{[]string{"--crawl-interval", "0"}, 0, true},
		{[]string{"--crawl-interval", "1m"}, time.Minute, true},
		{[]string{"--crawl-interval", "-1s"}, 0, false},
	} {
		c, err := parseServeFlags(tc.args, io.Discard, io.Discard)
		if (err == nil) != tc.ok || (tc.ok && c.crawlEvery != tc.want) {
			t.Errorf("%v: crawl interval %v, error %v; want %v, ok %v", tc.args, c.crawlEvery, err, tc.want, tc.ok)
		}
	}
}
