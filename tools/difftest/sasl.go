package difftest

// The SASL-mode differential run: random binary traffic against memcached
// -S (Cyrus SASL, PLAIN, a sasldb) and memhive --auth sasl, both knowing
// the same two logins, compared reply for reply and close for close.
//
// Traffic is made of sessions, one connection each (and its twin on the
// other server). A session is a list of groups; a group is a few requests
// written at once followed by a fence, a VERSION request with its own
// opaque: both servers answer VERSION whether or not the connection has
// logged in and VERSION changes no SASL state, so its reply marks the end
// of the group's replies, and when it does not come the server has closed
// the connection. Sessions use their own keys, so their replies do not
// depend on how they interleave; the ones that flush (a global change)
// run alone. Every session is generated from the seed and its number
// alone, so a seed replays the same sessions and one session can be run
// by itself.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SASLServer is one of the two servers a SASL run compares.
type SASLServer struct {
	Name string // for messages: "memcached", "memhive"
	Addr string // host:port
}

// SASLLogin is a username and password both servers accept.
type SASLLogin struct {
	Username, Password string
}

// SASLOptions configures RunSASL.
type SASLOptions struct {
	// Seed makes the run: the same seed, the same sessions.
	Seed int64
	// Requests is how many generated requests to send at least; fences
	// are not counted. Default 100,000.
	Requests int
	// Workers is how many sessions run at once. Default 32.
	Workers int
	// Logins are two credentials of the same data (in memhive two
	// credentials of one cache, with write and flush).
	Logins [2]SASLLogin
	// MaxDuration stops starting sessions after this long (default 10
	// minutes).
	MaxDuration time.Duration
	// Sessions, if not empty, runs only these session numbers, alone and
	// in order: a debugging aid to replay a failure.
	Sessions []int
	// VersionAuthError says that the second server answers VERSION before
	// a login with an auth error (status 0x20) where memcached answers its
	// version: memhive's deliberate difference (DESIGN.md). Only that
	// reply's status is forgiven; the connection must stay open.
	VersionAuthError bool
}

// SASLSummary describes a SASL run that found no difference.
type SASLSummary struct {
	Sessions int            // sessions run, one connection each
	Requests int            // generated requests sent
	Fences   int            // fence VERSION requests sent
	Closed   int            // sessions that the servers closed
	Kinds    map[string]int // requests per kind
	Elapsed  time.Duration  // the run's wall time
}

// KindCounts renders per-kind request counts, most frequent first.
func (s SASLSummary) KindCounts() string { return kindCounts(s.Kinds, ", ", "%s %d") }

// SASLMismatch is the first difference a SASL run found.
type SASLMismatch struct {
	Seed    int64
	Session int
	Group   int
	Detail  string // the session's groups up to the difference, with both replies
}

func (m *SASLMismatch) Error() string {
	return fmt.Sprintf("difftest SASL: seed %d, session %d, group %d: replies differ (replay: DIFF_SASL_SEED=%d DIFF_SASL_SESSION=%d go test ./tools/difftest/ -run TestSASLDifferential -v)\n%s",
		m.Seed, m.Session, m.Group, m.Seed, m.Session, m.Detail)
}

// Binary opcodes the SASL run sends.
const (
	sOpGet      = 0x00
	sOpSet      = 0x01
	sOpAdd      = 0x02
	sOpReplace  = 0x03
	sOpDelete   = 0x04
	sOpIncr     = 0x05
	sOpDecr     = 0x06
	sOpQuit     = 0x07
	sOpFlush    = 0x08
	sOpGetQ     = 0x09
	sOpNoop     = 0x0a
	sOpVersion  = 0x0b
	sOpGetK     = 0x0c
	sOpGetKQ    = 0x0d
	sOpAppend   = 0x0e
	sOpPrepend  = 0x0f
	sOpStat     = 0x10
	sOpSetQ     = 0x11
	sOpAddQ     = 0x12
	sOpReplaceQ = 0x13
	sOpDeleteQ  = 0x14
	sOpIncrQ    = 0x15
	sOpDecrQ    = 0x16
	sOpQuitQ    = 0x17
	sOpFlushQ   = 0x18
	sOpAppendQ  = 0x19
	sOpPrependQ = 0x1a
	sOpVerbose  = 0x1b
	sOpTouch    = 0x1c
	sOpGAT      = 0x1d
	sOpGATQ     = 0x1e
	sOpSASLList = 0x20
	sOpSASLAuth = 0x21
	sOpSASLStep = 0x22
	sOpGATK     = 0x23
	sOpGATKQ    = 0x24
)

