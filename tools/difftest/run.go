package difftest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Target is one of the two servers under comparison.
type Target struct {
	Name string // for messages, e.g. "memcached" or "memhive"
	Addr string // host:port
}

// Options configures Run.
type Options struct {
	Seed     int64
	Requests int // run at least this many requests (default 100,000)
	// Markers follows every request with a marker command (text
	// "version", binary NOOP) so that each request's reply can be told
	// apart: slower, used to pin down the request behind a difference.
	Markers bool
	// MaxBatches, when > 0, stops the run after that many batches.
	MaxBatches int
	// MaxDuration stops the run early (default 15 minutes: relative
	// expiry times of 1000 s must not fire during a run).
	MaxDuration time.Duration
	// BatchTimeout bounds reading one batch's replies (default 30 s: a
	// loaded machine can stall a server for seconds).
	BatchTimeout time.Duration
	// Now is the base of absolute expiry times (default time.Now()).
	Now  time.Time
	Logf func(format string, args ...any)
	// CheckState compares every key's value and flags on both servers
	// after each batch, with the meta command "mg" (so both must support
	// it): a slow debugging aid that finds the batch whose effects differ
	// before any reply shows it.
	CheckState bool
	// PerNodeStats says that b is one node of a cluster, whose stats
	// count its own work and items only: the counters of its stats
	// replies are compared by name, not value (see perNodeStat).
	PerNodeStats bool
}

// Summary describes a run that found no difference.
type Summary struct {
	Requests int
	Batches  int
	Bytes    int64 // request bytes written to each server
	Elapsed  time.Duration
	Kinds    map[string]int // requests per kind
	Stopped  string         // why the run ended before Requests, if it did
}

// Mismatch is the first difference found: a reply segment (a whole batch,
// or one request when Options.Markers is set) that differs after
// normalisation, a timeout, or both servers timing out.
type Mismatch struct {
	Seed         int64
	Batch        int
	Slot         int
	Binary       bool
	FirstRequest int // requests whose replies form the segment
	LastRequest  int
	Kinds        []string // kind of each request in the segment
	Requests     [][]byte // bytes of each request as sent to A
	A, B         Target
	ReplyA       []byte // normalised replies
	ReplyB       []byte
	Note         string
	Markers      bool
}

// Error renders the mismatch with everything needed to replay it.
func (m *Mismatch) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "difftest seed %d (replay: DIFF_SEED=%d): ", m.Seed, m.Seed)
	proto := "text"
	if m.Binary {
		proto = "binary"
	}
	if m.FirstRequest == m.LastRequest {
		fmt.Fprintf(&sb, "replies differ at request %d [%s] (batch %d, %s connection %d)",
			m.FirstRequest, m.Kinds[0], m.Batch, proto, m.Slot)
	} else {
		fmt.Fprintf(&sb, "replies differ in batch %d (%s connection %d), requests %d..%d",
			m.Batch, proto, m.Slot, m.FirstRequest, m.LastRequest)
	}
	if m.Note != "" {
		fmt.Fprintf(&sb, ": %s", m.Note)
	}
	sb.WriteString("\n")
	for i, r := range m.Requests {
		if i == 60 {
			fmt.Fprintf(&sb, "  ... %d more requests\n", len(m.Requests)-i)
			break
		}
		fmt.Fprintf(&sb, "request %d [%s]: %s\n", m.FirstRequest+i, m.Kinds[i], quote(r, 400))
		if m.Binary {
			sb.WriteString(indent(dumpBinary(r, 0x80), "    "))
		}
	}
	off := firstDiff(m.ReplyA, m.ReplyB)
	fmt.Fprintf(&sb, "replies (normalised) first differ at byte %d of %d/%d\n", off, len(m.ReplyA), len(m.ReplyB))
	lo := off - 1500
	if lo < 0 {
		lo = 0
	}
	for _, x := range []struct {
		t Target
		r []byte
	}{{m.A, m.ReplyA}, {m.B, m.ReplyB}} {
		hi := off + 1500
		if hi > len(x.r) {
			hi = len(x.r)
		}
		l := lo
		if l > hi {
			l = hi
		}
		fmt.Fprintf(&sb, "%s reply [%d:%d]: %q\n", x.t.Name, l, hi, x.r[l:hi])
		if m.Binary {
			sb.WriteString(indent(dumpBinary(x.r, 0x81), "    "))
		}
	}
	return sb.String()
}

