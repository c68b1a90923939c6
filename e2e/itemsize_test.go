package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// TestItemSizeLimit pins the item size boundary on every protocol, with the
// default limit and with --max-item-size 2m: key + value must be less than
// the limit (MemCachier's guide: "must still be less than 1MB", also after
// append and prepend). One byte under it is stored and read back whole;
// the limit itself is refused with each protocol's too-large answer, and a
// refused append or prepend leaves the item as it was.
func TestItemSizeLimit(t *testing.T) {
	if againstMemcached(t) {
		t.Skip("memcached counts its item header in the limit; this is memhive's boundary")
	}
	for _, c := range []struct {
		flag  string
		limit int
	}{{"", 1 << 20}, {"2m", 2 << 20}} {
		t.Run(fmt.Sprintf("limit=%d", c.limit), func(t *testing.T) {
			s := startServer(t, serverConfig{memoryMiB: 64, maxItemSize: c.flag})
			checkTextLimit(t, s.Addr, c.limit)
			checkMetaLimit(t, s.Addr, c.limit)
			checkBinaryLimit(t, s.Addr, c.limit)
			checkClientLimit(t, s.Addr, c.limit)
		})
	}
}

// lineConn is a text-protocol connection that reads replies line by line.
type lineConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{t: t, c: c, r: bufio.NewReaderSize(c, 1<<16)}
}

// ask sends a command line and, when value is not nil, its data block,
// and returns the first reply line without its "\r\n".
func (l *lineConn) ask(line string, value []byte) string {
	l.t.Helper()
	l.c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append([]byte(line+"\r\n"), value...)
	if value != nil {
		msg = append(msg, "\r\n"...)
	}
	if _, err := l.c.Write(msg); err != nil {
		l.t.Fatalf("%s: write: %v", line, err)
	}
	return l.line()
}