// saslMechLimit is memcached's MAX_SASL_MECH_LEN; saslDataLimit the most
// mechanism plus data bytes memcached 1.6.18 takes in one SASL request
// with its default slab chunks (see codec's saslTooLarge).
const (
	saslMechLimit = 32
	saslDataLimit = 512<<10 - 59
)

// saslReq is one generated request.
type saslReq struct {
	kind    string
	key     string // the item key, for CAS values; "" if none
	pkt     []byte // the bytes sent, CAS field included
	casLast bool   // the CAS field takes the side's last CAS for key
	opaque  uint32
	// alone: memcached closes at once, dropping the replies it has not
	// written yet, which depends on how the group arrives; so the request
	// goes in a group of its own.
	alone bool
}

// saslSession is one connection's script.
type saslSession struct {
	id     int
	solo   bool // flushes: runs with no other session
	groups [][]saslReq
}

// saslGen generates one session.
type saslGen struct {
	r      *rand.Rand
	logins [2]SASLLogin
	id     int
	solo   bool
	opaque uint32
	ended  bool // the last request closes the connection whatever the state
}

// saslSoloEvery: every so many sessions one runs alone and may flush.
const saslSoloEvery = 50

func newSASLSession(seed int64, id int, logins [2]SASLLogin) *saslSession {
	g := &saslGen{r: rand.New(rand.NewPCG(uint64(seed), uint64(id)+1)), logins: logins, id: id, solo: id%saslSoloEvery == saslSoloEvery-1}
	s := &saslSession{id: id, solo: g.solo}
	n := 1 + g.r.IntN(16)
	for i := 0; i < n && !g.ended; i++ {
		var grp []saslReq
		size := 1
		switch w := g.r.IntN(10); {
		case w < 5:
		case w < 9:
			size = 2 + g.r.IntN(3)
		default:
			size = 5 + g.r.IntN(4)
		}
		for j := 0; j < size && !g.ended; j++ {
			var r saslReq
			if i == 0 && j == 0 {
				r = g.first()
			} else {
				r = g.request()
			}
			if r.alone && len(grp) > 0 {
				s.groups = append(s.groups, grp)
				grp = nil
			}
			grp = append(grp, r)
		}
		s.groups = append(s.groups, grp)
	}
	return s
}

func (g *saslGen) chance(p float64) bool { return g.r.Float64() < p }

// pickMech returns one of saslMechs, weighted.
func (g *saslGen) pickMech() string {
	return saslMechs[weighted(g.r, len(saslMechs), func(i int) int { return saslMechs[i].w })].mech
}

// weighted picks an index below n, each i with a chance in proportion to
// weight(i).
func weighted(r *rand.Rand, n int, weight func(int) int) int {
	total := 0
	for i := range n {
		total += weight(i)
	}
	x := r.IntN(total)
	for i := range n {
		if x < weight(i) {
			return i
		}
		x -= weight(i)
	}
	panic("unreachable")
}

// packet builds a request with the next opaque.
func (g *saslGen) packet(kind string, op byte, key string, extras, value []byte) saslReq {
	g.opaque++
	return saslReq{kind: kind, key: key, opaque: g.opaque, pkt: saslPacket(0x80, op, []byte(key), extras, value, g.opaque, 0)}
}

func saslPacket(magic, op byte, key, extras, value []byte, opaque uint32, cas uint64) []byte {
	p := make([]byte, 24, 24+len(extras)+len(key)+len(value))
	p[0], p[1] = magic, op
	binary.BigEndian.PutUint16(p[2:], uint16(len(key)))
	p[4] = byte(len(extras))
	binary.BigEndian.PutUint32(p[8:], uint32(len(extras)+len(key)+len(value)))
	binary.BigEndian.PutUint32(p[12:], opaque)
	binary.BigEndian.PutUint64(p[16:], cas)
	return append(append(append(p, extras...), key...), value...)
}