func firstDiff(a, b []byte) int {
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func quote(b []byte, max int) string {
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("%s ... (%d bytes) ... %s", strconv.Quote(string(b[:max*3/4])), len(b), strconv.Quote(string(b[len(b)-max/4:])))
}

func indent(s, p string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return p + strings.Join(lines, "\n"+p) + "\n"
}

// dumpBinary decodes a stream of binary packets for failure messages.
func dumpBinary(b []byte, magic byte) string {
	var sb strings.Builder
	for n := 0; len(b) > 0 && n < 80; n++ {
		if len(b) < 24 || (b[0] != 0x80 && b[0] != 0x81) {
			fmt.Fprintf(&sb, "raw %s\n", quote(b, 120))
			break
		}
		keylen := int(binary.BigEndian.Uint16(b[2:]))
		extlen := int(b[4])
		bodylen := int(binary.BigEndian.Uint32(b[8:]))
		status := binary.BigEndian.Uint16(b[6:])
		fmt.Fprintf(&sb, "%s op=%s keylen=%d extlen=%d bodylen=%d status=0x%04x opaque=%d cas=%d",
			map[byte]string{0x80: "req", 0x81: "res"}[b[0]], opName(b[1]), keylen, extlen, bodylen,
			status, binary.BigEndian.Uint32(b[12:]), binary.BigEndian.Uint64(b[16:]))
		end := 24 + bodylen
		if end > len(b) {
			end = len(b)
		}
		body := b[24:end]
		if extlen+keylen <= len(body) {
			fmt.Fprintf(&sb, " ext=%x key=%s value=%s\n", body[:extlen], quote(body[extlen:extlen+keylen], 60), quote(body[extlen+keylen:], 60))
		} else {
			fmt.Fprintf(&sb, " body=%s\n", quote(body, 60))
		}
		b = b[end:]
	}
	return sb.String()
}

// Run replays generated traffic against a and b until opt.Requests
// requests have been compared, and returns the first difference as a
// *Mismatch error. Other errors (a server not accepting connections) are
// returned as they are.
func Run(a, b Target, opt Options) (Summary, error) {
	if opt.Requests <= 0 {
		opt.Requests = 100000
	}
	if opt.MaxDuration <= 0 {
		opt.MaxDuration = 15 * time.Minute
	}
	if opt.BatchTimeout <= 0 {
		opt.BatchTimeout = 30 * time.Second
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	logf := opt.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sa, sb := newSide(a), newSide(b)
	sa.perNode, sb.perNode = opt.PerNodeStats, opt.PerNodeStats
	defer sa.close()
	defer sb.close()
	g := NewGenerator(opt.Seed, opt.Now)
	sum := Summary{Kinds: map[string]int{}}
	start := time.Now()
	nextLog := 20000
	epoch := 0
	epochEnd := map[int]time.Time{}
	for sum.Requests < opt.Requests {
		if opt.MaxBatches > 0 && sum.Batches >= opt.MaxBatches {
			break
		}
		if time.Since(start) > opt.MaxDuration {
			sum.Stopped = fmt.Sprintf("stopped at the time limit (%v): %d of %d requests compared, all identical",
				opt.MaxDuration.Round(time.Second), sum.Requests, opt.Requests)
			logf("difftest: %s", sum.Stopped)
			break
		}
		bt := g.Next()
		if bt.Epoch != epoch {
			// The group incremented from now on was last fetched two
			// epochs ago: give memcached time to drop its references.
			epochEnd[epoch] = time.Now()
			epoch = bt.Epoch
			if t, ok := epochEnd[epoch-2]; ok {
				if d := EpochMinDuration - time.Since(t); d > 0 {
					time.Sleep(d)
				}
			}
		}
		timeout := opt.BatchTimeout
		if bt.Closes {
			timeout = 10 * time.Second
		}
		t0 := time.Now()
		pa := sa.build(bt, opt.Markers)
		pb := sb.build(bt, opt.Markers)
		var ra, rb result
		done := make(chan struct{})
		go func() {
			rb = sb.exec(bt, pb, timeout)
			close(done)
		}()
		ra = sa.exec(bt, pa, timeout)
		<-done
		if d := time.Since(t0); d > 2*time.Second {
			logf("difftest: batch %d (%d requests, %d bytes) took %v", bt.Index, len(bt.Requests), len(pa.buf), d.Round(time.Millisecond))
		}
		if ra.err != nil {
			return sum, ra.err
		}
		if rb.err != nil {
			return sum, rb.err
		}
		for i, e := range pa.exps {
			segA, segB := ra.segs[i], rb.segs[i]
			note := ""
			switch {
			case ra.timedOut && rb.timedOut:
				note = "both servers timed out (a harness bug?)"
			case ra.timedOut:
				note = a.Name + " timed out"
			case rb.timedOut:
				note = b.Name + " timed out"
			}
			clock := ""
			if bytes.Equal(segA, segB) {
				clock = clockDiff(ra.clocks[i], rb.clocks[i])
			}
			if bytes.Equal(segA, segB) && note == "" && clock == "" {
				continue
			}
			if note != "" && bytes.Equal(segA, segB) && i+1 < len(pa.exps) {
				continue // report the timeout on the segment it happened in
			}
			if clock != "" {
				note = clock
			}
			m := &Mismatch{
				Seed: opt.Seed, Batch: bt.Index, Slot: bt.Slot, Binary: bt.Binary,
				FirstRequest: bt.Requests[e.first].Index, LastRequest: bt.Requests[e.last].Index,
				A: a, B: b, ReplyA: segA, ReplyB: segB, Note: note, Markers: opt.Markers,
			}
			for j := e.first; j <= e.last; j++ {
				m.Kinds = append(m.Kinds, bt.Requests[j].Kind)
				m.Requests = append(m.Requests, pa.buf[pa.reqs[j][0]:pa.reqs[j][1]])
			}
			return sum, m
		}
		if opt.CheckState {
			if err := checkState(sa, sb, g.keys); err != nil {
				return sum, fmt.Errorf("difftest seed %d: after batch %d (requests %d..%d): %w", opt.Seed, bt.Index,
					bt.Requests[0].Index, bt.Requests[len(bt.Requests)-1].Index, err)
			}
		}
		sum.Batches++
		sum.Requests += len(bt.Requests)
		sum.Bytes += int64(len(pa.buf))
		for _, r := range bt.Requests {
			sum.Kinds[r.Kind]++
		}
		if sum.Requests >= nextLog {
			logf("difftest: %d requests in %d batches, %v", sum.Requests, sum.Batches, time.Since(start).Round(time.Millisecond))
			nextLog += 20000
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// side is one server's connections and what the run learnt from its
// replies: the CAS values it handed out.
type side struct {
	t     Target
	conns [numSlots]net.Conn
	// last and prev CAS value seen per key, to fill CAS placeholders.
	last, prev map[string]uint64
	// ord numbers the CAS values of each key in order of first
	// appearance; replies carry those numbers instead of the values.
	ord map[string]map[uint64]int
	// acc collects the stats reply being read (see stat).
	acc statsAcc
	// perNode is Options.PerNodeStats: see perNodeStats.
	perNode bool
	// clocks are the clock-dependent meta values (t, l, me's exp and la)
	// of the reply segment being read, in order; the segment's text has
	// "~" in their place. Both servers' values must be within 2 s.
	clocks []int64
}

func newSide(t Target) *side {
	return &side{t: t, last: map[string]uint64{}, prev: map[string]uint64{}, ord: map[string]map[uint64]int{}}
}

func (s *side) close() {
	for i, c := range s.conns {
		if c != nil {
			c.Close()
			s.conns[i] = nil
		}
	}
}

// expect says where a reply segment ends.
type expect struct {
	first, last int    // requests (indexes in the batch) it covers
	versions    int    // text: number of VERSION lines that end it
	opaque      uint32 // binary: opaque of the NOOP reply that ends it
	eof         bool   // ends at end of stream
}

// prepared is a batch's bytes for one server.
type prepared struct {
	buf  []byte
	reqs [][2]int // byte range of each request (markers excluded)
	exps []expect
}

func (s *side) casValue(c *casRef, index int) uint64 {
	m := s.last
	if c.stale {
		m = s.prev
	}
	if v, ok := m[c.key]; ok {
		return v
	}
	// A value no server hands out during a run: never matches.
	return 0x7fff000000000000 + uint64(index)
}

func (s *side) build(b *Batch, markers bool) prepared {
	var p prepared
	versions := 0
	for i, r := range b.Requests {
		start := len(p.buf)
		for _, sg := range r.segs {
			if sg.cas == nil {
				p.buf = append(p.buf, sg.lit...)
			} else if sg.cas.bin {
				p.buf = binary.BigEndian.AppendUint64(p.buf, s.casValue(sg.cas, r.Index))
			} else {
				p.buf = strconv.AppendUint(p.buf, s.casValue(sg.cas, r.Index), 10)
			}
		}
		p.reqs = append(p.reqs, [2]int{start, len(p.buf)})
		versions += r.Versions
		if !markers {
			continue
		}
		e := expect{first: i, last: i}
		switch {
		case r.Closes:
			e.eof = true
		case b.Binary:
			e.opaque = opaqueMarker | uint32(r.Index)&opaqueMask
			p.buf = append(p.buf, header(opNoop, 0, 0, 0, e.opaque)...)
		default:
			e.versions = r.Versions + 1
			p.buf = append(p.buf, "version\r\n"...)
		}
		p.exps = append(p.exps, e)
	}
	if !markers {
		e := expect{first: 0, last: len(b.Requests) - 1}
		switch {
		case b.Closes:
			e.eof = true
		case b.Binary:
			e.opaque = opaqueSentinel | uint32(b.Index)&opaqueMask
			p.buf = append(p.buf, header(opNoop, 0, 0, 0, e.opaque)...)
		default:
			e.versions = versions + 1
			p.buf = append(p.buf, "version\r\n"...)
		}
		p.exps = append(p.exps, e)
	}
	return p
}

type result struct {
	segs     [][]byte
	clocks   [][]int64 // per segment, see side.clocks
	closed   bool
	timedOut bool
	err      error
}

func (s *side) conn(slot int) (net.Conn, error) {
	if c := s.conns[slot]; c != nil {
		return c, nil
	}
	c, err := net.DialTimeout("tcp", s.t.Addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("difftest: connecting to %s at %s: %w", s.t.Name, s.t.Addr, err)
	}
	s.conns[slot] = c
	return c, nil
}

// exec writes a batch, cut as planned, while reading its replies.
func (s *side) exec(b *Batch, p prepared, timeout time.Duration) result {
	c, err := s.conn(b.Slot)
	if err != nil {
		return result{err: err}
	}
	deadline := time.Now().Add(timeout)
	c.SetDeadline(deadline)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		s.write(c, b, p.buf)
	}()
	res := s.read(c, b, p.exps)
	if res.closed || res.timedOut {
		c.Close() // also unblocks the writer
		s.conns[b.Slot] = nil
	}
	<-wdone
	return res
}

func (s *side) write(c net.Conn, b *Batch, buf []byte) {
	at := 0
	// Both sides write the same batch at once, and their buffers differ in
	// length (CAS values are spliced in): never append to the shared cuts.
	cuts := append(append(make([]int, 0, len(b.cuts)+1), b.cuts...), len(buf))
	for _, cut := range cuts {
		if cut > len(buf) {
			cut = len(buf)
		}
		if cut <= at {
			continue
		}
		if d, ok := b.sleeps[at]; ok {
			time.Sleep(d)
		}
		if _, err := c.Write(buf[at:cut]); err != nil {
			return // closed by the server; the reader reports it
		}
		at = cut
	}
}

// read collects the replies of a batch into one normalised segment per
// expect.
func (s *side) read(c net.Conn, b *Batch, exps []expect) result {
	var res result
	var buf []byte
	var cur []byte
	pos, ei, versions := 0, 0, 0
	tmp := make([]byte, 256*1024)
	s.clocks = nil
	s.acc = statsAcc{} // nothing left over from a reply cut short
	finish := func() {
		res.segs = append(res.segs, cur)
		res.clocks = append(res.clocks, s.clocks)
		s.clocks = nil
		cur = nil
		versions = 0
		ei++
	}
	var readErr error
	for ei < len(exps) {
		// Consume every complete item in the buffer.
		for ei < len(exps) {
			rest := buf[pos:]
			var n int
			if b.Binary {
				if len(rest) >= 1 && rest[0] != magicReply {
					// Out of step: nothing more can be parsed, and the
					// connection can not be used again.
					cur = append(cur, fmt.Sprintf("<garbage %q>", rest)...)
					finish()
					for ei < len(exps) {
						cur = []byte("<not reached>")
						finish()
					}
					res.closed = true
					return res
				}
				n = binItem(rest)
			} else {
				n = textItem(rest)
			}
			if n == 0 {
				break
			}
			item := rest[:n]
			pos += n
			e := exps[ei]
			if b.Binary {
				cur = append(cur, s.normBinary(item, b.keyOf)...)
				if !e.eof && item[1] == opNoop && binary.BigEndian.Uint32(item[12:]) == e.opaque {
					finish()
				}
			} else {
				cur = append(cur, s.normText(item)...)
				if bytes.HasPrefix(item, []byte("VERSION ")) {
					versions++
					if !e.eof && versions == e.versions {
						finish()
					}
				}
			}
		}
		if ei >= len(exps) {
			break
		}
		if readErr != nil {
			if pos < len(buf) {
				cur = append(cur, fmt.Sprintf("<partial %q>", buf[pos:])...)
			}
			if errors.Is(readErr, os.ErrDeadlineExceeded) {
				res.timedOut = true
				cur = append(cur, "<timeout>"...)
			} else {
				res.closed = true
				if !errors.Is(readErr, io.EOF) && !isReset(readErr) {
					cur = append(cur, fmt.Sprintf("<read error %v>", readErr)...)
				}
				cur = append(cur, "<closed>"...)
			}
			finish()
			for ei < len(exps) {
				cur = []byte("<closed>")
				finish()
			}
			return res
		}
		if pos == len(buf) {
			buf, pos = buf[:0], 0
		}
		var n int
		n, readErr = c.Read(tmp)
		buf = append(buf, tmp[:n]...)
	}
	if pos < len(buf) {
		// More than the batch asked for: show it with the last segment.
		last := len(res.segs) - 1
		res.segs[last] = append(res.segs[last], fmt.Sprintf("<extra %q>", buf[pos:])...)
	}
	return res
}

// clockDiff compares the clock-dependent meta values of one segment (t,
// l, me's exp and la; "~" in the normalised text): they must pair up and
// differ by at most 2 s. Each is the difference of two clock readings (the
// store or access, and the reply), and each server's clock ticks on its
// own, so each reading may fall on either side of a tick: 1 s apiece (seen:
// t-2591997 against t-2591999 on a loaded machine).
func clockDiff(a, b []int64) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d clock values against %d", len(a), len(b))
	}
	for i := range a {
		if a[i] >= 1<<31 && b[i] >= 1<<31 {
			// A TTL memcached computes as exptime - now in 32 bits for
			// an item past its time: wrapped around, and offset by each
			// server's own start time. Both must have wrapped.
			continue
		}
		if d := a[i] - b[i]; d > 2 || d < -2 {
			return fmt.Sprintf("clock value %d (t, l, exp or la; \"~\" in the replies) is %d against %d, more than 2 s apart", i+1, a[i], b[i])
		}
	}
	return ""
}

func isReset(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return strings.Contains(op.Err.Error(), "connection reset")
	}
	return false
}

// textItem returns the length of the first complete reply item in buf (a
// line, or a VALUE line with its data block), or 0 if it is incomplete.
func textItem(buf []byte) int {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return 0
	}
	if bytes.HasPrefix(buf, []byte("VALUE ")) || bytes.HasPrefix(buf, []byte("VA ")) {
		f := strings.Fields(string(buf[:i]))
		sizeField := 3
		if f[0] == "VA" {
			sizeField = 1
		}
		if len(f) > sizeField {
			if size, err := strconv.Atoi(f[sizeField]); err == nil && size >= 0 {
				need := i + 1 + size + 2
				if len(buf) < need {
					return 0
				}
				return need
			}
		}
	}
	return i + 1
}

