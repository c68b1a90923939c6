package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/memhive/memhive/control"
)

// backend is what the cache, cred and env commands need of the control
// plane: the store itself when no server holds it, or a running server's
// admin API (so that changes apply to it at once).
type backend interface {
	CreateCache(name string, limit int64, dev bool) (control.Cache, string, string, error)
	Caches() ([]control.Cache, error)
	Cache(id uint32) (control.Cache, error)
	UpdateCache(id uint32, u control.CacheUpdate) (control.Cache, error)
	DeleteCache(id uint32) error
	CreateCredential(cacheID uint32, n control.NewCredential) (control.Credential, string, error)
	Credentials(cacheID uint32) ([]control.Credential, error)
	UpdateCredential(cacheID, id uint32, u control.CredentialUpdate) (control.Credential, error)
	Promote(cacheID, id uint32) (control.Credential, error)
	DeleteCredential(cacheID, id uint32) error
	Servers() string
	Close() error
}

// cliConfig is what every control-plane command is told.
type cliConfig struct {
	data       string
	memoryMiB  int64
	overcommit bool
	token      string
	http       string
	json       bool
}

func (c *cliConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.data, "data", "./data", "directory of the control-plane store")
	fs.Int64Var(&c.memoryMiB, "server-memory", 1024, "the server's --memory in MiB, which bounds the caches' limits when the store is opened directly")
	fs.BoolVar(&c.overcommit, "overcommit", false, "allow the caches' limits to add up to more than --memory (direct mode)")
	// The default is read after parsing, not shown: help must not print
	// a secret from the environment.
	fs.StringVar(&c.token, "admin-token", "", "admin API token when a server holds the store (default $MEMHIVE_ADMIN_TOKEN, else DATA/admin.token)")
	fs.StringVar(&c.http, "http", "", "admin API address when a server holds the store (default: from DATA/serve.json)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

// open picks the backend: the store directly if no server holds it, else
// the admin API of the server that does. A --data of a cluster node
// (DATA/cluster.json) is never opened directly: its caches live in etcd,
// so the CLI goes through a running node's admin API, this --data's node
// or any other given by --http.
func (c *cliConfig) open() (backend, error) {
	var state serveState
	if b, err := os.ReadFile(filepath.Join(c.data, serveStateFile)); err == nil {
		json.Unmarshal(b, &state)
	}
	if _, err := os.Stat(c.data); err != nil {
		return nil, fmt.Errorf("--data %s: %w", c.data, err)
	}
	if _, err := os.Stat(filepath.Join(c.data, clusterFile)); err == nil {
		return c.openNode(state)
	}
	servers := state.Servers
	if servers == "" {
		servers = "127.0.0.1:11211"
	}
	policy := control.Policy{MemoryBytes: c.memoryMiB << 20, MinLimitBytes: 1 << 20}
	if c.overcommit {
		policy.MemoryBytes = 0
	}
	path := filepath.Join(c.data, storeFile)
	store, err := control.Open(path, policy, 200*time.Millisecond)
	if err == nil {
		return &directBackend{store: store, servers: servers}, nil
	}
	if !errors.Is(err, control.ErrLocked) {
		return nil, err
	}
	addr := c.http
	if addr == "" {
		addr = state.HTTP
	}
	if addr == "" {
		return nil, fmt.Errorf("the store in %s is held by a running server, but its admin address is unknown: pass --http", c.data)
	}
	token, err := c.adminToken()
	if err != nil {
		return nil, err
	}
	return newRemoteBackend(addr, token, servers), nil
}

// openNode is open for the --data of a cluster node: the admin API of the
// node running on it (DATA/serve.json) or of the node --http names. The
// server list is the one the running node keeps in serve.json, which
// follows the members as they come and go; through another node's admin
// API, the one it answers.
func (c *cliConfig) openNode(state serveState) (backend, error) {
	addr := c.http
	if addr == "" {
		addr = state.HTTP
	}
	if addr == "" {
		return nil, fmt.Errorf("--data %s belongs to a cluster node, whose caches live in etcd: the CLI goes through a running node's admin API; start the node, or pass --http HOST:PORT of any node", c.data)
	}
	token, err := c.adminToken()
	if err != nil {
		return nil, err
	}
	servers := ""
	if addr == state.HTTP {
		servers = state.Servers
	}
	return newRemoteBackend(addr, token, servers), nil
}

// adminToken is --admin-token, else $MEMHIVE_ADMIN_TOKEN, else the one in
// DATA/admin.token.
func (c *cliConfig) adminToken() (string, error) {
	token := c.token
	if token == "" {
		token = os.Getenv("MEMHIVE_ADMIN_TOKEN")
	}
	if token == "" {
		if b, err := os.ReadFile(filepath.Join(c.data, adminTokenFile)); err == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	if token == "" {
		return "", errors.New("the store is held by a running server: pass its --admin-token (or set MEMHIVE_ADMIN_TOKEN)")
	}
	return token, nil
}

// openCache opens the backend and finds the cache ref names in it.
func (c *cliConfig) openCache(ref string) (backend, control.Cache, error) {
	b, err := c.open()
	if err != nil {
		return nil, control.Cache{}, err
	}
	cache, err := findCache(b, ref)
	if err != nil {
		b.Close()
		return nil, control.Cache{}, err
	}
	return b, cache, nil
}

// parseArgs parses fs from args, allowing flags after positional
// arguments (`cache create NAME --memory 64`), and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError is a command line that cannot be run; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

const cacheUsage = `usage: memhive cache create NAME [--memory MB] [--dev]
       memhive cache list
       memhive cache show CACHE
       memhive cache resize CACHE MB
       memhive cache enable|disable|delete CACHE
CACHE is a name or an id.`

const credUsage = `usage: memhive cred create CACHE [--caps write,flush,api] [--primary] [--cert FILE | --cert-sha256 HEX] [--cert-cn NAME]
       memhive cred list CACHE
       memhive cred update CACHE CRED [--caps LIST] [--cert FILE | --cert-sha256 HEX] [--cert-cn NAME] [--no-cert]
       memhive cred promote|delete CACHE CRED
CRED is an id or a username; --caps takes a comma-separated list (or "none").

A credential bound to a TLS client certificate is logged in, without a
password, by a TLS connection that presents the certificate. --cert reads
its SHA-256 fingerprint from a PEM file; --cert-sha256 takes the fingerprint
as hex, with or without the colons of openssl x509 -fingerprint -sha256.
--cert-cn binds a subject common name, instead or as well: it matches only
certificates the server verified against memhive serve --tls-ca. A
certificate bound to another credential is refused. On update, what is not
given stays, an empty --cert-sha256 or --cert-cn clears that half, and
--no-cert clears both.`

// certFlags are the flags of cred create and update that bind a
// credential to a TLS client certificate.
type certFlags struct {
	file, sha256, cn string
	none             bool
}

func (c *certFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "cert", "", "bind the credential to the client certificate in this PEM file (its SHA-256 fingerprint)")
	fs.StringVar(&c.sha256, "cert-sha256", "", "bind the credential to the client certificate with this SHA-256 fingerprint (64 hex digits, colons allowed)")
	fs.StringVar(&c.cn, "cert-cn", "", "bind the credential to client certificates with this subject CN that the server verified (--tls-ca)")
	fs.BoolVar(&c.none, "no-cert", false, "unbind the credential from any client certificate (update)")
}

// certGiven reports whether u changes a certificate binding.
func certGiven(u control.CredentialUpdate) bool { return u.CertSHA256 != nil || u.CertCN != nil }

// patch checks the certificate flags the command line set (set holds
// their names) and reads --cert's file, all before anything is opened, so
// that a mistake changes nothing. It returns the update's certificate
// halves: nil stays as it is, empty is cleared.
func (c *certFlags) patch(sub string, set map[string]bool) (control.CredentialUpdate, error) {
	var p control.CredentialUpdate
	none := set["no-cert"] && c.none // --no-cert=false asks for nothing
	switch {
	case !set["cert"] && !set["cert-sha256"] && !set["cert-cn"] && !none:
		return p, nil
	case sub != "create" && sub != "update":
		return p, usagef("memhive cred %s takes no certificate flags: they are for create and update", sub)
	case none && (set["cert"] || set["cert-sha256"] || set["cert-cn"]):
		return p, usagef("--no-cert clears the certificate binding: pass it without --cert, --cert-sha256 or --cert-cn")
	case none && sub == "create":
		return p, usagef("--no-cert is for memhive cred update: a new credential is bound to nothing unless told")
	case set["cert"] && set["cert-sha256"]:
		return p, usagef("--cert and --cert-sha256 both give the fingerprint: pass one")
	case none:
		p.CertSHA256, p.CertCN = new(""), new("")
		return p, nil
	}
	if set["cert"] {
		if c.file == "" {
			return p, usagef("--cert needs the path of a PEM file")
		}
		pemBytes, err := os.ReadFile(c.file)
		if err != nil {
			return p, fmt.Errorf("--cert: %w", err)
		}
		fp, _, err := control.CertificateFile(pemBytes)
		if err != nil {
			return p, fmt.Errorf("--cert %s: %w", c.file, err)
		}
		p.CertSHA256 = &fp
	}
	if set["cert-sha256"] {
		fp := c.sha256
		if fp != "" {
			var err error
			if fp, err = control.ParseFingerprint(fp); err != nil {
				return p, fmt.Errorf("--cert-sha256: %w", err)
			}
		}
		p.CertSHA256 = &fp
	}
	if set["cert-cn"] {
		p.CertCN = &c.cn
	}
	return p, nil
}

// subcommandFlags splits `memhive cmd SUB ARGS...` into SUB and ARGS and
// makes SUB's flag set; help is true for `memhive cmd --help`, whose
// usage goes to out. A --help among ARGS also sends the usage to out.
func subcommandFlags(cmd string, args []string, out, errOut io.Writer) (sub string, rest []string, fs *flag.FlagSet, help bool) {
	sub, rest = args[0], args[1:]
	help = isHelpFlag(sub)
	if help {
		sub = ""
	}
	fs = flag.NewFlagSet(strings.TrimSpace("memhive "+cmd+" "+sub), flag.ContinueOnError)
	if help {
		fs.SetOutput(out)
	} else {
		helpTo(fs, rest, out, errOut)
	}
	return sub, rest, fs, help
}

// runCache is `memhive cache ...`.
func runCache(args []string, out, errOut io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", cacheUsage)
	}
	sub, rest, fs, help := subcommandFlags("cache", args, out, errOut)
	var cfg cliConfig
	cfg.register(fs)
	limitMB := fs.Int64("memory", 64, "the new cache's memory limit in MiB (create)")
	dev := fs.Bool("dev", false, "a dev cache: disabled after the server's --dev-idle without commands (create)")
	setUsage(fs, cacheUsage)
	if help {
		fs.Usage()
		return nil
	}
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "show": 1, "resize": 2, "enable": 1, "disable": 1, "delete": 1}
	n, ok := want[sub]
	if !ok {
		return usagef("unknown command %q\n%s", "cache "+sub, cacheUsage)
	}
	if len(pos) != n {
		return usagef("memhive cache %s takes %d argument(s)\n%s", sub, n, cacheUsage)
	}
	b, err := cfg.open()
	if err != nil {
		return err
	}
	defer b.Close()
	if sub == "create" {
		c, user, pass, err := b.CreateCache(pos[0], *limitMB<<20, *dev)
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, map[string]any{"cache": c, "servers": b.Servers(), "username": user, "password": pass})
		}
		printCaches(out, []control.Cache{c})
		fmt.Fprintln(out)
		printEnv(out, b.Servers(), user, pass)
		return nil
	}
	if sub == "list" {
		caches, err := b.Caches()
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, caches)
		}
		printCaches(out, caches)
		return nil
	}
	c, err := findCache(b, pos[0])
	if err != nil {
		return err
	}
	var u control.CacheUpdate
	switch sub {
	case "show":
		creds, err := b.Credentials(c.ID)
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, map[string]any{"cache": c, "credentials": credViews(creds)})
		}
		printCaches(out, []control.Cache{c})
		fmt.Fprintln(out)
		printCreds(out, creds)
		return nil
	case "delete":
		if err := b.DeleteCache(c.ID); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted cache %q (id %d)\n", c.Name, c.ID)
		return nil
	case "resize":
		mb, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil || mb <= 0 {
			return usagef("resize: %q is not a positive number of MiB", pos[1])
		}
		n := mb << 20
		u.LimitBytes = &n
	case "enable", "disable":
		on := sub == "enable"
		u.Enabled = &on
	}
	c, err = b.UpdateCache(c.ID, u)
	if err != nil {
		return err
	}
	if cfg.json {
		return printJSON(out, c)
	}
	printCaches(out, []control.Cache{c})
	return nil
}

