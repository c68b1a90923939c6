package server

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/memhive/memhive/engine"
	"github.com/memhive/memhive/internal/enginetest"
	"github.com/memhive/memhive/tenancy"
)

func newTestServer(t testing.TB) *Server {
	t.Helper()
	eng, err := enginetest.Memory(t, 16).NewEngine(engine.CacheConfig{LimitBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return New(Config{Listen: "127.0.0.1:0"}, tenancy.ForEngine(eng))
}

// testConn makes a connection's state as OnOpen does in local mode.
func testConn(s *Server) *conn {
	cs := newConn()
	cs.stats = &tenancy.ConnShard{}
	s.bind(cs, s.tenants.LocalCache(), nil)
	return cs
}

// feed runs input through a fresh connection in pieces of at most chunk
// bytes (0: all at once), as if each piece arrived in its own read, and
// returns everything written and whether the connection was closed.
func feed(s *Server, input []byte, chunk int) (string, bool) {
	cs := testConn(s)
	var buffered, written []byte
	for len(input) > 0 || len(buffered) > 0 {
		n := len(input)
		if chunk > 0 && n > chunk {
			n = chunk
		}
		buffered = append(buffered, input[:n]...)
		input = input[n:]
		consumed, closed := s.process(cs, buffered)
		written = append(written, cs.out...)
		cs.out = cs.out[:0]
		buffered = append(buffered[:0], buffered[consumed:]...)
		if closed {
			return string(written), true
		}
		if n == 0 {
			break
		}
	}
	return string(written), false
}

// transcript is a golden exchange from testdata/*.txt: lines starting
// with "> " are sent, "< " are expected back, both with "\r\n" appended;
// "<closed>" expects the server to close the connection.
type transcript struct {
	name        string
	send, want  []byte
	wantsClosed bool
}

func loadTranscripts(t *testing.T) []transcript {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/")
	}
	var out []transcript
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		tr := transcript{name: filepath.Base(f)}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<21)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "> "):
				tr.send = append(tr.send, unescape(line[2:])+"\r\n"...)
			case strings.HasPrefix(line, ">| "): // sent without a line ending
				tr.send = append(tr.send, unescape(line[3:])...)
			case strings.HasPrefix(line, "< "):
				tr.want = append(tr.want, unescape(line[2:])+"\r\n"...)
			case line == "<closed>":
				tr.wantsClosed = true
			}
		}
		fh.Close()
		out = append(out, tr)
	}
	return out
}

// unescape expands \xNN and \\ so transcripts can hold any byte.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			if s[i+1] == '\\' {
				b.WriteByte('\\')
				i++
				continue
			}
			if s[i+1] == 'x' && i+3 < len(s) {
				var v byte
				for _, c := range []byte(s[i+2 : i+4]) {
					v <<= 4
					switch {
					case c >= '0' && c <= '9':
						v |= c - '0'
					case c >= 'a' && c <= 'f':
						v |= c - 'a' + 10
					case c >= 'A' && c <= 'F':
						v |= c - 'A' + 10
					}
				}
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestTranscripts(t *testing.T) {
	for _, tr := range loadTranscripts(t) {
		t.Run(tr.name, func(t *testing.T) {
			// Whole, then split at every size from 1 byte up: the replies
			// must not depend on how the input was cut.
			for _, chunk := range []int{0, 1, 2, 3, 7, 13, 64} {
				s := newTestServer(t)
				got, closed := feed(s, tr.send, chunk)
				if got != string(tr.want) || closed != tr.wantsClosed {
					t.Fatalf("chunk %d:\n got %q (closed %v)\nwant %q (closed %v)", chunk, got, closed, tr.want, tr.wantsClosed)
				}
			}
		})
	}
}

func TestSwallowsRefusedDataAcrossReads(t *testing.T) {
	s := newTestServer(t)
	big := bytes.Repeat([]byte("x"), 2<<20)
	in := append([]byte("set big 0 0 2097152\r\n"), big...)
	in = append(in, "\r\nget big\r\n"...)
	got, closed := feed(s, in, 65536)
	want := "SERVER_ERROR object too large for cache\r\nEND\r\n"
	if got != want || closed {
		t.Fatalf("got %q closed %v", got, closed)
	}
}