// binItem returns the length of the first complete packet in buf, or 0.
func binItem(buf []byte) int {
	if len(buf) < 24 {
		return 0
	}
	n := 24 + int(binary.BigEndian.Uint32(buf[8:]))
	if len(buf) < n {
		return 0
	}
	return n
}

// ordinal maps a CAS value of key to its rank among the values seen for
// key (1 for the first), so replies compare equal when both servers hand
// out distinct values for distinct versions of an item, and the same value
// for the same version.
func (s *side) ordinal(key string, cas uint64) int {
	m := s.ord[key]
	if m == nil {
		m = map[uint64]int{}
		s.ord[key] = m
	}
	o, ok := m[cas]
	if !ok {
		o = len(m) + 1
		m[cas] = o
	}
	return o
}

// saw records the CAS value of the current version of key.
func (s *side) saw(key string, cas uint64) {
	if v, ok := s.last[key]; ok && v != cas {
		s.prev[key] = v
	}
	s.last[key] = cas
}

// normText normalises one text reply item.
func (s *side) normText(item []byte) []byte {
	switch {
	case bytes.HasPrefix(item, []byte("VALUE ")):
		i := bytes.IndexByte(item, '\n')
		line := item[:i+1]
		eol := "\n"
		if bytes.HasSuffix(line, []byte("\r\n")) {
			eol = "\r\n"
		}
		f := strings.Split(strings.TrimRight(string(line), "\r\n"), " ")
		if len(f) != 5 {
			return item
		}
		cas, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil {
			return item
		}
		o := s.ordinal(f[1], cas)
		s.saw(f[1], cas)
		out := fmt.Appendf(nil, "VALUE %s %s %s cas#%d%s", f[1], f[2], f[3], o, eol)
		return append(out, item[i+1:]...)
	case bytes.HasPrefix(item, []byte("STAT ")):
		f := strings.SplitN(strings.TrimRight(string(item), "\r\n"), " ", 3)
		if len(f) == 3 {
			v, keep := s.stat(f[1], f[2])
			if !keep {
				return nil
			}
			return []byte("STAT " + f[1] + " " + v + "\r\n")
		}
	case string(item) == "END\r\n" && s.acc.active:
		var out []byte
		for _, st := range s.statsEnd() {
			out = append(out, "STAT "+st[0]+" "+st[1]+"\r\n"...)
		}
		return append(out, item...)
	case bytes.HasPrefix(item, []byte("VERSION ")):
		return []byte("VERSION *\r\n")
	case bytes.HasPrefix(item, []byte("ME ")):
		return s.normMetaDebug(item)
	case isMetaReply(item):
		return s.normMeta(item)
	}
	return item
}