// runCred is `memhive cred ...`.
func runCred(args []string, out, errOut io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", credUsage)
	}
	sub, rest, fs, help := subcommandFlags("cred", args, out, errOut)
	var cfg cliConfig
	cfg.register(fs)
	capsFlag := fs.String("caps", "", "capabilities: a comma-separated list of write, flush, api, or none")
	primary := fs.Bool("primary", false, "make the new credential the cache's primary (create)")
	var certs certFlags
	certs.register(fs)
	setUsage(fs, credUsage)
	if help {
		fs.Usage()
		return nil
	}
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 1, "update": 2, "promote": 2, "delete": 2}
	n, ok := want[sub]
	if !ok {
		return usagef("unknown command %q\n%s", "cred "+sub, credUsage)
	}
	if len(pos) != n {
		return usagef("memhive cred %s takes %d argument(s)\n%s", sub, n, credUsage)
	}
	caps := control.CapAll
	if *capsFlag != "" {
		if caps, err = parseCaps(*capsFlag); err != nil {
			return err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cert, err := certs.patch(sub, set)
	if err != nil {
		return err
	}
	if sub == "update" && *capsFlag == "" && !certGiven(cert) {
		return usagef("memhive cred update needs --caps, or --cert, --cert-sha256, --cert-cn or --no-cert")
	}
	b, c, err := cfg.openCache(pos[0])
	if err != nil {
		return err
	}
	defer b.Close()
	switch sub {
	case "create":
		n := control.NewCredential{Caps: caps, Primary: *primary}
		if cert.CertSHA256 != nil {
			n.Cert.SHA256 = *cert.CertSHA256
		}
		if cert.CertCN != nil {
			n.Cert.CN = *cert.CertCN
		}
		cred, pass, err := b.CreateCredential(c.ID, n)
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, map[string]any{"credential": credViews([]control.Credential{cred})[0], "password": pass})
		}
		printCreds(out, []control.Credential{cred})
		fmt.Fprintln(out)
		printEnv(out, b.Servers(), cred.Username, pass)
		return nil
	case "list":
		creds, err := b.Credentials(c.ID)
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, credViews(creds))
		}
		printCreds(out, creds)
		return nil
	}
	cred, err := findCred(b, c.ID, pos[1])
	if err != nil {
		return err
	}
	switch sub {
	case "update":
		if *capsFlag != "" {
			cert.Caps = &caps
		}
		cred, err = b.UpdateCredential(c.ID, cred.ID, cert)
	case "promote":
		cred, err = b.Promote(c.ID, cred.ID)
	case "delete":
		if err := b.DeleteCredential(c.ID, cred.ID); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted credential %s (id %d) of cache %q\n", cred.Username, cred.ID, c.Name)
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.json {
		return printJSON(out, credViews([]control.Credential{cred})[0])
	}
	printCreds(out, []control.Credential{cred})
	return nil
}

