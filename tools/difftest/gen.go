// Package difftest replays randomly generated memcache traffic against two
// servers side by side (the reference memcached and memhive) and compares
// their replies byte for byte, after normalising only what legitimately
// differs between two correct servers: CAS unique values, stats values and
// the version string.
//
// The generator (gen.go) only produces traffic whose replies memcached
// 1.6.18 makes deterministic: nothing races the clock, no incr meets an item
// another reference may hold (which decides whether memcached rewrites the
// number in place), no incr parses a value that makes memcached read past its
// end, requests after which memcached drops unsent replies travel alone, and
// so on (see the comment at each rule). The runner (run.go) writes every
// batch pipelined, cut at the same random byte boundaries on both servers,
// and reads replies up to a sentinel.
package difftest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Connection slots shared by both servers: the first textSlots speak the
// text protocol, the rest the binary protocol.
const (
	textSlots = 3
	numSlots  = 6
	numKeys   = 200
	hotKeys   = 20
	// maxItem is memcached's default item size limit (-I 1m).
	maxItem = 1 << 20
)

// The item size limit with the default -I 1m, where memcached and memhive
// differ on purpose. memcached 1.6.18 allocates an item as one block (one
// header and chunks for large ones, but the size test is the same): a
// 48-byte header, the key and a NUL, 4 bytes of client flags when they are
// not 0, the value and its "\r\n", and the 8-byte CAS, and refuses it when
// that exceeds item_size_max (item_make_header, slabs_clsid in items.c and
// slabs.c). memhive follows MemCachier's rule: key + value must be less
// than 1 MiB. So for key + value:
//
//	memcached, flags 0:    stores up to 1,048,517, refuses from 1,048,518
//	memcached, flags != 0: stores up to 1,048,513, refuses from 1,048,514
//	memhive:               stores up to 1,048,575, refuses from 1,048,576
//
// In the band between (1,048,518..1,048,575 with flags 0,
// 1,048,514..1,048,575 otherwise) memcached refuses what memhive stores.
// The generator stores sizes right up to memcached's limit and from
// memhive's limit on, never inside the band (nor appends that could end in
// it: see big).
const (
	mcMaxKV      = maxItem - 48 - 1 - 2 - 8 // 1,048,517: flags 0
	mcMaxKVFlags = mcMaxKV - 4              // 1,048,513: flags not 0
	hiveMaxKV    = maxItem - 1              // 1,048,575
)

// nearLimit is the share of stored values whose size is drawn from the
// top of the range (see valueFor).
const nearLimit = 0.006

// Binary protocol opcodes (protocol_binary.h of memcached 1.6.18).
const (
	opGet        = 0x00
	opSet        = 0x01
	opAdd        = 0x02
	opReplace    = 0x03
	opDelete     = 0x04
	opIncr       = 0x05
	opDecr       = 0x06
	opQuit       = 0x07
	opFlush      = 0x08
	opGetQ       = 0x09
	opNoop       = 0x0a
	opVersion    = 0x0b
	opGetK       = 0x0c
	opGetKQ      = 0x0d
	opAppend     = 0x0e
	opPrepend    = 0x0f
	opStat       = 0x10
	opSetQ       = 0x11
	opAddQ       = 0x12
	opReplaceQ   = 0x13
	opDeleteQ    = 0x14
	opIncrQ      = 0x15
	opDecrQ      = 0x16
	opQuitQ      = 0x17
	opFlushQ     = 0x18
	opAppendQ    = 0x19
	opPrependQ   = 0x1a
	opVerbosity  = 0x1b
	opTouch      = 0x1c
	opGat        = 0x1d
	opGatQ       = 0x1e
	opSaslList   = 0x20
	opSaslAuth   = 0x21
	opSaslStep   = 0x22
	opGatK       = 0x23
	opGatKQ      = 0x24
	magicRequest = 0x80
	magicReply   = 0x81
)

// Opaque ranges: requests count up from 1, markers and sentinels carry a
// tag in the top bits so they can never collide with a request's opaque.
const (
	opaqueMarker   = 0x80000000
	opaqueSentinel = 0xC0000000
	opaqueMask     = 0x3FFFFFFF
)

// casRef is a placeholder for a CAS unique value that differs per server:
// it is resolved, when the batch is written, from the values that server
// returned earlier for key.
type casRef struct {
	key   string
	stale bool // an older version than the last one seen: never matches
	bin   bool // 8 bytes big endian in a binary header, else decimal text
}

// seg is a piece of a request: literal bytes, or a CAS placeholder.
type seg struct {
	lit []byte
	cas *casRef
}

// Request is one generated unit of traffic: usually one command, sometimes
// a few commands that only make sense together (a bad data block and the
// bytes memcached then reads as the next command, a delayed flush and the
// plain flush that must follow it). Its bytes are fixed at generation
// except CAS placeholders. A Request is owned by its Batch.
type Request struct {
	Index int    // position in the run, from 0
	Kind  string // short description for failure messages
	// Versions is the number of VERSION lines the reply contains (text).
	Versions int
	// Closes: memcached closes the connection after this request.
	Closes bool
	segs   []seg
	nbytes int // length with CAS placeholders at nominal width
}

// Batch is a group of requests written pipelined on one connection slot.
// Batches are run one at a time, so each sees the effects of all earlier
// ones whatever connection they used.
type Batch struct {
	Index    int
	Epoch    int // see EpochBatches
	Slot     int
	Binary   bool
	Requests []*Request
	// Closes: the last request closes the connection, so the batch has no
	// sentinel and its reply ends at end of stream.
	Closes bool
	keyOf  map[uint32]string // binary request opaque → key, for CAS mapping
	cuts   []int             // split positions in the nominal byte stream
	sleeps map[int]time.Duration
}

// Generator produces a deterministic stream of batches from a seed. It
// keeps just enough model of the servers (which keys may be fetched and
// which incremented in the current epoch; which may hold values near the
// size limit) to avoid traffic whose replies depend on timing. Not
// safe for concurrent use.
type Generator struct {
	r      *rand.Rand
	keys   []string
	now    int64
	index  int
	batch  int
	opaque uint32
	// anchors keep memcached's LRU tails live (see anchors.go).
	anchors []anchor
	// epoch is the current epoch (see EpochBatches).
	epoch int
	// big[i]: keys[i] may hold a value within 4 KiB of memcached's item
	// size limit. Appending to it could end inside the band where
	// memcached and memhive differ on purpose (see mcMaxKV), so appends
	// and prepends pick other keys.
	big []bool
}

// NewGenerator returns a generator for seed. now is the unix time used for
// absolute expiry times; it does not change the shape of the traffic.
func NewGenerator(seed int64, now time.Time) *Generator {
	g := &Generator{
		r:   rand.New(rand.NewPCG(uint64(seed), 0x6d656d68697665)),
		now: now.Unix(),
		big: make([]bool, numKeys),
	}
	prefixes := []string{"k", "key:", "obj-", "user_", "Session."}
	for i := 0; i < numKeys; i++ {
		k := prefixes[i%len(prefixes)] + strconv.Itoa(i)
		switch {
		case i%67 == 5:
			// Keys of exactly the maximum length, 250 bytes.
			k = k + "-" + strings.Repeat("L", 250-len(k)-1)
		case i%41 == 7:
			k = k + "-" + strings.Repeat("m", 60)
		}
		g.keys = append(g.keys, k)
	}
	g.anchors = makeAnchors(append(append([]string(nil), g.keys...), statsProbe))
	return g
}

func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }
func (g *Generator) intn(n int) int        { return g.r.IntN(n) }
func (g *Generator) between(lo, hi int) int {
	return lo + g.r.IntN(hi-lo+1)
}

// keyIndex picks a key, half the time from a small hot set so that hits,
// CAS matches and counters on the same key are common.
func (g *Generator) keyIndex() int {
	if g.chance(0.5) {
		return g.intn(hotKeys)
	}
	return g.intn(numKeys)
}

func (g *Generator) key() string { return g.keys[g.keyIndex()] }