// isMetaReply tells a meta command's status line (HD, VA, EN, NF, NS, EX).
func isMetaReply(item []byte) bool {
	if len(item) < 3 {
		return false
	}
	switch string(item[:2]) {
	case "HD", "VA", "EN", "NF", "NS", "EX":
		return item[2] == ' ' || item[2] == '\r' || item[2] == '\n'
	}
	return false
}

// normMeta normalises a meta status line (and a VA's data block): a CAS
// value (c) becomes its ordinal for the key the line names (k, decoded
// when followed by b), and the clock-dependent t and l values a '*'.
func (s *side) normMeta(item []byte) []byte {
	i := bytes.IndexByte(item, '\n')
	line, rest := item[:i+1], item[i+1:]
	eol := "\n"
	if bytes.HasSuffix(line, []byte("\r\n")) {
		eol = "\r\n"
	}
	f := strings.Split(strings.TrimRight(string(line), "\r\n"), " ")
	key := ""
	for j, tok := range f {
		if j > 0 && strings.HasPrefix(tok, "k") {
			key = tok[1:]
			if j+1 < len(f) && f[j+1] == "b" {
				if k, err := base64.StdEncoding.DecodeString(key); err == nil {
					key = string(k)
				}
			}
		}
	}
	for j := 1; j < len(f); j++ {
		tok := f[j]
		if len(tok) < 2 || (f[0] == "VA" && j == 1) {
			continue
		}
		n, err := strconv.ParseUint(tok[1:], 10, 64)
		if err != nil {
			continue
		}
		switch tok[0] {
		case 'c':
			if key == "" {
				f[j] = "c#?"
				continue
			}
			f[j] = fmt.Sprintf("c#%d", s.ordinal(key, n))
			s.saw(key, n)
		case 't', 'l':
			f[j] = tok[:1] + "~"
			s.clocks = append(s.clocks, int64(n))
		}
	}
	return append([]byte(strings.Join(f, " ")+eol), rest...)
}