// envUsage is `memhive env --help`'s text.
const envUsage = `usage: memhive env CACHE [--new-credential]

Prints the variables MemCachier's clients read, as NAME=value lines for
eval "$(memhive env CACHE)". Notes go to standard error, each line starting
with "#": standard output holds only the NAME=value lines, and the notes
reach the terminal or the deploy log instead of vanishing into eval.

By default: MEMCACHIER_SERVERS and MEMCACHIER_USERNAME, the username of the
cache's primary credential. Passwords are stored only as salted hashes, so
there is no password to print, and nothing is created. To get one:
  memhive env CACHE --new-credential   as below
  memhive cred create CACHE            a new credential; --caps picks its capabilities
  a rotation                           memhive cred create CACHE, memhive cred promote
                                       CACHE NEW, memhive cred delete CACHE OLD

With --new-credential: creates a credential with the write and flush
capabilities and prints MEMCACHIER_SERVERS, MEMCACHIER_USERNAME and
MEMCACHIER_PASSWORD; standard error names the new credential (its id and
username), and "memhive cred delete CACHE ID" removes it. Each call
creates another one.`

// runEnv is `memhive env CACHE [--new-credential]`.
func runEnv(args []string, out, errOut io.Writer) error {
	var cfg cliConfig
	fs := flag.NewFlagSet("memhive env", flag.ContinueOnError)
	helpTo(fs, args, out, errOut)
	cfg.register(fs)
	newCred := fs.Bool("new-credential", false, "create a credential (write and flush) and print its password too")
	setUsage(fs, envUsage)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: memhive env CACHE [--new-credential]")
	}
	b, c, err := cfg.openCache(pos[0])
	if err != nil {
		return err
	}
	defer b.Close()
	if *newCred {
		cred, pass, err := b.CreateCredential(c.ID, control.NewCredential{Caps: control.CapWrite | control.CapFlush})
		if err != nil {
			return err
		}
		if cfg.json {
			return printJSON(out, map[string]any{"servers": b.Servers(), "credential": credViews([]control.Credential{cred})[0], "password": pass, "new": true})
		}
		printEnv(out, b.Servers(), cred.Username, pass)
		fmt.Fprintf(errOut, "# memhive: created credential %d (%s, %s) of cache %q;\n# remove it with: memhive cred delete %s %d\n",
			cred.ID, cred.Username, capsString(cred.Caps), c.Name, c.Name, cred.ID)
		return nil
	}
	creds, err := b.Credentials(c.ID)
	if err != nil {
		return err
	}
	var primary *control.Credential
	for i := range creds {
		if creds[i].Primary {
			primary = &creds[i]
			break
		}
	}
	if primary == nil {
		return fmt.Errorf("cache %q has no credentials: create one with memhive env %s --new-credential or memhive cred create %s", c.Name, c.Name, c.Name)
	}
	if cfg.json {
		return printJSON(out, map[string]any{"servers": b.Servers(), "credential": credViews([]control.Credential{*primary})[0], "new": false})
	}
	printEnv(out, b.Servers(), primary.Username, "")
	fmt.Fprintf(errOut, "# memhive: no MEMCACHIER_PASSWORD: passwords are stored only as salted hashes. For one, run\n"+
		"#   memhive env %[1]s --new-credential   (a new write,flush credential, with its password)\n"+
		"# or memhive cred create %[1]s, or rotate the primary: memhive cred create %[1]s,\n"+
		"#   memhive cred promote %[1]s NEW, memhive cred delete %[1]s %[2]d\n",
		c.Name, primary.ID)
	return nil
}