// EpochBatches is the length of an epoch, in batches. memcached's incr
// rewrites a value in place (padding it with spaces when the number gets
// shorter) only when nothing else holds a reference to the item; a pending
// get reply does, and so does, for up to a second, the asynchronous LRU
// bump queued when an item in the COLD LRU is fetched a second time. So
// keys are split in three groups that take turns: during epoch e, group
// e%3 may be fetched (get, gets, gat, gats, touch), group (e+1)%3 may be
// incremented or decremented, and the third cools down. The runner makes
// every epoch last at least EpochMinDuration.
const EpochBatches = 1500

// EpochMinDuration is the least wall time between the end of the epoch in
// which a group was last fetched and the start of the one in which it is
// incremented.
const EpochMinDuration = 2 * time.Second

// fetchKey picks a key that may be fetched in this epoch.
func (g *Generator) fetchKey() string { return g.groupKey(g.epoch % 3) }

// deltaKey picks a key that may be incremented in this epoch.
func (g *Generator) deltaKey() string { return g.groupKey((g.epoch + 1) % 3) }

func (g *Generator) groupKey(group int) string {
	for {
		i := g.keyIndex()
		if i%3 == group {
			return g.keys[i]
		}
	}
}

// flushedAll records a flush: nothing is left near the size limit.
func (g *Generator) flushedAll() {
	for i := range g.big {
		g.big[i] = false
	}
}

func (g *Generator) keyPos(key string) int {
	for i, k := range g.keys {
		if k == key {
			return i
		}
	}
	return -1
}

// setBig records what a store of n bytes under key may have left there;
// set says the store replaces the item whatever it held (a plain set).
func (g *Generator) setBig(key string, n int, set bool) {
	i := g.keyPos(key)
	if i < 0 {
		return
	}
	switch {
	case len(key)+n > mcMaxKVFlags-4096 && len(key)+n <= hiveMaxKV:
		g.big[i] = true
	case set:
		g.big[i] = false
	}
}

// appendKey picks a key for append or prepend: not one that may hold a
// value near the size limit (see big).
func (g *Generator) appendKey(pick func() string) string {
	for {
		k := pick()
		if i := g.keyPos(k); i < 0 || !g.big[i] {
			return k
		}
	}
}

// valueFor returns a value to store under key with client flags that are
// zero or not: usually value's, now and then one over the whole size
// range up to the limit, within 1 KiB below memcached's limit or within
// 1 KiB from memhive's (see mcMaxKV), both ends included.
func (g *Generator) valueFor(key string, flagsSet bool) []byte {
	if !g.chance(nearLimit) {
		return g.value()
	}
	top := mcMaxKV
	if flagsSet {
		top = mcMaxKVFlags
	}
	k := len(key)
	var n int
	switch x := g.intn(10); {
	case x < 3:
		n = g.between(100*1024, top-k)
	case x < 5:
		n = g.between(top-k-1024, top-k)
	case x < 6:
		n = top - k // the largest memcached stores
	case x < 8:
		n = g.between(hiveMaxKV+1-k, hiveMaxKV+1-k+1024)
	default:
		n = hiveMaxKV + 1 - k // the smallest both refuse
	}
	return g.bytesOf(n)
}

func (g *Generator) longKey() string {
	return "toolong-" + strings.Repeat("z", g.between(251, 300)-8)
}

// Next returns the next batch.
func (g *Generator) Next() *Batch {
	g.epoch = g.batch / EpochBatches
	b := &Batch{Index: g.batch, Epoch: g.epoch, keyOf: map[uint32]string{}, sleeps: map[int]time.Duration{}}
	g.batch++
	if g.chance(0.35) {
		b.Slot = textSlots + g.intn(numSlots-textSlots)
	} else {
		b.Slot = g.intn(textSlots)
	}
	b.Binary = b.Slot >= textSlots
	if b.Index == 0 {
		// The anchors, before anything else (see anchors.go).
		b.Slot, b.Binary = 0, false
		t := g.text()
		g.anchorsText(t)
		b.add(g, t.req("anchors"))
	} else if g.chance(0.012) {
		// Requests after which memcached drops replies it has not sent
		// yet, or closes with unread input: alone in their batch.
		var r *Request
		if b.Binary {
			r = g.binAlone(b)
		} else {
			r = g.textAlone()
		}
		b.add(g, r)
	} else {
		n := g.batchLen()
		for i := 0; i < n; i++ {
			var r *Request
			switch {
			case i == 0 && !b.Binary && g.chance(0.01):
				// memcached culls unsent replies when a multi-get meets a
				// too long key: only safe with nothing pending.
				r = g.textGetLongKey()
			case i == n-1 && g.chance(0.02):
				r = g.quit(b)
			case b.Binary:
				r = g.binRequest(b)
			default:
				r = g.textRequest()
			}
			b.add(g, r)
		}
	}
	last := b.Requests[len(b.Requests)-1]
	b.Closes = last.Closes
	g.plan(b)
	return b
}

func (b *Batch) add(g *Generator, r *Request) {
	r.Index = g.index
	g.index++
	for _, s := range r.segs {
		if s.cas == nil {
			r.nbytes += len(s.lit)
		} else if s.cas.bin {
			r.nbytes += 8
		} else {
			r.nbytes += 6
		}
	}
	b.Requests = append(b.Requests, r)
}

func (g *Generator) batchLen() int {
	switch p := g.r.Float64(); {
	case p < 0.3:
		return g.between(1, 3)
	case p < 0.8:
		return g.between(4, 30)
	default:
		return g.between(31, 100)
	}
}

// plan chooses where the batch's byte stream is cut into separate writes,
// and the pauses between some of them: random positions, plus positions
// close to request boundaries (inside "\r\n", inside a header).
func (g *Generator) plan(b *Batch) {
	total := 0
	var bounds []int
	for _, r := range b.Requests {
		total += r.nbytes
		bounds = append(bounds, total)
	}
	if total < 2 {
		return
	}
	cuts := map[int]bool{}
	for i, n := 0, g.intn(24); i < n; i++ {
		cuts[1+g.intn(total-1)] = true
	}
	for _, e := range bounds {
		if g.chance(0.3) {
			p := e + g.between(-3, 3)
			if p > 0 && p < total {
				cuts[p] = true
			}
		}
	}
	for p := range cuts {
		b.cuts = append(b.cuts, p)
	}
	sortInts(b.cuts)
	for _, p := range b.cuts {
		if g.chance(0.03) {
			b.sleeps[p] = time.Duration(g.between(50, 1500)) * time.Microsecond
		}
	}
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// ---------------------------------------------------------------------------
// Values, numbers and expiry times.

// valueSize is mostly small, sometimes up to 100 KB; far from the 1 MiB
// item limit so that header size accounting never decides the outcome.
func (g *Generator) valueSize() int {
	switch p := g.r.Float64(); {
	case p < 0.35:
		return g.intn(17)
	case p < 0.65:
		return g.between(17, 256)
	case p < 0.85:
		return g.between(257, 4096)
	case p < 0.97:
		return g.between(4097, 20000)
	default:
		return g.between(20001, 100*1024)
	}
}

// Numbers stored as values. memcached parses a value for incr/decr with
// strtoull and, when the number is 2^63 or more, looks for a '-' with
// strchr, which runs past the end of the value into whatever bytes follow
// it in memory: the outcome is then random. So values that parse to 2^63
// or more are never stored except in wrapUnit, which deletes them at once,
// values stay far enough below 2^63 that incr deltas (at most 2^32) can
// not carry them there, and appended numbers are single digits.
var numericValues = []string{
	"0", "1", "9", "10", "99", "100", "1000", "12345678",
	"4294967295", "4294967296", "999999999999",
	"18446744073709551616", "99999999999999999999999", // out of range: not numeric
	" 5", "5 ", "+7", "-1", "-0", "007", "12abc", "abc", "1.5", "",
	"-9223372036854775808", "9223372036854775807x",
}

// appendNumbers are appended or prepended to values.
var appendNumbers = []string{"0", "7", " 5", "5 ", "x", "-", "+"}

// wrapNumbers are values for wrapUnit.
var wrapNumbers = []string{
	"0", "1", "5", "1000", "4294967296", "1000000000000000000",
	"9223372036854775806", "9223372036854775807",
}

// value returns a value: numeric strings (for incr/decr) or bytes of a
// random style, which may contain "\r\n" and other control bytes.
func (g *Generator) value() []byte {
	if g.chance(0.2) {
		return []byte(numericValues[g.intn(len(numericValues))])
	}
	return g.bytesOf(g.valueSize())
}

func (g *Generator) smallValue() []byte {
	if g.chance(0.2) {
		return []byte(appendNumbers[g.intn(len(appendNumbers))])
	}
	if g.chance(0.95) {
		return g.bytesOf(g.intn(64))
	}
	return g.bytesOf(g.between(64, 2048))
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func (g *Generator) bytesOf(n int) []byte {
	b := make([]byte, n)
	style := g.intn(4)
	if n > 128*1024 && style != 2 {
		style = 0 // one random number per byte would be slow
	}
	switch style {
	case 0: // any byte
		for i := 0; i < n; i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], g.r.Uint64())
			copy(b[i:], w[:])
		}
	case 1: // text with line breaks and spaces
		for i := range b {
			switch x := g.intn(20); x {
			case 0:
				b[i] = '\r'
			case 1:
				b[i] = '\n'
			case 2:
				b[i] = ' '
			default:
				b[i] = letters[g.intn(len(letters))]
			}
		}
	case 2: // a repeated short pattern
		pat := []byte(letters[:1+g.intn(10)])
		for i := range b {
			b[i] = pat[i%len(pat)]
		}
	default:
		for i := range b {
			b[i] = letters[g.intn(len(letters))]
		}
	}
	// A value made only of white space makes memcached's incr skip past
	// its end (strtoull skips leading white space) into whatever bytes
	// follow it in memory: never store one.
	if n > 0 && len(bytes.Trim(b, " \t\n\v\f\r")) == 0 {
		b[n-1] = 'x'
	}
	return b
}