// first opens a session: mostly a login, so that sessions go on past
// their first ordinary command, which closes an unauthenticated one.
func (g *saslGen) first() saslReq {
	switch w := g.r.IntN(20); {
	case w < 15:
		return g.auth(sOpSASLAuth, true)
	case w < 16:
		return g.list()
	default:
		return g.request()
	}
}

func (g *saslGen) request() saslReq {
	switch w := g.r.IntN(100); {
	case w < 20:
		return g.auth(sOpSASLAuth, false)
	case w < 27:
		return g.auth(sOpSASLStep, false)
	case w < 31:
		return g.list()
	case w < 92:
		return g.ordinary()
	default:
		return g.oddity()
	}
}

func (g *saslGen) list() saslReq {
	if g.chance(0.04) {
		// A body LIST MECHS must not have: invalid arguments, closed.
		g.ended = true
		return g.packet("sasl-list-with-body", sOpSASLList, "", nil, []byte("x"))
	}
	return g.packet("sasl-list", sOpSASLList, "", nil, nil)
}

// mechs are SASL AUTH keys: Cyrus takes PLAIN in any case, with or
// without -PLUS, up to the first NUL; 33 bytes are refused before.
var saslMechs = []struct {
	w    int
	mech string
}{
	{160, "PLAIN"}, {6, "plain"}, {4, "PLAIN-PLUS"}, {2, "Plain-pLus"},
	{4, "PLAIN\x00junk"}, {2, "PLAINX"}, {2, "PLAI"}, {2, "PLAIN "},
	{3, "CRAM-MD5"}, {1, "\x00PLAIN"}, {1, "-PLUS"}, {2, strings.Repeat("P", saslMechLimit)},
	{2, strings.Repeat("Q", saslMechLimit+1)},
}

// auth makes a SASL AUTH or STEP; good asks for a right login.
func (g *saslGen) auth(op byte, good bool) saslReq {
	name := map[byte]string{sOpSASLAuth: "sasl-auth", sOpSASLStep: "sasl-step"}[op]
	if !good && g.chance(0.01) {
		// No mechanism, or extras: invalid arguments, closed.
		g.ended = true
		if g.chance(0.5) {
			return g.packet(name+"-no-mech", op, "", nil, []byte("\x00"+g.logins[0].Username+"\x00"+g.logins[0].Password))
		}
		return g.packet(name+"-extras", op, "PLAIN", []byte{0, 0, 0, 0}, []byte("\x00"+g.logins[0].Username+"\x00"+g.logins[0].Password))
	}
	mech := "PLAIN"
	if !good {
		mech = g.pickMech()
	}
	kind, msg := g.plainMessage(good, len(mech))
	if mech != "PLAIN" {
		kind = "mech-" + strings.NewReplacer("\x00", "NUL", " ", "SP").Replace(mech)
		if len(mech) > 12 {
			kind = fmt.Sprintf("mech-%d-bytes", len(mech))
		}
	}
	return g.packet(name+"-"+kind, op, mech, nil, msg)
}