// printEnv prints a credential as the variables MemCachier's clients
// read, one per line, for eval; without a password (only its salted hash
// is kept) it leaves MEMCACHIER_PASSWORD out.
func printEnv(out io.Writer, servers, username, password string) {
	fmt.Fprintf(out, "MEMCACHIER_SERVERS=%s\nMEMCACHIER_USERNAME=%s\n", servers, username)
	if password != "" {
		fmt.Fprintf(out, "MEMCACHIER_PASSWORD=%s\n", password)
	}
}

func findCache(b backend, ref string) (control.Cache, error) {
	if id, err := strconv.ParseUint(ref, 10, 32); err == nil {
		return b.Cache(uint32(id))
	}
	caches, err := b.Caches()
	if err != nil {
		return control.Cache{}, err
	}
	for _, c := range caches {
		if c.Name == ref {
			return c, nil
		}
	}
	return control.Cache{}, fmt.Errorf("cache %q: %w", ref, control.ErrNotFound)
}

func findCred(b backend, cacheID uint32, ref string) (control.Credential, error) {
	creds, err := b.Credentials(cacheID)
	if err != nil {
		return control.Credential{}, err
	}
	for _, c := range creds {
		if c.Username == ref || strconv.FormatUint(uint64(c.ID), 10) == ref {
			return c, nil
		}
	}
	return control.Credential{}, fmt.Errorf("credential %q of cache %d: %w", ref, cacheID, control.ErrNotFound)
}