// normMetaDebug normalises me's answer: the CAS value to its ordinal, the
// clock-dependent exp (unless -1) and la, and the class and size, which
// follow each server's own item layout.
func (s *side) normMetaDebug(item []byte) []byte {
	f := strings.Split(strings.TrimRight(string(item), "\r\n"), " ")
	if len(f) < 2 {
		return item
	}
	key := f[1]
	for j, tok := range f[2:] {
		name, val, ok := strings.Cut(tok, "=")
		if !ok {
			continue
		}
		switch name {
		case "exp", "la":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && !(name == "exp" && n == -1) {
				f[j+2] = name + "=~"
				s.clocks = append(s.clocks, n)
			}
		case "cls", "size":
			f[j+2] = name + "=*"
		case "cas":
			if n, err := strconv.ParseUint(val, 10, 64); err == nil {
				if k, err := base64.StdEncoding.DecodeString(key); err == nil && s.ord[string(k)] != nil && s.ord[key] == nil {
					key = string(k)
				}
				f[j+2] = fmt.Sprintf("cas=#%d", s.ordinal(key, n))
			}
		}
	}
	return []byte(strings.Join(f, " ") + "\r\n")
}

// statPacket is a STAT reply packet like h (its header) carrying name and
// value, for the summary lines of a normalised STAT reply.
func statPacket(h []byte, name, value string) []byte {
	out := append([]byte{}, h[:24]...)
	binary.BigEndian.PutUint16(out[2:], uint16(len(name)))
	out[4] = 0
	binary.BigEndian.PutUint32(out[8:], uint32(len(name)+len(value)))
	return append(append(out, name...), value...)
}