// plainMessage returns a PLAIN message and its kind; good asks for one
// with a right login.
func (g *saslGen) plainMessage(good bool, mechLen int) (string, []byte) {
	l := g.logins[0]
	other := g.logins[1]
	if g.chance(0.3) {
		l, other = other, l
	}
	u, p := l.Username, l.Password
	if good {
		return "ok", []byte("\x00" + u + "\x00" + p)
	}
	spaces := []string{" ", "\t", "\n", "\v", "\f", "\r", "  "}
	sp := func() string { return spaces[g.r.IntN(len(spaces))] }
	cases := []plainCase{
		{30, "ok", func() string { return "\x00" + u + "\x00" + p }},
		{4, "authz-same", func() string { return u + "\x00" + u + "\x00" + p }},
		{2, "authz-spaced", func() string { return sp() + u + sp() + "\x00" + u + "\x00" + p }},
		{2, "user-spaced", func() string { return "\x00" + sp() + u + sp() + "\x00" + p }},
		{1, "both-spaced", func() string { return u + sp() + "\x00" + sp() + u + "\x00" + p }},
		{3, "authz-other", func() string { return other.Username + "\x00" + u + "\x00" + p }},
		{2, "authz-unknown", func() string { return "nosuchuser\x00" + u + "\x00" + p }},
		{1, "authz-blank", func() string { return sp() + "\x00" + u + "\x00" + p }},
		{6, "wrong-password", func() string { return "\x00" + u + "\x00" + p[:len(p)-1] }},
		{2, "longer-password", func() string { return "\x00" + u + "\x00" + p + "x" }},
		{3, "other-password", func() string { return "\x00" + u + "\x00" + other.Password }},
		{1, "password-spaced", func() string { return "\x00" + u + "\x00" + sp() + p }},
		{3, "unknown-user", func() string { return "\x00nosuchuser\x00" + p }},
		{1, "user-case", func() string { return "\x00" + flipCase(u) + "\x00" + p }},
		{1, "user-prefix", func() string { return "\x00" + u[:len(u)-1] + "\x00" + p }},
		{6, "empty", func() string { return "" }},
		{2, "no-nul", func() string { return u + p }},
		{3, "one-nul", func() string { return u + "\x00" + p }},
		{2, "three-nuls", func() string { return "\x00" + u + "\x00" + p + "\x00" }},
		{1, "nul-in-password", func() string { return "\x00" + u + "\x00" + p[:3] + "\x00" + p[3:] }},
		{2, "empty-user", func() string { return "\x00\x00" + p }},
		{1, "blank-user", func() string { return "\x00" + sp() + "\x00" + p }},
		{2, "empty-password", func() string { return "\x00" + u + "\x00" }},
		{1, "only-nuls", func() string { return "\x00\x00" }},
		{1, "long-password", func() string { return "\x00" + u + "\x00" + p + strings.Repeat("y", 100+g.r.IntN(5000)) }},
		{2, "junk", func() string {
			b := make([]byte, 1+g.r.IntN(40))
			for i := range b {
				b[i] = byte(g.r.IntN(256))
			}
			return string(b)
		}},
		{1, "at-limit", func() string {
			// Around the most memcached reads: the limit counts mechanism
			// and data; past it, out of memory, and the data is swallowed.
			n := saslDataLimit - mechLen + g.r.IntN(4) - 1
			if g.chance(0.2) {
				n = 600<<10 + g.r.IntN(600<<10)
			}
			head := "\x00" + u + "\x00"
			return head + strings.Repeat("z", max(n-len(head), 0))
		}},
	}
	c := cases[weighted(g.r, len(cases), func(i int) int { return cases[i].w })]
	return c.kind, []byte(c.f())
}

// plainCase is one kind of PLAIN message, with its weight.
type plainCase struct {
	w    int
	kind string
	f    func() string
}

func flipCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 32
		case c >= 'A' && c <= 'Z':
			b[i] = c + 32
		}
	}
	if string(b) == s {
		b = append(b, 'x')
	}
	return string(b)
}

// key returns one of the session's keys.
func (g *saslGen) key() string { return fmt.Sprintf("s%d:k%d", g.id, g.r.IntN(4)) }

func (g *saslGen) value() []byte {
	if g.chance(0.3) {
		return []byte(fmt.Sprint(g.r.IntN(1000)))
	}
	b := make([]byte, g.r.IntN(24))
	for i := range b {
		b[i] = 'a' + byte(g.r.IntN(26))
	}
	return b
}

// casMode sets a request's CAS: none, the side's last for the key, or
// one no item has.
func (g *saslGen) casMode(req saslReq) saslReq {
	switch w := g.r.IntN(10); {
	case w < 2:
		req.casLast = true
		req.kind += "-cas"
	case w < 3:
		binary.BigEndian.PutUint64(req.pkt[16:], 1<<62)
		req.kind += "-stale-cas"
	}
	return req
}

