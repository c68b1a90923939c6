package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/memhive/memhive/analytics"
	"github.com/memhive/memhive/control"
)

// run calls a subcommand as main would and returns its output.
func run(t *testing.T, fn func([]string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := fn(args, &out, &errOut)
	return out.String(), err
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

// exercise runs every cache, cred and env command against the store in
// dir (directly, or through a server that holds it) and checks the store.
func exercise(t *testing.T, dir string, check func() (control.Store, func())) {
	data := "--data=" + dir
	out, err := run(t, cacheCmd, "create", "app", "--memory", "32", data)
	if err != nil || !strings.Contains(out, "app") || envLines(out)["MEMCACHIER_PASSWORD"] == "" {
		t.Fatalf("cache create: %v\n%s", err, out)
	}
	if _, err := run(t, cacheCmd, "create", "app", data); !errors.Is(err, control.ErrExists) && !strings.Contains(err.Error(), "exists") {
		t.Fatalf("creating a duplicate: %v", err)
	}
	if _, err := run(t, cacheCmd, "create", "huge", "--memory", "5000", data); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Fatalf("creating past the memory bound: %v", err)
	}
	if out, err = run(t, cacheCmd, "list", data); err != nil || !strings.Contains(out, "32 MiB") {
		t.Fatalf("cache list: %v\n%s", err, out)
	}
	if _, err = run(t, cacheCmd, "resize", "app", "16", data); err != nil {
		t.Fatalf("cache resize: %v", err)
	}
	if _, err = run(t, cacheCmd, "disable", "app", data); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, credCmd, "create", "app", "--caps", "write", data)
	user := envLines(out)["MEMCACHIER_USERNAME"]
	if err != nil || user == "" {
		t.Fatalf("cred create: %v\n%s", err, out)
	}
	if _, err = run(t, credCmd, "update", "app", user, "--caps", "write,api", data); err != nil {
		t.Fatalf("cred update: %v", err)
	}
	if _, err = run(t, credCmd, "promote", "app", user, data); err != nil {
		t.Fatalf("cred promote: %v", err)
	}
	out, err = run(t, envCmd, "app", data)
	env := envLines(out)
	if err != nil || len(env) != 3 || env["MEMCACHIER_SERVERS"] == "" {
		t.Fatalf("env: %v\n%s", err, out)
	}
	out, err = run(t, credCmd, "list", "app", "--json", data)
	var creds []credView
	if err != nil || json.Unmarshal([]byte(out), &creds) != nil || len(creds) != 3 {
		t.Fatalf("cred list: %v\n%s", err, out)
	}
	if _, err = run(t, credCmd, "delete", "app", env["MEMCACHIER_USERNAME"], data); err != nil {
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

	if _, err = run(t, cacheCmd, "delete", "app", data); err != nil {
		t.Fatalf("cache delete: %v", err)
	}
	if _, err = run(t, cacheCmd, "show", "app", data); err == nil {
		t.Fatal("showing a deleted cache succeeded")
	}
	var usage usageError
	if _, err = run(t, cacheCmd, "resize", "app", data); !errors.As(err, &usage) {
		t.Fatalf("a missing argument: %v", err)
	}
	if _, err = run(t, credCmd, "create", "app", "--caps", "root", data); !errors.As(err, &usage) {
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
	if err := writeJSONFile(filepath.Join(dir, serveStateFile), serveState{HTTP: srv.Addr(), Servers: "127.0.0.1:11999"}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, cacheCmd, "list", "--data", dir); err == nil || !strings.Contains(err.Error(), "admin-token") {
		t.Fatalf("without a token: %v", err)
	}
	os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("tok\n"), 0o600)
	out, _ := run(t, envCmd, "--data", dir, "nosuchcache")
	if out != "" {
		t.Fatalf("env of a missing cache printed %q", out)
	}
	exercise(t, dir, func() (control.Store, func()) { return store, func() {} })
}