// normBinary normalises one binary reply packet.
func (s *side) normBinary(p []byte, keyOf map[uint32]string) []byte {
	op := p[1]
	keylen := int(binary.BigEndian.Uint16(p[2:]))
	extlen := int(p[4])
	status := binary.BigEndian.Uint16(p[6:])
	opaque := binary.BigEndian.Uint32(p[12:])
	cas := binary.BigEndian.Uint64(p[16:])
	body := p[24:]
	switch op {
	case opSaslList, opSaslAuth, opSaslStep:
		// memcached without SASL: "Unknown command"; memhive with
		// --auth none: success. Only the packet's presence is compared.
		const note = "<sasl reply>"
		h := make([]byte, 24)
		h[0], h[1] = p[0], op
		binary.BigEndian.PutUint32(h[8:], uint32(len(note)))
		binary.BigEndian.PutUint32(h[12:], opaque)
		return append(h, note...)
	}
	if cas != 0 {
		key := keyOf[opaque]
		o := s.ordinal(key, cas)
		if status == 0 {
			s.saw(key, cas)
		}
		cas = uint64(o)
	}
	if status == 0 && op == opVersion {
		body = []byte("*")
	}
	if status == 0 && op == opStat && extlen+keylen <= len(body) {
		if keylen == 0 {
			// The empty packet that ends a STAT reply: the summary
			// lines first, as packets of their own.
			var out []byte
			for _, st := range s.statsEnd() {
				out = append(out, statPacket(p[:24], st[0], st[1])...)
			}
			return append(out, p...)
		}
		v, keep := s.stat(string(body[extlen:extlen+keylen]), string(body[extlen+keylen:]))
		if !keep {
			return nil
		}
		body = append(append([]byte{}, body[:extlen+keylen]...), v...)
	}
	out := append([]byte{}, p[:24]...)
	binary.BigEndian.PutUint32(out[8:], uint32(len(body)))
	binary.BigEndian.PutUint64(out[16:], cas)
	return append(out, body...)
}

// KindCounts renders per-kind request counts, most frequent first.
func (s Summary) KindCounts() string { return kindCounts(s.Kinds, " ", "%s=%d") }

// kindCounts renders counts by kind, most frequent first, each with format
// (kind, count), joined by sep.
func kindCounts(kinds map[string]int, sep, format string) string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range kinds {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].k < all[j].k
	})
	var sb strings.Builder
	for i, x := range all {
		if i > 0 {
			sb.WriteString(sep)
		}
		fmt.Fprintf(&sb, format, x.k, x.n)
	}
	return sb.String()
}