var saslOpNames = map[byte]string{
	sOpGet: "get", sOpGetQ: "getq", sOpGetK: "getk", sOpGetKQ: "getkq",
	sOpSet: "set", sOpSetQ: "setq", sOpAdd: "add", sOpAddQ: "addq",
	sOpReplace: "replace", sOpReplaceQ: "replaceq", sOpAppend: "append",
	sOpAppendQ: "appendq", sOpPrepend: "prepend", sOpPrependQ: "prependq",
	sOpDelete: "delete", sOpDeleteQ: "deleteq", sOpIncr: "incr", sOpIncrQ: "incrq",
	sOpDecr: "decr", sOpDecrQ: "decrq", sOpTouch: "touch", sOpGAT: "gat",
	sOpGATQ: "gatq", sOpGATK: "gatk", sOpGATKQ: "gatkq", sOpFlush: "flush",
	sOpFlushQ: "flushq", sOpQuit: "quit", sOpQuitQ: "quitq",
}

// ordinary makes a data command, a NOOP, VERSION or STAT.
func (g *saslGen) ordinary() saslReq {
	one := func(ops ...byte) byte { return ops[g.r.IntN(len(ops))] }
	switch w := g.r.IntN(100); {
	case w < 26:
		op := one(sOpGet, sOpGetQ, sOpGetK, sOpGetKQ)
		k := g.key()
		return g.packet(saslOpNames[op], op, k, nil, nil)
	case w < 50:
		op := one(sOpSet, sOpSetQ, sOpAdd, sOpAddQ, sOpReplace, sOpReplaceQ)
		ext := make([]byte, 8)
		binary.BigEndian.PutUint32(ext, uint32(g.r.IntN(3)))
		return g.casMode(g.packet(saslOpNames[op], op, g.key(), ext, g.value()))
	case w < 58:
		op := one(sOpAppend, sOpAppendQ, sOpPrepend, sOpPrependQ)
		return g.casMode(g.packet(saslOpNames[op], op, g.key(), nil, g.value()))
	case w < 66:
		op := one(sOpDelete, sOpDeleteQ)
		return g.casMode(g.packet(saslOpNames[op], op, g.key(), nil, nil))
	case w < 74:
		op := one(sOpIncr, sOpIncrQ, sOpDecr, sOpDecrQ)
		ext := make([]byte, 20)
		binary.BigEndian.PutUint64(ext, uint64(g.r.IntN(50)))
		binary.BigEndian.PutUint64(ext[8:], uint64(g.r.IntN(100)))
		kind := saslOpNames[op]
		if g.chance(0.3) {
			binary.BigEndian.PutUint32(ext[16:], 0xffffffff) // no auto-create
			kind += "-nocreate"
		}
		return g.casMode(g.packet(kind, op, g.key(), ext, nil))
	case w < 80:
		op := one(sOpTouch, sOpGAT, sOpGATQ, sOpGATK, sOpGATKQ)
		ext := make([]byte, 4)
		if g.chance(0.5) {
			binary.BigEndian.PutUint32(ext, 3600)
		}
		return g.packet(saslOpNames[op], op, g.key(), ext, nil)
	case w < 88:
		return g.packet("noop", sOpNoop, "", nil, nil)
	case w < 94:
		return g.packet("version", sOpVersion, "", nil, nil)
	case w < 97 && g.solo:
		op := one(sOpFlush, sOpFlushQ)
		var ext []byte
		if g.chance(0.3) {
			ext = make([]byte, 4) // a delay of 0
		}
		return g.packet(saslOpNames[op], op, "", ext, nil)
	default:
		key := []string{"", "", "", "bogus", "reset"}[g.r.IntN(5)]
		return g.packet("stat-"+key, sOpStat, key, nil, nil)
	}
}