func (l *lineConn) line() string {
	l.t.Helper()
	s, err := l.r.ReadString('\n')
	if err != nil {
		l.t.Fatalf("read: %v (after %q)", err, s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// length returns the length of key's value read with a text get, or -1 on
// a miss.
func (l *lineConn) length(key string) int {
	l.t.Helper()
	head := l.ask("get "+key, nil)
	if head == "END" {
		return -1
	}
	var k string
	var flags, n int
	if _, err := fmt.Sscanf(head, "VALUE %s %d %d", &k, &flags, &n); err != nil || k != key {
		l.t.Fatalf("get %s: %q", key, head)
	}
	if _, err := io.CopyN(io.Discard, l.r, int64(n)+2); err != nil {
		l.t.Fatal(err)
	}
	if end := l.line(); end != "END" {
		l.t.Fatalf("get %s: %q after the value, want END", key, end)
	}
	return n
}

const tooLargeLine = "SERVER_ERROR object too large for cache"

func checkTextLimit(t *testing.T, addr string, limit int) {
	l := dialLines(t, addr)
	key := "text-key"
	most := limit - len(key) - 1 // the largest value stored under key
	val := bytes.Repeat([]byte("v"), limit)
	if got := l.ask(fmt.Sprintf("set %s 0 0 %d", key, most), val[:most]); got != "STORED" {
		t.Fatalf("text set of key+value = limit-1: %q, want STORED", got)
	}
	if n := l.length(key); n != most {
		t.Fatalf("text get after the largest set: %d bytes, want %d", n, most)
	}
	if got := l.ask(fmt.Sprintf("set %s 0 0 %d", key, most+1), val[:most+1]); got != tooLargeLine {
		t.Fatalf("text set of key+value = limit: %q, want %q", got, tooLargeLine)
	}
	// memcached drops the old value of a refused set, so a stale value
	// does not outlive the write.
	if n := l.length(key); n != -1 {
		t.Fatalf("text get after a refused set: %d bytes, want a miss", n)
	}
	for _, cmd := range []string{"append", "prepend"} {
		if got := l.ask(fmt.Sprintf("set %s 0 0 %d", key, most-10), val[:most-10]); got != "STORED" {
			t.Fatalf("text set: %q", got)
		}
		if got := l.ask(fmt.Sprintf("%s %s 0 0 11", cmd, key), val[:11]); got != tooLargeLine {
			t.Fatalf("text %s reaching the limit: %q, want %q", cmd, got, tooLargeLine)
		}
		if n := l.length(key); n != most-10 {
			t.Fatalf("text %s refused: the value is %d bytes, want %d", cmd, n, most-10)
		}
		if got := l.ask(fmt.Sprintf("%s %s 0 0 10", cmd, key), val[:10]); got != "STORED" {
			t.Fatalf("text %s to limit-1: %q, want STORED", cmd, got)
		}
		if n := l.length(key); n != most {
			t.Fatalf("text %s: the value is %d bytes, want %d", cmd, n, most)
		}
	}
}

func checkMetaLimit(t *testing.T, addr string, limit int) {
	l := dialLines(t, addr)
	key := "meta-key"
	most := limit - len(key) - 1
	val := bytes.Repeat([]byte("m"), limit)
	if got := l.ask(fmt.Sprintf("ms %s %d", key, most), val[:most]); got != "HD" {
		t.Fatalf("ms of key+value = limit-1: %q, want HD", got)
	}
	if got := l.ask(fmt.Sprintf("mg %s s", key), nil); got != fmt.Sprintf("HD s%d", most) {
		t.Fatalf("mg s after the largest ms: %q", got)
	}
	if got := l.ask(fmt.Sprintf("ms %s %d", key, most+1), val[:most+1]); got != tooLargeLine {
		t.Fatalf("ms of key+value = limit: %q, want %q", got, tooLargeLine)
	}
	if got := l.ask(fmt.Sprintf("ms %s %d", key, most-5), val[:most-5]); got != "HD" {
		t.Fatalf("ms: %q", got)
	}
	for _, mode := range []string{"MA", "MP"} {
		if got := l.ask(fmt.Sprintf("ms %s 6 %s", key, mode), val[:6]); got != tooLargeLine {
			t.Fatalf("ms %s reaching the limit: %q, want %q", mode, got, tooLargeLine)
		}
	}
	if got := l.ask(fmt.Sprintf("ms %s 5 MA", key), val[:5]); got != "HD" {
		t.Fatalf("ms MA to limit-1: %q, want HD", got)
	}
	if got := l.ask(fmt.Sprintf("mg %s s", key), nil); got != fmt.Sprintf("HD s%d", most) {
		t.Fatalf("mg s after the append: %q", got)
	}
}

// binaryStatus sends one binary request and returns its reply's status and
// body.
func binaryStatus(t *testing.T, c net.Conn, op byte, key string, extras, value []byte) (uint16, []byte) {
	t.Helper()
	var h [24]byte
	h[0], h[1] = 0x80, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	h[4] = byte(len(extras))
	binary.BigEndian.PutUint32(h[8:], uint32(len(extras)+len(key)+len(value)))
	msg := append(append(append(h[:], extras...), key...), value...)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var rh [24]byte
	if _, err := io.ReadFull(c, rh[:]); err != nil {
		t.Fatalf("opcode %#x: reading the reply: %v", op, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(rh[8:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint16(rh[6:]), body[int(rh[4])+int(binary.BigEndian.Uint16(rh[2:])):]
}

func checkBinaryLimit(t *testing.T, addr string, limit int) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const (
		opGet, opSet, opAppend, opPrepend = 0x00, 0x01, 0x0e, 0x0f
		stOK, stTooLarge                  = 0x00, 0x03
	)
	key := "binary-key"
	most := limit - len(key) - 1
	val := bytes.Repeat([]byte("b"), limit)
	extras := make([]byte, 8)
	if st, body := binaryStatus(t, c, opSet, key, extras, val[:most]); st != stOK {
		t.Fatalf("binary SET of key+value = limit-1: status %#x %q", st, body)
	}
	if st, body := binaryStatus(t, c, opGet, key, nil, nil); st != stOK || len(body) != most {
		t.Fatalf("binary GET after the largest SET: status %#x, %d bytes, want %d", st, len(body), most)
	}
	if st, body := binaryStatus(t, c, opSet, key, extras, val[:most+1]); st != stTooLarge || string(body) != "Too large." {
		t.Fatalf("binary SET of key+value = limit: status %#x %q, want 0x03 \"Too large.\"", st, body)
	}
	for _, op := range []byte{opAppend, opPrepend} {
		if st, _ := binaryStatus(t, c, opSet, key, extras, val[:most-10]); st != stOK {
			t.Fatalf("binary SET: status %#x", st)
		}
		if st, body := binaryStatus(t, c, op, key, nil, val[:11]); st != stTooLarge || string(body) != "Too large." {
			t.Fatalf("binary %#x reaching the limit: status %#x %q, want 0x03 \"Too large.\"", op, st, body)
		}
		if st, body := binaryStatus(t, c, opGet, key, nil, nil); st != stOK || len(body) != most-10 {
			t.Fatalf("binary %#x refused: status %#x, %d bytes, want %d", op, st, len(body), most-10)
		}
		if st, body := binaryStatus(t, c, op, key, nil, val[:10]); st != stOK {
			t.Fatalf("binary %#x to limit-1: status %#x %q", op, st, body)
		}
	}
}

// checkClientLimit is what a Go application sees through gomemcache.
func checkClientLimit(t *testing.T, addr string, limit int) {
	c := memcache.New(addr)
	c.Timeout = 10 * time.Second
	key := "client-key"
	most := limit - len(key) - 1
	val := bytes.Repeat([]byte("c"), limit)
	if err := c.Set(&memcache.Item{Key: key, Value: val[:most]}); err != nil {
		t.Fatalf("gomemcache Set of key+value = limit-1: %v", err)
	}
	if it, err := c.Get(key); err != nil || len(it.Value) != most {
		t.Fatalf("gomemcache Get after the largest Set: %v", err)
	}
	err := c.Set(&memcache.Item{Key: key, Value: val[:most+1]})
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("gomemcache Set of key+value = limit: %v, want a too-large error", err)
	}
	if err := c.Set(&memcache.Item{Key: key, Value: val[:most-10]}); err != nil {
		t.Fatal(err)
	}
	err = c.Append(&memcache.Item{Key: key, Value: val[:11]})
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("gomemcache Append reaching the limit: %v, want a too-large error", err)
	}
	if err := c.Prepend(&memcache.Item{Key: key, Value: val[:10]}); err != nil {
		t.Fatalf("gomemcache Prepend to limit-1: %v", err)
	}
}