// checkState reads every key with "mg <key> v f u" (u: no LRU bump) on a
// separate connection of each side and compares the replies.
func checkState(a, b *side, keys []string) error {
	var req []byte
	for _, k := range keys {
		req = fmt.Appendf(req, "mg %s v f u\r\n", k)
	}
	req = append(req, "mn\r\n"...)
	read := func(s *side) ([]byte, error) {
		c, err := net.DialTimeout("tcp", s.t.Addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		var out []byte
		tmp := make([]byte, 1<<20)
		for !bytes.HasSuffix(out, []byte("MN\r\n")) {
			n, err := c.Read(tmp)
			out = append(out, tmp[:n]...)
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	ra, err := read(a)
	if err != nil {
		return err
	}
	rb, err := read(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(ra, rb) {
		off := firstDiff(ra, rb)
		lo := off - 200
		if lo < 0 {
			lo = 0
		}
		return fmt.Errorf("state differs at byte %d:\n%s: %q\n%s: %q", off, a.t.Name, ra[lo:min(off+300, len(ra))], b.t.Name, rb[lo:min(off+300, len(rb))])
	}
	return nil
}

// ---------------------------------------------------------------------------
// Stats replies.
//
// A stats reply is compared field by field after the rewriting below. Every
// field name is kept (so a name memcached prints and memhive lacks is a
// difference), and so is the value of every field the traffic determines;
// the values that legitimately differ between two correct servers become
// "*". Per-class and per-connection lines are folded into summary lines at
// the end of the reply, since the two servers number their size classes
// and connections differently.

// exactStats are the "stats" fields whose values the generated traffic
// determines: they must be equal.
var exactStats = map[string]bool{
	"cmd_get": true, "get_hits": true, "get_misses": true,
	"cmd_set": true, "cmd_flush": true, "cmd_touch": true, "cmd_meta": true,
	"touch_hits": true, "touch_misses": true,
	"delete_hits": true, "delete_misses": true,
	"incr_hits": true, "incr_misses": true, "decr_hits": true, "decr_misses": true,
	"cas_hits": true, "cas_misses": true, "cas_badval": true,
	"total_items": true, "store_too_large": true, "store_no_memory": true,
	"evictions": true, "evicted_unfetched": true,
	"limit_maxbytes": true, "threads": true, "pointer_size": true,
	"accepting_conns": true, "hash_is_expanding": true, "malloc_fails": true,
	// What became of expired and flushed items: with both servers
	// freeing them only on lookup (see anchors.go), the traffic decides.
	// memhive's reclaimed is always 0 (it has no LRU tail reclaim), and
	// so is memcached's when no dead item is ever at an LRU tail; the
	// crawlers are off on both.
	"get_expired": true, "get_flushed": true, "curr_items": true,
	"reclaimed": true, "expired_unfetched": true, "crawler_reclaimed": true,
}

// perNodeStats are the exactStats counters whose values, on a node of a
// cluster (Options.PerNodeStats), are that node's own: the commands it ran
// and the items it holds, as each server of a memcached pool counts its
// own. A node forwards the requests for the keys another node owns, and
// the owner runs and counts them, so the client's node counts only its
// share; these are compared by name, as are the per-class sums that count
// the same per slab class (statsEnd): "stats items"' number and "stats
// slabs"' slabsSummed. Whatever every node does alike keeps its value:
// cmd_flush (a flush runs on every node), limit_maxbytes (each node has
// its whole --memory), the eviction and reclaim counters (zero on every
// node: no memory pressure, no background reclaim).
//
// Per-node counts are the right answer for a client: one that asks every
// server of its list for stats and sums them (Dalli's stats,
// libmemcached's memcached_stat) gets the cluster's totals only if each
// node answers for itself; the analytics API answers for the whole cache.
var perNodeStats = map[string]bool{
	"cmd_get": true, "get_hits": true, "get_misses": true, "get_expired": true, "get_flushed": true,
	"cmd_set": true, "cmd_touch": true, "cmd_meta": true, "touch_hits": true, "touch_misses": true,
	"delete_hits": true, "delete_misses": true,
	"incr_hits": true, "incr_misses": true, "decr_hits": true, "decr_misses": true,
	"cas_hits": true, "cas_misses": true, "cas_badval": true,
	"total_items": true, "curr_items": true, "store_too_large": true,
}

// maintainerStats are the fields memcached lists only with its LRU
// maintainer thread, which the test runs without (see anchors.go):
// memhive lists them whatever its configuration, as memcached does by
// default, so they are left out on both sides. General stats and
// per-class "stats items" fields alike.
var maintainerStats = map[string]bool{
	"lru_maintainer_juggles": true, "evicted_active": true, "moves_to_cold": true,
	"moves_to_warm": true, "moves_within_lru": true, "direct_reclaims": true,
	"lru_bumps_dropped": true, "number_hot": true, "number_warm": true,
	"number_cold": true, "number_temp": true, "age_hot": true, "age_warm": true,
	"hits_to_hot": true, "hits_to_warm": true, "hits_to_cold": true, "hits_to_temp": true,
}

// settingsDiffer are the "stats settings" fields whose values differ on
// purpose (different machinery, or the port each server listens on);
// every other setting must have memcached's value.
var settingsDiffer = map[string]bool{
	"tcpport": true, "oldest": true, "lru_crawler_sleep": true, "hash_algorithm": true,
	"slab_chunk_max": true, "num_threads_per_udp": true, "dump_enabled": true, "growth_factor": true, "chunk_size": true,
	"slab_automove_ratio": true, "slab_automove_window": true, "hot_lru_pct": true,
	"warm_lru_pct": true, "hot_max_factor": true, "warm_max_factor": true,
	"temp_lru": true, "temporary_ttl": true, "auth_enabled_sasl": true,
}

// memhiveOnly are fields memhive prints that memcached 1.6.18 does not:
// allowed, and left out of the comparison.
var memhiveOnly = map[string]bool{"gomaxprocs": true, "slab_page_size": true,
	"forwarded_requests": true, "forward_errors": true, "handed_over_items": true}

// itemsSummed are the per-class "stats items" counters whose sums over the
// classes the traffic determines: number (curr_items), and the eviction
// and reclaim counters (no memory pressure, no background reclaim: all
// zero). The other per-class items fields follow the allocator
// (mem_requested) or the clock (age, evicted_time), or belong to the
// segmented LRU (maintainerStats).
var itemsSummed = map[string]bool{
	"number":  true,
	"evicted": true, "evicted_nonzero": true, "outofmemory": true, "tailrepairs": true,
	"evicted_unfetched": true, "reclaimed": true, "expired_unfetched": true, "crawler_reclaimed": true,
	"crawler_items_checked": true, "lrutail_reflocked": true,
}

// slabsSummed are the per-class "stats slabs" counters, compared as sums
// over the classes: memcached counts these command outcomes by the class
// of the item concerned, and the two servers' classes differ, but each
// sum is the server's count for the whole cache. The other per-class
// fields are the geometry, compared by name only: chunk_size,
// chunks_per_page, total_pages, total_chunks, used_chunks, free_chunks,
// free_chunks_end (and active_slabs and total_malloced) follow the
// allocator.
var slabsSummed = map[string]bool{
	"get_hits": true, "cmd_set": true, "delete_hits": true, "incr_hits": true,
	"decr_hits": true, "cas_hits": true, "cas_badval": true, "touch_hits": true,
}

// statsAcc collects what a stats reply folds into its summary lines.
type statsAcc struct {
	active bool
	// fields per class ("items:3:", "3:") or connection ("15:").
	fields map[string][]string
	sums   map[string]uint64
	states []string // stats conns: every connection's state
}

// stat normalises one stats field: it returns the value to compare ("*"
// when it legitimately differs), or false to leave the line out (folded
// into the summary, or a memhive-only field).
func (s *side) stat(name, value string) (string, bool) {
	a := &s.acc
	if !a.active {
		*a = statsAcc{active: true, fields: map[string][]string{}, sums: map[string]uint64{}}
	}
	if memhiveOnly[name] {
		return "", false
	}
	if prefix, field, ok := splitClass(name); ok {
		if strings.HasPrefix(prefix, "items:") && maintainerStats[field] {
			return "", false
		}
		a.fields[prefix] = append(a.fields[prefix], field)
		n, err := strconv.ParseUint(value, 10, 64)
		switch {
		case strings.HasPrefix(prefix, "items:") && itemsSummed[field],
			!strings.HasPrefix(prefix, "items:") && slabsSummed[field]:
			if err != nil {
				a.sums[field] = 1 << 63 // not a number: never equal to a sum
			}
			a.sums[field] += n
		case field == "state":
			// An idle connection of memcached's is conn_read, or
			// conn_new_cmd when its last wake-up ended by yielding after
			// reqs_per_event requests (timing), or conn_waiting: the
			// same state for a client. One whose replies the test has
			// read may still be conn_mwrite (or conn_write): memcached's
			// worker changes the state after its sendmsg returns, and the
			// client can read the bytes and ask first (timing).
			switch value {
			case "conn_new_cmd", "conn_waiting", "conn_mwrite", "conn_write":
				value = "conn_read"
			}
			a.states = append(a.states, value)
		}
		return "", false
	}
	switch {
	case maintainerStats[name]:
		return "", false
	case s.perNode && perNodeStats[name]:
		return "*", true
	case exactStats[name]:
		return value, true
	case settingsValue(name):
		return value, true
	}
	return "*", true
}

// settingsValue tells a "stats settings" field whose value must match.
// Settings are told apart from general stats by name; the general ones
// not in exactStats are left out.
func settingsValue(name string) bool {
	if settingsDiffer[name] {
		return false
	}
	switch name {
	case "maxbytes", "maxconns", "udpport", "verbosity", "oldest", "evictions",
		"domain_socket", "umask", "shutdown_command", "num_threads",
		"stat_key_prefix", "detail_enabled", "reqs_per_event", "cas_enabled",
		"tcp_backlog", "binding_protocol", "auth_enabled_ascii", "item_size_max",
		"maxconns_fast", "hashpower_init", "slab_reassign", "slab_automove",
		"lru_crawler", "lru_crawler_tocrawl", "tail_repair_time", "flush_enabled",
		"idle_timeout", "watcher_logbuf_size", "worker_logbuf_size",
		"read_buf_mem_limit", "track_sizes", "inline_ascii_response",
		"ext_item_size", "ext_item_age", "ext_low_ttl", "ext_recache_rate",
		"ext_wbuf_size", "ext_compact_under", "ext_drop_under", "ext_max_sleep",
		"ext_max_frag", "slab_automove_freeratio", "ext_drop_unread",
		"ssl_enabled", "ssl_chain_cert", "ssl_key", "ssl_verify_mode",
		"ssl_keyformat", "ssl_ciphers", "ssl_ca_cert", "ssl_wbuf_size",
		"ssl_session_cache", "ssl_kernel_tls", "ssl_min_version",
		"num_napi_ids", "memory_file", "sizes_status", "inter":
		return true
	}
	return false
}

// splitClass splits "items:3:number" into ("items:3:", "number") and
// "3:chunk_size" or "15:state" into ("3:", ...): per-class and
// per-connection fields.
func splitClass(name string) (prefix, field string, ok bool) {
	rest := strings.TrimPrefix(name, "items:")
	i := strings.IndexByte(rest, ':')
	if i <= 0 {
		return "", "", false
	}
	if _, err := strconv.Atoi(rest[:i]); err != nil {
		return "", "", false
	}
	cut := len(name) - len(rest) + i + 1
	return name[:cut], name[cut:], true
}

// statsEnd returns the summary lines of the stats reply just read, as
// name/value pairs, and forgets it.
func (s *side) statsEnd() [][2]string {
	a := &s.acc
	if !a.active {
		return nil
	}
	var out [][2]string
	// The distinct field lists of the classes (or connections), each
	// once: every class must list the same fields as memcached's.
	kinds := map[string]bool{}
	for prefix, f := range a.fields {
		kind := "class"
		if strings.HasPrefix(prefix, "items:") {
			kind = "items-class"
		}
		kinds[kind+" "+strings.Join(f, ",")] = true
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		kind, list, _ := strings.Cut(k, " ")
		out = append(out, [2]string{"fields-of-each-" + kind, list})
	}
	var names []string
	for n := range a.sums {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := strconv.FormatUint(a.sums[n], 10)
		if s.perNode && (n == "number" || slabsSummed[n]) {
			v = "*" // this node's items and work: see perNodeStats
		}
		out = append(out, [2]string{"sum-over-classes:" + n, v})
	}
	if len(a.states) > 0 {
		st := append([]string(nil), a.states...)
		sort.Strings(st)
		out = append(out, [2]string{"connection-states", strings.Join(st, ",")})
	}
	s.acc = statsAcc{}
	return out
}