// oddity makes a request memcached refuses or closes on.
func (g *saslGen) oddity() saslReq {
	n := 10
	if g.opaque == 0 {
		// Not as a connection's first bytes: there memhive reads a byte
		// other than 0x80 as the text protocol, with MemCachier's login.
		n = 8
	}
	switch g.r.IntN(n) {
	case 0, 1:
		op := byte(sOpQuit)
		if g.chance(0.4) {
			op = sOpQuitQ
		}
		g.ended = true
		return g.packet(saslOpNames[op], op, "", nil, nil)
	case 2, 3:
		// An unknown opcode: memcached swallows bodylen bytes counted
		// from the end of the key, so the extras and key are sent twice.
		ops := []byte{0x25, 0x30, 0x3c, 0x80, 0xfe, sOpVerbose}
		op := ops[g.r.IntN(len(ops))]
		var ext []byte
		if g.chance(0.4) {
			ext = []byte{0, 0, 0, 1}
		}
		key := ""
		if g.chance(0.4) {
			key = g.key()
		}
		req := g.packet(fmt.Sprintf("unknown-%#02x", op), op, key, ext, g.value())
		req.key = ""
		req.pkt = append(req.pkt, make([]byte, len(ext)+len(key))...)
		return req
	case 4:
		// Too large to store: refused with its data swallowed once logged
		// in; before, an auth error and a close.
		ext := make([]byte, 8)
		return g.packet("set-too-large", sOpSet, g.key(), ext, bytes.Repeat([]byte{'v'}, 1100<<10))
	case 5:
		g.ended = true
		return g.packet("get-with-extras", sOpGet, g.key(), []byte{1, 2, 3, 4}, nil)
	case 6:
		g.ended = true
		return g.packet("get-long-key", sOpGet, strings.Repeat("k", 251), nil, nil)
	case 7:
		g.ended = true
		req := g.packet("key-beyond-body", sOpGet, g.key(), nil, nil)
		binary.BigEndian.PutUint32(req.pkt[8:], 0)
		req.pkt = req.pkt[:24]
		return req
	case 8:
		g.ended = true
		req := g.packet("bad-magic", sOpNoop, "", nil, nil)
		req.pkt[0] = 0x81
		req.alone = true
		return req
	default:
		// A text command where a binary header belongs: memcached -S
		// speaks only the binary protocol, and takes it for a bad magic.
		g.ended = true
		g.opaque++
		return saslReq{kind: "text-after-binary", opaque: g.opaque, alone: true, pkt: []byte("get " + g.key() + "\r\nset x 0 0 1\r\nx\r\n")}
	}
}

// RunSASL runs SASL sessions against two servers in SASL mode, a the
// reference, until opt.Requests requests have been sent, and returns at
// the first difference, as a *SASLMismatch.
func RunSASL(a, b SASLServer, opt SASLOptions) (SASLSummary, error) {
	if opt.Requests <= 0 {
		opt.Requests = 100000
	}
	if opt.Workers <= 0 {
		opt.Workers = 32
	}
	if opt.MaxDuration <= 0 {
		opt.MaxDuration = 10 * time.Minute
	}
	start := time.Now()
	var (
		mu       sync.Mutex // guards sum and failure
		sum      = SASLSummary{Kinds: map[string]int{}}
		failure  error
		failed   atomic.Bool
		sent     atomic.Int64
		next     atomic.Int64
		solo     sync.RWMutex // sessions hold it shared; a solo session alone
		wg       sync.WaitGroup
		runOne   func(id int)
		deadline = start.Add(opt.MaxDuration)
	)
	runOne = func(id int) {
		s := newSASLSession(opt.Seed, id, opt.Logins)
		if s.solo {
			solo.Lock()
			defer solo.Unlock()
		} else {
			solo.RLock()
			defer solo.RUnlock()
		}
		st, err := runSASLSession(a, b, s, opt)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if failure == nil {
				if m, ok := err.(*SASLMismatch); ok {
					m.Seed = opt.Seed
				}
				failure = err
			}
			failed.Store(true)
			return
		}
		sum.Sessions++
		sum.Requests += st.requests
		sum.Fences += st.fences
		if st.closed {
			sum.Closed++
		}
		for k, n := range st.kinds {
			sum.Kinds[k] += n
		}
		sent.Add(int64(st.requests))
	}
	if len(opt.Sessions) > 0 {
		for _, id := range opt.Sessions {
			runOne(id)
			if failed.Load() {
				break
			}
		}
	} else {
		for w := 0; w < opt.Workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !failed.Load() && sent.Load() < int64(opt.Requests) && time.Now().Before(deadline) {
					runOne(int(next.Add(1) - 1))
				}
			}()
		}
		wg.Wait()
	}
	sum.Elapsed = time.Since(start)
	if failure != nil {
		return sum, failure
	}
	if len(opt.Sessions) == 0 && sum.Requests < opt.Requests {
		return sum, fmt.Errorf("difftest SASL: seed %d: only %d of %d requests within %v", opt.Seed, sum.Requests, opt.Requests, opt.MaxDuration)
	}
	return sum, nil
}