func parseCaps(s string) (control.Capabilities, error) {
	var caps control.Capabilities
	if s == "none" {
		return 0, nil
	}
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "write":
			caps |= control.CapWrite
		case "flush":
			caps |= control.CapFlush
		case "api":
			caps |= control.CapAPI
		case "all":
			caps |= control.CapAll
		default:
			return 0, usagef("--caps: unknown capability %q (want write, flush, api, all or none)", name)
		}
	}
	return caps, nil
}

func capsString(c control.Capabilities) string {
	var names []string
	for _, n := range []struct {
		c    control.Capabilities
		name string
	}{{control.CapWrite, "write"}, {control.CapFlush, "flush"}, {control.CapAPI, "api"}} {
		if c&n.c != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// credView is a credential for printing: never its salt or hash.
type credView struct {
	ID         uint32 `json:"id"`
	CacheID    uint32 `json:"cache_id"`
	Username   string `json:"username"`
	Caps       string `json:"capabilities"`
	Primary    bool   `json:"primary"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
	CertCN     string `json:"cert_cn,omitempty"`
}

func credViews(creds []control.Credential) []credView {
	out := make([]credView, 0, len(creds))
	for _, c := range creds {
		out = append(out, credView{ID: c.ID, CacheID: c.CacheID, Username: c.Username, Caps: capsString(c.Caps), Primary: c.Primary,
			CertSHA256: c.Cert.SHA256, CertCN: c.Cert.CN})
	}
	return out
}

// certString is a binding in a table cell: the fingerprint's first 16 hex
// digits (enough to tell certificates apart at a glance; --json has it
// whole), the CN, or "-" for none.
func certString(v credView) string {
	var parts []string
	if v.CertSHA256 != "" {
		parts = append(parts, v.CertSHA256[:min(16, len(v.CertSHA256))]+"…")
	}
	if v.CertCN != "" {
		parts = append(parts, "cn="+v.CertCN)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func printCaches(out io.Writer, caches []control.Cache) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tLIMIT\tPLAN\tENABLED\tDEV\tCREATED\tLAST ACTIVE")
	for _, c := range caches {
		last := "never"
		if !c.LastActive.IsZero() {
			last = c.LastActive.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%d\t%s\t%d MiB\t%s\t%v\t%v\t%s\t%s\n", c.ID, c.Name, c.LimitBytes>>20, c.Plan, c.Enabled, c.Dev, c.Created.Format(time.RFC3339), last)
	}
	w.Flush()
}

func printCreds(out io.Writer, creds []control.Credential) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSERNAME\tCAPABILITIES\tPRIMARY\tCERT")
	for _, c := range credViews(creds) {
		fmt.Fprintf(w, "%d\t%s\t%s\t%v\t%s\n", c.ID, c.Username, c.Caps, c.Primary, certString(c))
	}
	w.Flush()
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