// filler is data that memcached reads as a command line when it rejected
// the storage command before it: letters only, so it is an unknown command.
func filler(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

func (g *Generator) flagsText() string {
	switch p := g.r.Float64(); {
	case p < 0.5:
		return "0"
	case p < 0.8:
		return strconv.Itoa(g.intn(65536))
	case p < 0.9:
		return "4294967295"
	default:
		return strconv.FormatUint(uint64(g.r.Uint32()), 10)
	}
}

func (g *Generator) flagsBin() uint32 {
	switch p := g.r.Float64(); {
	case p < 0.5:
		return 0
	case p < 0.8:
		return uint32(g.intn(65536))
	case p < 0.9:
		return 0xffffffff
	default:
		return g.r.Uint32()
	}
}

// expiry returns an expiry time that can not race the clock during a run:
// never, long relative ones, already expired (negative, absolute in the
// past, one second past the 30-day relative limit) or absolute far future.
func (g *Generator) expiry() int64 {
	switch p := g.r.Float64(); {
	case p < 0.45:
		return 0
	case p < 0.60:
		return 1000
	case p < 0.65:
		return 86400
	case p < 0.70:
		return 2592000 // largest relative value
	case p < 0.75:
		return 2592001 // absolute: 1970, expired
	case p < 0.83:
		return 1000000000 // absolute, in the past
	case p < 0.92:
		return g.now + 100000 // absolute, in the future
	case p < 0.96:
		return -1
	default:
		return -int64(g.between(2, 1000000))
	}
}

func (g *Generator) expText() string { return strconv.FormatInt(g.expiry(), 10) }

// expBin is an expiry for a binary request (unsigned 32 bits).
func (g *Generator) expBin() uint32 {
	if g.chance(0.05) {
		return 0xffffffff
	}
	e := g.expiry()
	if e < 0 {
		return 1000000000
	}
	return uint32(e)
}

var deltas = []string{
	"0", "1", "1", "1", "2", "7", "10", "100", "1000", "65536", "4294967296",
	"+3", "007",
}

// hugeDeltas wrap around 2^64 or take a decrement below zero.
var hugeDeltas = []string{
	"9223372036854775807", "9223372036854775808", "18446744073709551615",
	"18446744073709551614", "18446744073709551000",
}

// delta returns a delta for incr (small, see numericValues) or decr (any).
func (g *Generator) delta(incr bool) string {
	if g.chance(0.3) {
		return strconv.Itoa(g.intn(1000))
	}
	if !incr && g.chance(0.2) {
		return hugeDeltas[g.intn(len(hugeDeltas))]
	}
	return deltas[g.intn(len(deltas))]
}

// ---------------------------------------------------------------------------
// Text protocol.

// tb builds a text request.
type tb struct {
	g    *Generator
	segs []seg
	cur  []byte
	n    int // tokens on the current line
}

func (g *Generator) text() *tb { return &tb{g: g} }

func (t *tb) flush() {
	if len(t.cur) > 0 {
		t.segs = append(t.segs, seg{lit: t.cur})
		t.cur = nil
	}
}

// tok appends space-separated tokens; now and then with two spaces, which
// memcached's tokenizer treats as one.
func (t *tb) tok(words ...string) *tb {
	for _, w := range words {
		if t.n > 0 {
			t.cur = append(t.cur, ' ')
			if t.g.chance(0.01) {
				t.cur = append(t.cur, ' ')
			}
		}
		t.cur = append(t.cur, w...)
		t.n++
	}
	return t
}

func (t *tb) cas(key string, stale bool) *tb {
	t.cur = append(t.cur, ' ')
	t.flush()
	t.segs = append(t.segs, seg{cas: &casRef{key: key, stale: stale}})
	t.n++
	return t
}

// eol ends a command line: "\r\n", or rarely a bare "\n" which memcached
// also accepts.
func (t *tb) eol() *tb {
	if t.g.chance(0.02) {
		t.cur = append(t.cur, '\n')
	} else {
		t.cur = append(t.cur, "\r\n"...)
	}
	t.n = 0
	return t
}

func (t *tb) raw(b []byte) *tb {
	t.cur = append(t.cur, b...)
	return t
}

func (t *tb) req(kind string) *Request {
	t.flush()
	return &Request{Kind: kind, segs: t.segs}
}

type textGen struct {
	w float64
	f func(g *Generator) *Request
}

var textKinds = []textGen{
	{14, func(g *Generator) *Request { return g.textStore("set") }},
	{4, func(g *Generator) *Request { return g.textStore("add") }},
	{4, func(g *Generator) *Request { return g.textStore("replace") }},
	{4, func(g *Generator) *Request { return g.textStore("append") }},
	{3, func(g *Generator) *Request { return g.textStore("prepend") }},
	{6, func(g *Generator) *Request { return g.textStore("cas") }},
	{12, func(g *Generator) *Request { return g.textGet("get") }},
	{6, func(g *Generator) *Request { return g.textGet("gets") }},
	{3, func(g *Generator) *Request { return g.textGet("gat") }},
	{3, func(g *Generator) *Request { return g.textGet("gats") }},
	{4, (*Generator).textTouch},
	{6, (*Generator).textDelete},
	{5, func(g *Generator) *Request { return g.textDelta("incr") }},
	{4, func(g *Generator) *Request { return g.textDelta("decr") }},
	{1.5, (*Generator).textWrap},
	{0.12, (*Generator).textFlush},
	{0.2, (*Generator).textStats},
	{0.4, (*Generator).textVersion},
	{0.3, (*Generator).textVerbosity},
	{5, (*Generator).textBad},
	{0.15, (*Generator).textTooLarge},
	{0.04, (*Generator).textBigAppend},
	{6, (*Generator).metaGet},
	{5, (*Generator).metaSet},
	{2.5, (*Generator).metaDelete},
	{3, (*Generator).metaArith},
	{1, (*Generator).metaNoop},
	{0.7, (*Generator).metaDebug},
}

var textTotal = func() float64 {
	s := 0.0
	for _, k := range textKinds {
		s += k.w
	}
	return s
}()

func (g *Generator) textRequest() *Request {
	x := g.r.Float64() * textTotal
	for _, k := range textKinds {
		if x < k.w {
			return k.f(g)
		}
		x -= k.w
	}
	return textKinds[0].f(g)
}

func (g *Generator) textStore(cmd string) *Request {
	key := g.key()
	flags := g.flagsText()
	var val []byte
	if cmd == "append" || cmd == "prepend" {
		key = g.appendKey(g.key)
		val = g.smallValue()
	} else {
		val = g.valueFor(key, flags != "0")
		g.setBig(key, len(val), cmd == "set")
	}
	t := g.text().tok(cmd, key, flags, g.expText(), strconv.Itoa(len(val)))
	if cmd == "cas" {
		switch p := g.r.Float64(); {
		case p < 0.7:
			t.cas(key, false)
		case p < 0.9:
			t.cas(key, true)
		default:
			t.tok(strconv.FormatUint(g.r.Uint64()|1<<63, 10))
		}
	}
	if g.chance(0.25) {
		t.tok("noreply")
	}
	t.eol().raw(val).raw([]byte("\r\n"))
	return t.req(cmd)
}

func (g *Generator) textGet(cmd string) *Request {
	t := g.text().tok(cmd)
	if cmd == "gat" || cmd == "gats" {
		t.tok(g.expText())
	}
	n := 1
	switch p := g.r.Float64(); {
	case p < 0.7:
	case p < 0.95:
		n = g.between(2, 10)
	default:
		n = g.between(11, 120) // may exceed 2048 bytes: a large multiget
	}
	for i := 0; i < n; i++ {
		k := g.fetchKey()
		if cmd[0:2] == "ga" && len(t.cur)+len(k) > 1900 {
			// memcached closes the connection when 2048 bytes arrive
			// without a newline, unless the line starts with "get " or
			// "gets ": whether they arrive at once depends on timing.
			break
		}
		t.tok(k)
	}
	if g.chance(0.02) {
		t.tok("noreply") // just another key for get commands
	}
	return t.eol().req(cmd)
}

func (g *Generator) textGetLongKey() *Request {
	cmd := []string{"get", "gets", "gat", "gats"}[g.intn(4)]
	t := g.text().tok(cmd)
	if cmd == "gat" || cmd == "gats" {
		t.tok(g.expText())
	}
	for i, n := 0, g.intn(4); i < n; i++ {
		k := g.fetchKey()
		t.tok(k)
	}
	t.tok(g.longKey())
	for i, n := 0, g.intn(3); i < n; i++ {
		t.tok(g.key()) // never looked up
	}
	return t.eol().req(cmd + "-longkey")
}

func (g *Generator) textTouch() *Request {
	key := g.fetchKey()
	t := g.text().tok("touch", key, g.expText())
	if g.chance(0.25) {
		t.tok("noreply")
	}
	return t.eol().req("touch")
}

func (g *Generator) textDelete() *Request {
	key := g.key()
	t := g.text().tok("delete", key)
	if g.chance(0.1) {
		t.tok("0") // legacy hold time, accepted when zero
	}
	if g.chance(0.25) {
		t.tok("noreply")
	}
	return t.eol().req("delete")
}

func (g *Generator) textDelta(cmd string) *Request {
	key := g.deltaKey()
	t := g.text().tok(cmd, key, g.delta(cmd == "incr"))
	if g.chance(0.2) {
		t.tok("noreply")
	}
	return t.eol().req(cmd)
}

// textWrap sets a number, increments or decrements it by any delta (with
// wrap-around at 2^64 or a floor at 0), and deletes it: the result may
// parse to 2^63 or more (see numericValues).
func (g *Generator) textWrap() *Request {
	key := g.deltaKey()
	v := wrapNumbers[g.intn(len(wrapNumbers))]
	cmd := []string{"incr", "decr"}[g.intn(2)]
	d := hugeDeltas[g.intn(len(hugeDeltas))]
	if g.chance(0.3) {
		d = deltas[g.intn(len(deltas))]
	}
	t := g.text().tok("set", key, "0", "0", strconv.Itoa(len(v))).eol().raw([]byte(v)).raw([]byte("\r\n"))
	t.tok(cmd, key, d).eol()
	t.tok("delete", key).eol()
	return t.req("wrap-" + cmd)
}

func (g *Generator) textFlush() *Request {
	t := g.text().tok("flush_all")
	noreply := g.chance(0.3)
	delayed := false
	kind := "flush_all"
	switch g.intn(9) {
	case 0, 1:
	case 2:
		t.tok("0")
	case 3:
		t.tok("-1") // not positive: immediate
	case 4, 5:
		t.tok(strconv.Itoa([]int{86400, 100000, 2592000}[g.intn(3)]))
		delayed = true
	case 6:
		t.tok(strconv.FormatInt(g.now+100000, 10))
		delayed = true
	case 7:
		// Absolute time in the past: memcached then stops considering
		// anything flushed, which also revives unreaped flushed items.
		t.tok("1000000000")
		delayed = true
	case 8:
		t.tok("soon")
		kind = "flush_all-bad"
		if noreply {
			t.tok("noreply")
		}
		return t.eol().req(kind)
	}
	if noreply {
		t.tok("noreply")
	}
	t.eol()
	if delayed {
		// Nothing is flushed during the run. (A delayed flush would also
		// revive flushed items memcached has not freed yet; the sweep
		// after every flush leaves none.)
		kind = "flush_all-delayed"
	} else {
		g.flushedAll()
		g.sweepText(t)
	}
	return t.req(kind)
}

// statsProbe is a key outside the generator's key set, stored before
// "stats items" and "stats slabs" so that at least one class holds an item
// (both servers list only classes holding items or pages) whatever the
// traffic left: their field names are then always compared.
const statsProbe = "statsprobe"

func (g *Generator) textStats() *Request {
	switch p := g.r.Float64(); {
	case p < 0.35:
		return g.text().tok("stats").eol().req("stats")
	case p < 0.55:
		return g.text().tok("stats", "reset").eol().req("stats reset")
	case p < 0.9:
		sub := []string{"items", "slabs", "settings", "sizes", "conns"}[g.intn(5)]
		t := g.text()
		if sub == "items" || sub == "slabs" {
			t.tok("set", statsProbe, "0", "0", "1").eol().raw([]byte("p\r\n"))
		}
		return t.tok("stats", sub).eol().req("stats " + sub)
	default:
		return g.text().tok("stats", []string{"bogus", "nosuchthing", "itemz"}[g.intn(3)]).eol().req("stats bad")
	}
}

func (g *Generator) textVersion() *Request {
	t := g.text().tok("version")
	if g.chance(0.1) {
		t.tok("extra") // ignored
	}
	r := t.eol().req("version")
	r.Versions = 1
	return r
}

func (g *Generator) textVerbosity() *Request {
	t := g.text().tok("verbosity")
	switch g.intn(7) {
	case 0, 1, 2:
		t.tok("0")
	case 3, 4:
		t.tok("1")
	case 5:
		t.tok("loud") // CLIENT_ERROR
	case 6:
		return t.eol().req("verbosity-bad") // ERROR: missing level
	}
	if g.chance(0.3) {
		t.tok("noreply")
	}
	return t.eol().req("verbosity")
}

// textTooLarge stores a value well above the 1 MiB item limit: memcached
// answers SERVER_ERROR, swallows the data and, for set, deletes the key.
func (g *Generator) textTooLarge() *Request {
	cmd := []string{"set", "set", "add", "replace", "append", "cas"}[g.intn(6)]
	key := g.key()
	n := maxItem + g.between(1024, 512*1024)
	t := g.text().tok(cmd, key, "0", "0", strconv.Itoa(n))
	if cmd == "cas" {
		t.cas(key, false)
	}
	if g.chance(0.25) {
		t.tok("noreply")
	}
	t.eol().raw(filler('v', n)).raw([]byte("\r\n"))
	if cmd == "set" {
	}
	return t.req(cmd + "-too-large")
}

// textBigAppend sets a value above memcached's chunked item size and then
// appends or prepends to it, ending below memcached's item size limit or
// exactly at it. An append or prepend that ends above it is not generated:
// past memhive's limit memhive answers "SERVER_ERROR object too large for
// cache" where memcached answers NOT_STORED (a deliberate difference,
// pinned by e2e/itemsize_test.go), and between the two limits memcached
// refuses what memhive stores (see mcMaxKV).
func (g *Generator) textBigAppend() *Request {
	key := g.appendKey(g.fetchKey)
	n1 := g.between(520*1024, 900*1024)
	flags := g.flagsText()
	top := mcMaxKV
	if flags != "0" {
		top = mcMaxKVFlags
	}
	room := top - len(key) - n1
	var n2 int
	switch x := g.r.Float64(); {
	case x < 0.5:
		n2 = g.between(1, 950*1024-n1)
	case x < 0.8:
		n2 = g.between(room-1024, room)
	default:
		n2 = room
	}
	cmd := []string{"append", "prepend"}[g.intn(2)]
	t := g.text().tok("set", key, flags, "0", strconv.Itoa(n1)).eol().
		raw(g.bytesOf(n1)).raw([]byte("\r\n"))
	t.tok(cmd, key, "0", "0", strconv.Itoa(n2)).eol().raw(filler('a', n2)).raw([]byte("\r\n"))
	t.tok("get", key).eol()
	g.setBig(key, n1+n2, true)
	return t.req("big-" + cmd)
}

// textBad generates malformed input. Where memcached rejects a storage
// command it does not swallow the data block; the data is then read as a
// command line, so it is kept short and made of letters (an unknown
// command, "ERROR").
func (g *Generator) textBad() *Request {
	key := g.key()
	t := g.text()
	x := func(n int) []byte { return append(filler('X', n), "\r\n"...) }
	switch g.intn(30) {
	case 0:
		w := []string{"foo", "sets", "gett", "GET k", "Set k 0 0 1", "x", "deletee k",
			"stat", "versions", "flush", "incr", "bget", "quitt", "touchh k 0"}[g.intn(14)]
		t.tok(w).eol()
		return t.req("unknown")
	case 1:
		t.raw([]byte([]string{"\r\n", "   \r\n", "\n", " \r\n"}[g.intn(4)]))
		return t.req("empty line")
	case 2:
		t.tok("set", key, "0", "0").eol().raw(x(g.intn(20)))
		return t.req("set-missing-length")
	case 3:
		t.tok("cas", key, "0", "0", "1").eol().raw(x(1))
		return t.req("cas-missing-unique")
	case 4:
		t.tok([]string{"get", "gets", "gat", "gats", "incr", "decr", "touch", "delete", "verbosity"}[g.intn(9)]).eol()
		return t.req("missing-args")
	case 5:
		t.tok([]string{"gat", "gats"}[g.intn(2)], g.expText()).eol() // "END"
		return t.req("gat-no-keys")
	case 6:
		t.tok("incr", key, "1", "noreply", "x").eol()
		return t.req("incr-extra")
	case 7:
		t.tok("touch", key, "0", "noreply", "x").eol()
		return t.req("touch-extra")
	case 8:
		t.tok("delete", key, []string{"x", "5", "0 noreply x", "noreply noreply"}[g.intn(4)]).eol()
		return t.req("delete-extra")
	case 9:
		// One extra token is ignored by memcached: the data is stored.
		n := g.intn(30)
		t.tok("set", key, "0", "0", strconv.Itoa(n), "extra").eol().raw(x(n))
		return t.req("set-extra-token")
	case 10:
		n := g.intn(30)
		t.tok("set", key, "0", "0", strconv.Itoa(n), "noreply", "extra").eol().raw(x(n))
		return t.req("set-two-extra-tokens")
	case 11:
		n := g.intn(20)
		bad := []string{"abc", "-1", "1.5", "0x10", "4294967296x"}[g.intn(5)]
		t.tok([]string{"set", "add", "replace", "append", "prepend"}[g.intn(5)], key, bad, "0", strconv.Itoa(n)).eol().raw(x(n))
		return t.req("bad-flags")
	case 12:
		n := g.intn(20)
		t.tok("set", key, "0", []string{"x1", "1x", "tomorrow", "--1"}[g.intn(4)], strconv.Itoa(n)).eol().raw(x(n))
		return t.req("bad-exptime")
	case 13:
		t.tok("set", key, "0", "0", []string{"five", "5x", "-", "1e3", "0x5"}[g.intn(5)]).eol().raw(x(5))
		return t.req("bad-length")
	case 14:
		n := g.intn(20)
		t.tok("cas", key, "0", "0", strconv.Itoa(n), []string{"abc", "-1", "1.0", "18446744073709551616"}[g.intn(4)]).eol().raw(x(n))
		return t.req("bad-cas-unique")
	case 15:
		t.tok([]string{"incr", "decr"}[g.intn(2)], key, []string{"abc", "-1", "18446744073709551616", "1.0", "0x1", ""}[g.intn(6)]).eol()
		return t.req("bad-delta")
	case 16:
		t.tok("touch", key, []string{"abc", "1.5", "soon"}[g.intn(3)]).eol()
		return t.req("bad-touch-exptime")
	case 17:
		t.tok([]string{"gat", "gats"}[g.intn(2)], []string{"abc", "1.5", "x"}[g.intn(3)], key).eol()
		return t.req("bad-gat-exptime")
	case 18:
		n := g.intn(10)
		t.tok("set", key, "0", "0", []string{"-1", "-5", "-2147483648"}[g.intn(3)]).eol().raw(x(n))
		return t.req("negative-length")
	case 19:
		t.tok("set", key, "0", "0", []string{"2147483647", "2147483646"}[g.intn(2)]).eol().raw(x(1))
		return t.req("huge-length")
	case 20:
		n := g.intn(30)
		cmd := []string{"set", "add", "replace", "append", "prepend"}[g.intn(5)]
		t.tok(cmd, g.longKey(), "0", "0", strconv.Itoa(n))
		if g.chance(0.3) {
			t.tok("noreply")
		}
		t.eol().raw(x(n))
		return t.req(cmd + "-key-too-long")
	case 21:
		t.tok("cas", g.longKey(), "0", "0", "1", "1").eol().raw(x(1))
		return t.req("cas-key-too-long")
	case 22:
		switch g.intn(4) {
		case 0:
			t.tok("touch", g.longKey(), "0")
		case 1:
			t.tok("delete", g.longKey())
		case 2:
			t.tok("incr", g.longKey(), "1")
		default:
			t.tok("decr", g.longKey(), "1", "noreply")
		}
		return t.eol().req("key-too-long")
	case 23, 24, 25:
		// Data block longer than announced: memcached reads length+2
		// bytes, finds no "\r\n" at their end, answers "bad data chunk"
		// and reads the rest as a command.
		n := g.intn(20)
		extra := g.between(1, 10)
		cmd := []string{"set", "add", "replace", "append", "prepend"}[g.intn(5)]
		t.tok(cmd, key, "0", "0", strconv.Itoa(n))
		if g.chance(0.25) {
			t.tok("noreply")
		}
		t.eol().raw(filler('X', n+extra)).raw([]byte("\r\n"))
		return t.req(cmd + "-data-too-long")
	case 26, 27:
		// Data block shorter than announced: memcached takes the first
		// bytes of what follows as the end of the data. The following
		// line belongs to this request so that the stream is in step
		// again after it.
		n := g.between(2, 30)
		m := g.intn(n)
		t.tok("set", key, "0", "0", strconv.Itoa(n))
		if g.chance(0.25) {
			t.tok("noreply")
		}
		t.eol().raw(filler('X', m)).raw([]byte("\r\n"))
		t.raw(filler('Y', n-m+1+g.intn(5))).raw([]byte("\r\n"))
		return t.req("set-data-too-short")
	case 28:
		// Data ended by a bare "\n": not "\r\n", so a bad data chunk.
		n := g.intn(20)
		t.tok("set", key, "0", "0", strconv.Itoa(n)).eol().raw(filler('X', n)).raw([]byte("\nZ\r\n"))
		return t.req("set-data-bare-newline")
	default:
		// Tokens beyond memcached's 24-token limit on a storage command.
		t.tok("set", key, "0", "0", "1")
		for i := 0; i < 24; i++ {
			t.tok("t")
		}
		t.eol().raw(x(1))
		return t.req("too-many-tokens")
	}
}

// textAlone returns a request after which memcached closes the connection
// dropping replies it has not sent yet: it must travel alone.
func (g *Generator) textAlone() *Request {
	t := g.text()
	var r *Request
	switch g.intn(3) {
	case 0:
		// No newline within the first 2048 bytes, and not a get: closed.
		t.raw(filler('x', g.between(2100, 3000)))
		r = t.req("line-too-long")
	case 1:
		t.tok("GET", "/", "HTTP/1.1").eol()
		r = t.req("http")
	default:
		return g.textGetLongKey()
	}
	r.Closes = true
	return r
}

func (g *Generator) quit(b *Batch) *Request {
	if !b.Binary {
		r := g.text().tok("quit").eol().req("quit")
		r.Closes = true
		return r
	}
	op := byte(opQuit)
	if g.chance(0.5) {
		op = opQuitQ
	}
	r := g.bin(b, op, "", nil, nil, nil).req("bin-quit")
	r.Closes = true
	return r
}

// ---------------------------------------------------------------------------
// Binary protocol.

// bb builds a binary request of one or more packets.
type bb struct {
	g    *Generator
	segs []seg
}

func (p *bb) raw(b []byte) *bb {
	p.segs = append(p.segs, seg{lit: b})
	return p
}

func (p *bb) req(kind string) *Request { return &Request{Kind: kind, segs: p.segs} }

// bin builds one packet. cas is nil for zero, or a placeholder.
func (g *Generator) bin(b *Batch, op byte, key string, extras, value []byte, cas *casRef) *bb {
	p := &bb{g: g}
	return p.packet(b, op, key, extras, value, cas)
}

func (p *bb) packet(b *Batch, op byte, key string, extras, value []byte, cas *casRef) *bb {
	g := p.g
	g.opaque = (g.opaque + 1) & opaqueMask
	if g.opaque == 0 {
		g.opaque = 1
	}
	b.keyOf[g.opaque] = key
	h := header(op, len(key), len(extras), len(extras)+len(key)+len(value), g.opaque)
	if cas == nil {
		p.raw(h)
	} else {
		p.raw(h[:16])
		p.segs = append(p.segs, seg{cas: cas})
	}
	body := make([]byte, 0, len(extras)+len(key)+len(value))
	body = append(append(append(body, extras...), key...), value...)
	return p.raw(body)
}

func header(op byte, keylen, extlen, bodylen int, opaque uint32) []byte {
	h := make([]byte, 24)
	h[0] = magicRequest
	h[1] = op
	binary.BigEndian.PutUint16(h[2:], uint16(keylen))
	h[4] = byte(extlen)
	binary.BigEndian.PutUint32(h[8:], uint32(bodylen))
	binary.BigEndian.PutUint32(h[12:], opaque)
	return h
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (g *Generator) storeExtras() []byte {
	return append(be32(g.flagsBin()), be32(g.expBin())...)
}

// binCas is usually zero (no check); otherwise the last CAS seen for key,
// an older one, or a value no server hands out.
func (g *Generator) binCas(key string, p float64) *casRef {
	if !g.chance(p) {
		return nil
	}
	switch x := g.r.Float64(); {
	case x < 0.7:
		return &casRef{key: key, bin: true}
	default:
		return &casRef{key: key, stale: true, bin: true}
	}
}

type binGen struct {
	w float64
	f func(g *Generator, b *Batch) *Request
}

var binKinds = []binGen{
	{6, func(g *Generator, b *Batch) *Request { return g.binGet(b, opGet) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binGet(b, opGetQ) }},
	{4, func(g *Generator, b *Batch) *Request { return g.binGet(b, opGetK) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binGet(b, opGetKQ) }},
	{8, func(g *Generator, b *Batch) *Request { return g.binStore(b, opSet) }},
	{4, func(g *Generator, b *Batch) *Request { return g.binStore(b, opSetQ) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binStore(b, opAdd) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binStore(b, opAddQ) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binStore(b, opReplace) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binStore(b, opReplaceQ) }},
	{4, func(g *Generator, b *Batch) *Request { return g.binDelete(b, opDelete) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binDelete(b, opDeleteQ) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binDelta(b, opIncr) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binDelta(b, opIncrQ) }},
	{3, func(g *Generator, b *Batch) *Request { return g.binDelta(b, opDecr) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binDelta(b, opDecrQ) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binAppend(b, opAppend) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binAppend(b, opAppendQ) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binAppend(b, opPrepend) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binAppend(b, opPrependQ) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binTouch(b, opTouch) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binTouch(b, opGat) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binTouch(b, opGatQ) }},
	{2, func(g *Generator, b *Batch) *Request { return g.binTouch(b, opGatK) }},
	{1, func(g *Generator, b *Batch) *Request { return g.binTouch(b, opGatKQ) }},
	{1, (*Generator).binWrap},
	{0.12, (*Generator).binFlush},
	{1, func(g *Generator, b *Batch) *Request { return g.bin(b, opNoop, "", nil, nil, nil).req("bin-noop") }},
	{0.3, func(g *Generator, b *Batch) *Request {
		return g.bin(b, opVersion, "", nil, nil, nil).req("bin-version")
	}},
	{0.2, (*Generator).binStat},
	{0.2, (*Generator).binVerbosity},
	{0.3, (*Generator).binSasl},
	{0.3, (*Generator).binUnknown},
	{0.15, (*Generator).binTooLarge},
}

var binTotal = func() float64 {
	s := 0.0
	for _, k := range binKinds {
		s += k.w
	}
	return s
}()

func (g *Generator) binRequest(b *Batch) *Request {
	x := g.r.Float64() * binTotal
	for _, k := range binKinds {
		if x < k.w {
			return k.f(g, b)
		}
		x -= k.w
	}
	return binKinds[0].f(g, b)
}

var opNames = map[byte]string{
	opGet: "GET", opSet: "SET", opAdd: "ADD", opReplace: "REPLACE", opDelete: "DELETE",
	opIncr: "INCR", opDecr: "DECR", opQuit: "QUIT", opFlush: "FLUSH", opGetQ: "GETQ",
	opNoop: "NOOP", opVersion: "VERSION", opGetK: "GETK", opGetKQ: "GETKQ",
	opAppend: "APPEND", opPrepend: "PREPEND", opStat: "STAT", opSetQ: "SETQ",
	opAddQ: "ADDQ", opReplaceQ: "REPLACEQ", opDeleteQ: "DELETEQ", opIncrQ: "INCRQ",
	opDecrQ: "DECRQ", opQuitQ: "QUITQ", opFlushQ: "FLUSHQ", opAppendQ: "APPENDQ",
	opPrependQ: "PREPENDQ", opVerbosity: "VERBOSITY", opTouch: "TOUCH", opGat: "GAT",
	opGatQ: "GATQ", opSaslList: "SASL_LIST_MECHS", opSaslAuth: "SASL_AUTH",
	opSaslStep: "SASL_STEP", opGatK: "GATK", opGatKQ: "GATKQ",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return "0x" + strconv.FormatUint(uint64(op), 16)
}

func (g *Generator) binGet(b *Batch, op byte) *Request {
	key := g.fetchKey()
	return g.bin(b, op, key, nil, nil, nil).req("bin-" + opName(op))
}

func (g *Generator) binStore(b *Batch, op byte) *Request {
	key := g.key()
	// With a CAS, even ADD behaves as a compare-and-swap in memcached.
	cas := g.binCas(key, 0.2)
	ext := g.storeExtras()
	val := g.valueFor(key, binary.BigEndian.Uint32(ext) != 0)
	g.setBig(key, len(val), (op == opSet || op == opSetQ) && cas == nil)
	return g.bin(b, op, key, ext, val, cas).req("bin-" + opName(op))
}

func (g *Generator) binDelete(b *Batch, op byte) *Request {
	key := g.key()
	return g.bin(b, op, key, nil, nil, g.binCas(key, 0.15)).req("bin-" + opName(op))
}

func (g *Generator) binDelta(b *Batch, op byte) *Request {
	key := g.deltaKey()
	d, _ := strconv.ParseUint(strings.TrimPrefix(g.delta(op == opIncr || op == opIncrQ), "+"), 10, 64)
	initial := g.initial()
	exp := g.expBin()
	if g.chance(0.3) {
		exp = 0xffffffff // no auto-create: NOT_FOUND
	}
	ext := append(append(be64(d), be64(initial)...), be32(exp)...)
	return g.bin(b, op, key, ext, nil, g.binCas(key, 0.1)).req("bin-" + opName(op))
}

// initial is a binary incr/decr initial value, below 2^40 (see
// numericValues).
func (g *Generator) initial() uint64 {
	switch x := g.r.Float64(); {
	case x < 0.5:
		return uint64(g.intn(100))
	case x < 0.7:
		return 0
	default:
		return g.r.Uint64() >> 24
	}
}

// binWrap is the binary wrapUnit: SET a number, INCR or DECR it by any
// delta, DELETE it.
func (g *Generator) binWrap(b *Batch) *Request {
	key := g.deltaKey()
	v := wrapNumbers[g.intn(len(wrapNumbers))]
	op := []byte{opIncr, opDecr, opIncrQ, opDecrQ}[g.intn(4)]
	d, _ := strconv.ParseUint(hugeDeltas[g.intn(len(hugeDeltas))], 10, 64)
	if g.chance(0.3) {
		d, _ = strconv.ParseUint(deltas[g.intn(len(deltas))], 10, 64)
	}
	p := g.bin(b, opSet, key, g.storeExtras(), []byte(v), nil)
	p.packet(b, op, key, append(append(be64(d), be64(g.initial())...), be32(0)...), nil, nil)
	p.packet(b, opDelete, key, nil, nil, nil)
	return p.req("bin-wrap-" + opName(op))
}

func (g *Generator) binAppend(b *Batch, op byte) *Request {
	key := g.appendKey(g.key)
	return g.bin(b, op, key, nil, g.smallValue(), g.binCas(key, 0.1)).req("bin-" + opName(op))
}

func (g *Generator) binTouch(b *Batch, op byte) *Request {
	key := g.fetchKey()
	return g.bin(b, op, key, be32(g.expBin()), nil, nil).req("bin-" + opName(op))
}

func (g *Generator) binFlush(b *Batch) *Request {
	op := byte(opFlush)
	if g.chance(0.3) {
		op = opFlushQ
	}
	var ext []byte
	delayed := false
	switch g.intn(6) {
	case 0, 1:
	case 2:
		ext = be32(0)
	case 3:
		ext = be32(100000)
		delayed = true
	case 4:
		ext = be32(uint32(g.now + 100000))
		delayed = true
	case 5:
		ext = be32(1000000000)
		delayed = true
	}
	p := g.bin(b, op, "", ext, nil, nil)
	if !delayed {
		g.flushedAll()
		g.sweepBinary(b, p) // see anchors.go
	}
	return p.req("bin-" + opName(op))
}

func (g *Generator) binStat(b *Batch) *Request {
	keys := []string{"", "", "", "reset", "bogus", "nosuchstat", "items", "slabs", "settings", "sizes", "conns"}
	key := keys[g.intn(len(keys))]
	kind := "bin-STAT"
	if key != "" {
		kind += "-" + key
	}
	p := &bb{g: g}
	if key == "items" || key == "slabs" {
		p.packet(b, opSet, statsProbe, make([]byte, 8), []byte("p"), nil) // see statsProbe
	}
	return p.packet(b, opStat, key, nil, nil, nil).req(kind)
}

// After an unknown opcode memcached 1.6.18 swallows bodylen bytes counted
// from the end of the key, that is extlen+keylen bytes beyond the packet.
// The generator sends that many zero bytes after the packet so the stream
// stays in step; a server that swallows only the rest of the body reads
// them as a bad magic byte. VERBOSITY (0x1b) is such an unknown opcode in
// memcached 1.6.18.
func (g *Generator) binVerbosity(b *Batch) *Request {
	p := g.bin(b, opVerbosity, "", be32(uint32(g.intn(2))), nil, nil)
	p.raw(make([]byte, 4))
	return p.req("bin-VERBOSITY+pad")
}

func (g *Generator) binUnknown(b *Batch) *Request {
	ops := []byte{0x25, 0x26, 0x30, 0x31, 0x37, 0x39, 0x3c, 0x40, 0x80, 0xa0, 0xfe, 0xff}
	op := ops[g.intn(len(ops))]
	var ext []byte
	if g.chance(0.3) {
		ext = be32(g.r.Uint32())
	}
	key := ""
	if g.chance(0.4) {
		key = g.key()
	}
	value := g.bytesOf(g.intn(40))
	p := g.bin(b, op, key, ext, value, nil)
	p.raw(make([]byte, len(ext)+len(key)))
	return p.req("bin-unknown-" + opName(op) + "+pad")
}

// binSasl: memcached without SASL answers "Unknown command" while memhive
// with --auth none accepts; the runner compares only that one reply with
// the request's opcode and opaque comes back.
func (g *Generator) binSasl(b *Batch) *Request {
	switch g.intn(3) {
	case 0:
		return g.bin(b, opSaslList, "", nil, nil, nil).req("bin-SASL_LIST_MECHS")
	case 1:
		return g.bin(b, opSaslAuth, "PLAIN", nil, []byte("\x00user\x00secret"), nil).req("bin-SASL_AUTH")
	default:
		return g.bin(b, opSaslStep, "PLAIN", nil, []byte("more"), nil).req("bin-SASL_STEP")
	}
}

func (g *Generator) binTooLarge(b *Batch) *Request {
	key := g.key()
	n := maxItem + g.between(1024, 512*1024)
	ops := []byte{opSet, opSet, opSetQ, opAdd, opReplace, opAppend, opPrependQ}
	op := ops[g.intn(len(ops))]
	var ext []byte
	if op != opAppend && op != opPrependQ {
		ext = g.storeExtras()
	}
	if op == opSet || op == opSetQ {
	}
	return g.bin(b, op, key, ext, filler('v', n), nil).req("bin-" + opName(op) + "-too-large")
}

// binAlone returns a request after which memcached closes the connection:
// protocol errors (closed after the error reply is written) and a bad
// magic byte (closed at once, dropping unsent replies).
func (g *Generator) binAlone(b *Batch) *Request {
	key := g.key()
	var p *bb
	kind := ""
	switch g.intn(9) {
	case 0:
		ops := []byte{opGet, opGetK, opDelete, opNoop, opStat}
		op := ops[g.intn(len(ops))]
		k := key
		if op == opNoop {
			k = ""
		}
		p = g.bin(b, op, k, be32(7), nil, nil)
		kind = "bin-" + opName(op) + "-extras"
	case 1:
		ext := [][]byte{nil, be32(1), make([]byte, 12)}[g.intn(3)]
		op := []byte{opSet, opAdd, opReplaceQ}[g.intn(3)]
		p = g.bin(b, op, key, ext, []byte("value"), nil)
		kind = "bin-" + opName(op) + "-extras"
	case 2:
		op := []byte{opIncr, opDecrQ}[g.intn(2)]
		p = g.bin(b, op, key, make([]byte, 8+4*g.intn(2)), nil, nil)
		kind = "bin-" + opName(op) + "-extras"
	case 3:
		op := []byte{opTouch, opGat, opGatKQ}[g.intn(3)]
		p = g.bin(b, op, key, [][]byte{nil, make([]byte, 8)}[g.intn(2)], nil, nil)
		kind = "bin-" + opName(op) + "-extras"
	case 4:
		op := []byte{opFlush, opVersion, opQuit, opAppend}[g.intn(4)]
		switch op {
		case opFlush:
			p = g.bin(b, op, "", make([]byte, 8), nil, nil)
		case opAppend:
			p = g.bin(b, op, key, be32(1), []byte("v"), nil)
		default:
			p = g.bin(b, op, "", nil, []byte("x"), nil)
		}
		kind = "bin-" + opName(op) + "-bad-body"
	case 5:
		op := []byte{opGet, opDelete, opGetKQ}[g.intn(3)]
		p = g.bin(b, op, "", nil, nil, nil)
		kind = "bin-" + opName(op) + "-no-key"
	case 6:
		op := []byte{opGet, opSet, opDelete}[g.intn(3)]
		var ext []byte
		if op == opSet {
			ext = make([]byte, 8)
		}
		p = g.bin(b, op, g.longKey(), ext, nil, nil)
		kind = "bin-" + opName(op) + "-key-too-long"
	case 7:
		// keylen beyond bodylen. memcached first waits for extlen+keylen
		// bytes after the header, so they are sent.
		g.opaque = (g.opaque + 1) & opaqueMask
		h := header(opGet, 10, 0, 4, g.opaque)
		p = (&bb{g: g}).raw(h).raw(filler('k', 10))
		kind = "bin-keylen-beyond-body"
	default:
		// A bad magic byte once the connection speaks binary: a NOOP
		// first, whose reply is flushed before the next packet is read.
		p = g.bin(b, opNoop, "", nil, nil, nil)
		h := header(opGet, 1, 0, 1, 99)
		h[0] = []byte{0x81, 0x00, 0x7f, 'g'}[g.intn(4)]
		p.raw(h).raw([]byte("k"))
		kind = "bin-bad-magic"
	}
	r := p.req(kind)
	r.Closes = true
	return r
}

// ---------------------------------------------------------------------------
// Meta commands.

// metaCAS appends " <flag><cas of key>" (C, or E) as a CAS placeholder.
func (t *tb) metaCAS(flag, key string, stale bool) *tb {
	t.cur = append(t.cur, ' ')
	t.cur = append(t.cur, flag...)
	t.flush()
	t.segs = append(t.segs, seg{cas: &casRef{key: key, stale: stale}})
	t.n++
	return t
}

// metaKey returns key as a meta command sends it: plain, or base64 with a
// b flag to add (memcached decodes it to the same key).
//
// An encoded key over 250 bytes is an error that leaves ms's data block
// to be read as commands, whose outcome depends on how the bytes arrive:
// long keys are sent plain.
func (g *Generator) metaKey(key string) (string, bool) {
	if enc := base64.StdEncoding.EncodeToString([]byte(key)); len(enc) <= 250 && g.chance(0.15) {
		return enc, true
	}
	return key, false
}

// opaqueFlag is an O flag: usually up to 32 bytes, memcached's limit, rarely
// longer (an error).
func (g *Generator) opaqueFlag() string {
	n := g.intn(20)
	if g.chance(0.02) {
		n = g.between(32, 40)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[g.intn(len(letters))]
	}
	return "O" + string(b)
}

// recacheTime is an R flag's argument: far from the expiry times the
// generator uses, so that the win never depends on the clock.
func (g *Generator) recacheTime() string {
	return []string{"5", "500", "5000", "200000"}[g.intn(4)]
}

// metaFlags turns a set of candidate flags into a shuffled flag list: each
// is kept with probability p. c needs k (the CAS normaliser keys on it).
func (g *Generator) metaFlags(cands []string, p float64) []string {
	var out []string
	hasC, hasK := false, false
	for _, f := range cands {
		if g.chance(p) {
			out = append(out, f)
			hasC = hasC || f == "c"
			hasK = hasK || f == "k"
		}
	}
	if hasC && !hasK {
		out = append(out, "k")
	}
	g.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if g.chance(0.01) {
		// An unknown or repeated flag: an error.
		out = append(out, []string{"Z", "x", "v", "k"}[g.intn(4)])
		if len(out) > 1 && out[len(out)-1] != "Z" && out[len(out)-1] != "x" {
			out = append(out, out[len(out)-1])
		}
	}
	return out
}

// metaFlagsRefused reports whether flags hold one that metaFlags adds to
// provoke an error (an unknown flag, v on ms, or one repeated): the
// command then answers CLIENT_ERROR and changes nothing.
func metaFlagsRefused(flags []string) bool {
	seen := map[string]bool{}
	for _, f := range flags {
		if f == "Z" || f == "x" || f == "v" || seen[f] {
			return true
		}
		seen[f] = true
	}
	return false
}

// metaStart begins a meta command on key: the command, the key (maybe
// base64), the tokens of args (ms's length), and b if the key is encoded.
func (g *Generator) metaStart(cmd, key string, args ...string) *tb {
	k, b := g.metaKey(key)
	t := g.text().tok(cmd, k).tok(args...)
	if b {
		t.tok("b")
	}
	return t
}

func (g *Generator) metaGet() *Request {
	t := g.metaStart("mg", g.fetchKey())
	cands := []string{"v", "s", "t", "c", "f", "l", "h", "k", "q", "u", g.opaqueFlag(),
		"T" + g.expText(), "N" + g.expText(), "R" + g.recacheTime()}
	t.tok(g.metaFlags(cands, 0.3)...)
	return t.eol().req("mg")
}

func (g *Generator) metaSet() *Request {
	key := g.key()
	mode := []string{"", "", "", "MS", "ME", "MA", "MP", "MR"}[g.intn(8)]
	cands := []string{"q", "k", "c", "I", g.opaqueFlag(), "T" + g.expText(), "F" + g.flagsText()}
	if mode != "" {
		cands = append(cands, mode)
	}
	if g.chance(0.01) {
		cands = append(cands, "MX")
	}
	flags := g.metaFlags(cands, 0.35)
	appending, replaces, flagsSet := false, true, false
	for _, f := range flags {
		switch {
		case f == "MA" || f == "MP":
			appending = true
		case f == "ME" || f == "MR" || f == "MX":
			replaces = false
		case f[0] == 'F' && f != "F0":
			flagsSet = true
		}
	}
	withCAS := g.chance(0.3)
	var val []byte
	if appending {
		key = g.appendKey(g.key)
		val = g.smallValue()
	} else {
		val = g.valueFor(key, flagsSet)
		if !metaFlagsRefused(flags) {
			// A refused ms stores nothing: a big value under key stays.
			g.setBig(key, len(val), replaces && !withCAS)
		}
	}
	t := g.metaStart("ms", key, strconv.Itoa(len(val)))
	t.tok(flags...)
	if withCAS {
		t.metaCAS("C", key, g.chance(0.4))
	}
	t.eol().raw(val).raw([]byte("\r\n"))
	return t.req("ms")
}

func (g *Generator) metaDelete() *Request {
	key := g.key()
	t := g.metaStart("md", key)
	t.tok(g.metaFlags([]string{"q", "k", "I", g.opaqueFlag(), "T" + g.expText()}, 0.3)...)
	if g.chance(0.25) {
		t.metaCAS("C", key, g.chance(0.3))
	}
	return t.eol().req("md")
}

func (g *Generator) metaArith() *Request {
	key := g.deltaKey()
	t := g.metaStart("ma", key)
	mode := []string{"MI", "M+", "MD", "M-"}[g.intn(4)]
	incr := mode == "MI" || mode == "M+"
	delta := "D" + g.delta(incr)
	cands := []string{"q", "k", "c", "t", "v", g.opaqueFlag(), "T" + g.expText(), "N" + g.expText(),
		"J" + numericInitial[g.intn(len(numericInitial))], delta, mode}
	flags := g.metaFlags(cands, 0.35)
	if i := slices.Index(flags, delta); i >= 0 && !incr && !slices.Contains(flags, mode) {
		// Without its mode token ma increments, and a decrement's delta
		// may be huge: it would carry the value to 2^63 or more (see
		// numericValues).
		flags[i] = "D1"
	}
	t.tok(flags...)
	if g.chance(0.15) {
		t.metaCAS("C", key, g.chance(0.3))
	}
	return t.eol().req("ma")
}

// numericInitial are ma's J values: far below 2^63 (see numericValues).
var numericInitial = []string{"0", "1", "10", "4294967296", "999999999999"}

func (g *Generator) metaDebug() *Request { return g.metaStart("me", g.key()).eol().req("me") }

func (g *Generator) metaNoop() *Request { return g.text().tok("mn").eol().req("mn") }