// saslSessionStats is what one session sent.
type saslSessionStats struct {
	requests, fences int
	closed           bool
	kinds            map[string]int
}

// saslSide is one server's connection for a session and what its replies
// have shown.
type saslSide struct {
	name    string
	c       net.Conn
	closed  bool
	lastCAS map[string]uint64 // key -> CAS of its last successful reply
	casRank map[uint64]int    // CAS value -> order of first sight
	keyOf   map[uint32]string // opaque -> key
	version bool              // forgive an auth error for VERSION (see SASLOptions)
	chunk   []byte            // read buffer
}

const saslReadTimeout = 10 * time.Second

// saslNoFence marks a group whose fence reply did not come: a failure
// even when both servers agree, since the run cannot go on in step.
const saslNoFence = "no fence reply"

func runSASLSession(a, b SASLServer, s *saslSession, opt SASLOptions) (saslSessionStats, error) {
	st := saslSessionStats{kinds: map[string]int{}}
	sides := [2]*saslSide{}
	for i, srv := range []SASLServer{a, b} {
		c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			return st, fmt.Errorf("difftest SASL: session %d: connecting to %s: %v", s.id, srv.Name, err)
		}
		defer c.Close()
		sides[i] = &saslSide{name: srv.Name, c: c, lastCAS: map[string]uint64{}, casRank: map[uint64]int{}, keyOf: map[uint32]string{}}
	}
	sides[1].version = opt.VersionAuthError
	type step struct {
		grp []saslReq
		got [2]string
	}
	var steps []step
	transcript := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "session %d (solo %v):\n", s.id, s.solo)
		for gi, stp := range steps {
			fmt.Fprintf(&b, "group %d:\n", gi)
			for _, r := range stp.grp {
				fmt.Fprintf(&b, "  > %s (opaque %d, %d bytes) %s\n", r.kind, r.opaque, len(r.pkt), quoteBytes(r.pkt, 80))
			}
			for i, sd := range sides {
				fmt.Fprintf(&b, "  %s:\n%s", sd.name, indentLines(stp.got[i], "    "))
			}
		}
		return b.String()
	}
	fence := uint32(1 << 24)
	for gi, grp := range s.groups {
		fence++
		for _, r := range grp {
			st.requests++
			st.kinds[r.kind]++
		}
		st.fences++
		// Both servers get the group before either is read, so they work
		// at once.
		var wrote [2]func()
		for i, sd := range sides {
			wrote[i] = sd.send(grp, fence)
		}
		var got [2]string
		for i, sd := range sides {
			got[i] = sd.receive(fence)
			wrote[i]()
		}
		steps = append(steps, step{grp, got})
		if strings.Contains(got[0]+got[1], saslNoFence) {
			return st, &SASLMismatch{Session: s.id, Group: gi, Detail: "a server neither answered the fence nor closed; " + transcript()}
		}
		if got[0] != got[1] {
			return st, &SASLMismatch{Session: s.id, Group: gi, Detail: transcript()}
		}
		if sides[0].closed {
			st.closed = true
			break
		}
	}
	return st, nil
}

// send writes a group and its fence and returns a function that waits
// until the write has ended. A large write runs in its own goroutine, so
// that the replies can be read meanwhile.
func (sd *saslSide) send(grp []saslReq, fence uint32) (wait func()) {
	var buf []byte
	for _, r := range grp {
		p := r.pkt
		if r.casLast {
			p = append([]byte(nil), p...)
			binary.BigEndian.PutUint64(p[16:], sd.lastCAS[r.key])
		}
		sd.keyOf[r.opaque] = r.key
		buf = append(buf, p...)
	}
	buf = append(buf, saslPacket(0x80, sOpVersion, nil, nil, nil, fence, 0)...)
	sd.c.SetWriteDeadline(time.Now().Add(saslReadTimeout))
	if len(buf) <= 32<<10 {
		// The socket buffers take it whole: no need to read meanwhile.
		// An error means the server closed, which the read will show.
		sd.c.Write(buf)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		sd.c.Write(buf)
		close(done)
	}()
	return func() { <-done }
}

