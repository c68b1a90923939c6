//go:build !race

package server

import (
	"testing"

	"github.com/memhive/memhive/tenancy"
)

// The request path, parse to reply, allocates nothing for a get hit, a set
// and a binary get hit once a connection's buffers have grown.
func TestRequestPathAllocatesNothing(t *testing.T) {
	s := newTestServer(t)
	cs := testConn(s)
	binGet := []byte{0x80, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'k', 'e', 'y'}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"ascii set", []byte("set key 0 0 5\r\nhello\r\n")},
		{"ascii get hit", []byte("get key\r\n")},
		{"ascii multi-get", []byte("gets key key nope\r\n")},
		{"binary get hit", binGet},
		{"meta set", []byte("ms key 5 T0 F3 c k O1\r\nhello\r\n")},
		{"meta get hit", []byte("mg key v f t c k s h l O12\r\n")},
		{"meta get miss, base64 key", []byte("mg bm9wZQ== b v k\r\n")},
		{"meta arith", []byte("ma cnt N0 J1 v c t\r\n")},
		{"meta delete miss", []byte("md nope q k\r\nmn\r\n")},
	} {
		cs.proto = protoUnknown
		run := func() {
			n, closed := s.process(cs, tc.in)
			if n != len(tc.in) || closed {
				t.Fatalf("%s: consumed %d of %d, closed %v", tc.name, n, len(tc.in), closed)
			}
			cs.out = cs.out[:0]
			cs.proto = protoUnknown
		}
		run()
		if a := testing.AllocsPerRun(200, run); a != 0 {
			t.Errorf("%s: %.1f allocations per request, want 0", tc.name, a)
		}
	}
}

func BenchmarkProcessASCIIGetHit(b *testing.B) {
	s := newTestServer(b)
	cs := testConn(s)
	s.process(cs, []byte("set key 0 0 100\r\n"+string(make([]byte, 100))+"\r\n"))
	in := []byte("get key\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		s.process(cs, in)
		cs.out = cs.out[:0]
	}
}

func BenchmarkProcessASCIISet(b *testing.B) {
	s := newTestServer(b)
	cs := testConn(s)
	in := []byte("set key 0 0 100\r\n" + string(make([]byte, 100)) + "\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		s.process(cs, in)
		cs.out = cs.out[:0]
	}
}

func BenchmarkProcessMetaGetHit(b *testing.B) {
	s := newTestServer(b)
	cs := testConn(s)
	s.process(cs, []byte("ms key 100\r\n"+string(make([]byte, 100))+"\r\n"))
	cs.out = cs.out[:0]
	in := []byte("mg key v f\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		s.process(cs, in)
		cs.out = cs.out[:0]
	}
}

func BenchmarkProcessMetaSet(b *testing.B) {
	s := newTestServer(b)
	cs := testConn(s)
	in := []byte("ms key 100 T0\r\n" + string(make([]byte, 100)) + "\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		s.process(cs, in)
		cs.out = cs.out[:0]
	}
}

// A routing node serves the keys it owns on the same path: nothing more
// is allocated for them.
func TestOwnedKeysAllocateNothing(t *testing.T) {
	owners := &tenancy.Owners{}
	owners.Set([]tenancy.Node{{Name: "self", Addr: "127.0.0.1:1"}, {Name: "other", Addr: "127.0.0.1:2"}}, "self")
	s := New(Config{Listen: "127.0.0.1:0", Route: &RouteConfig{Owners: owners}}, clusterTenants(t))
	cs := newConn()
	cs.stats = &tenancy.ConnShard{}
	s.bind(cs, s.tenants.Cache(1), nil)
	k := keyOwnedBy(t, owners, "self", "key")
	k2 := keyOwnedBy(t, owners, "self", "other")
	binGet := binReq(0x00, 0, nil, []byte(k), nil)
	for _, in := range [][]byte{
		[]byte("set " + k + " 0 0 5\r\nhello\r\n"),
		[]byte("get " + k + "\r\n"),
		[]byte("gets " + k + " " + k2 + "\r\n"),
		binGet,
		[]byte("mg " + k + " v f t c k\r\n"),
		[]byte("ma " + k2 + " N0 J1 v\r\n"),
	} {
		run := func() {
			cs.proto = protoUnknown
			n, closed := s.process(cs, in)
			if n != len(in) || closed || cs.queue.n != 0 {
				t.Fatalf("%q: consumed %d, closed %v, forwarded %d", in, n, closed, cs.queue.n)
			}
			cs.out = cs.out[:0]
		}
		run()
		if a := testing.AllocsPerRun(200, run); a != 0 {
			t.Errorf("%q: %.1f allocations per request, want 0", in, a)
		}
	}
}