// receive returns the replies up to the fence's, normalised and rendered
// one per line, ending with "closed" when the server closed the
// connection instead.
func (sd *saslSide) receive(fence uint32) string {
	var out strings.Builder
	var in []byte
	if sd.chunk == nil {
		sd.chunk = make([]byte, 64<<10)
	}
	chunk := sd.chunk
	sd.c.SetReadDeadline(time.Now().Add(saslReadTimeout))
	for {
		// Whole packets first.
		for len(in) >= 24 {
			if in[0] != 0x81 {
				fmt.Fprintf(&out, "not a binary reply: %s\n", quoteBytes(in, 80))
				in = nil
				break
			}
			n := 24 + int(binary.BigEndian.Uint32(in[8:12]))
			if len(in) < n {
				break
			}
			p := in[:n]
			in = in[n:]
			if p[1] == sOpVersion && binary.BigEndian.Uint32(p[12:16]) == fence {
				if len(in) > 0 {
					fmt.Fprintf(&out, "after the fence: %s\n", quoteBytes(in, 80))
				}
				return out.String()
			}
			out.WriteString(sd.render(p))
			out.WriteByte('\n')
		}
		n, err := sd.c.Read(chunk)
		in = append(in, chunk[:n]...)
		if err != nil {
			if len(in) > 0 {
				fmt.Fprintf(&out, "partial reply: %s\n", quoteBytes(in, 80))
			}
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
				sd.closed = true
				out.WriteString("closed\n")
			case errors.Is(err, os.ErrDeadlineExceeded):
				fmt.Fprintf(&out, "%s within %v\n", saslNoFence, saslReadTimeout)
			default:
				fmt.Fprintf(&out, "read error: %v\n", err)
			}
			return out.String()
		}
	}
}

// render normalises a reply packet and renders it: CAS values become
// their order of first sight on this connection, stats values and the
// version string are dropped; everything else is kept whole.
func (sd *saslSide) render(p []byte) string {
	op := p[1]
	keylen := int(binary.BigEndian.Uint16(p[2:]))
	extlen := int(p[4])
	status := binary.BigEndian.Uint16(p[6:])
	opaque := binary.BigEndian.Uint32(p[12:])
	cas := binary.BigEndian.Uint64(p[16:])
	body := p[24:]
	if extlen+keylen > len(body) {
		return fmt.Sprintf("malformed reply: %s", quoteBytes(p, 80))
	}
	ext, key, val := body[:extlen], body[extlen:extlen+keylen], body[extlen+keylen:]
	casText := "0"
	if cas != 0 {
		if status == 0 {
			if k, ok := sd.keyOf[opaque]; ok && k != "" {
				sd.lastCAS[k] = cas
			}
		}
		r, ok := sd.casRank[cas]
		if !ok {
			r = len(sd.casRank) + 1
			sd.casRank[cas] = r
		}
		casText = fmt.Sprintf("#%d", r)
	}
	switch {
	case op == sOpVersion && status == 0:
		val = []byte("<version>")
	case op == sOpVersion && status == 0x20 && sd.version && string(val) == "Auth failure.":
		status, val = 0, []byte("<version>")
	case op == sOpStat && status == 0 && keylen > 0:
		val = []byte("<value>")
	}
	return fmt.Sprintf("op=%#02x status=%#04x opaque=%d cas=%s datatype=%d extras=%x key=%s value=%s",
		op, status, opaque, casText, p[5], ext, quoteBytes(key, 300), quoteBytes(val, 300))
}

// quoteBytes quotes b, cut to max bytes with its full length noted.
func quoteBytes(b []byte, max int) string {
	if len(b) <= max {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...(%d bytes, crc32 %08x)", b[:max], len(b), crc32.ChecksumIEEE(b))
}

func indentLines(s, prefix string) string {
	if s == "" {
		return prefix + "(nothing)\n"
	}
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}
