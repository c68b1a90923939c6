package codec

import (
	"bytes"
	"errors"
	"testing"
)

func TestPeerFramesRoundTrip(t *testing.T) {
	hello := AppendPeerHello(nil, "s3cret")
	secret, n, err := ParsePeerHello(hello)
	if err != nil || n != len(hello) || string(secret) != "s3cret" {
		t.Fatalf("hello: %q %d %v", secret, n, err)
	}
	for i := 0; i < len(hello); i++ {
		if _, n, err := ParsePeerHello(hello[:i]); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("hello prefix %d: %d %v", i, n, err)
		}
	}
	if _, _, err := ParsePeerHello([]byte{PeerHelloMagic, PeerVersion + 1, 0, 0}); !errors.Is(err, ErrPeerHello) {
		t.Fatalf("wrong version: %v", err)
	}
	if _, _, err := ParsePeerHello([]byte("get k\r\n")); !errors.Is(err, ErrPeerHello) {
		t.Fatalf("a text command as hello: %v", err)
	}

	req := AppendPeerRequest(nil, 7, 42, PeerText, []byte("set k 0 0 1\r\nv\r\n"))
	var f PeerRequest
	n, err = ParsePeerRequest(req, &f, 1<<20)
	if err != nil || n != len(req) || f.Seq != 7 || f.CacheID != 42 || f.Proto != PeerText || string(f.Body) != "set k 0 0 1\r\nv\r\n" {
		t.Fatalf("request: %+v %d %v", f, n, err)
	}
	for i := 0; i < len(req); i++ {
		if n, err := ParsePeerRequest(req[:i], &f, 1<<20); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("request prefix %d: %d %v", i, n, err)
		}
	}
	if _, err := ParsePeerRequest(req, &f, 3); !errors.Is(err, ErrPeerFrame) {
		t.Fatalf("oversized body: %v", err)
	}

	rep := AppendPeerReplyHeader(nil, 9, 0)
	rep = append(rep, "STORED\r\n"...)
	PutPeerReplyLength(rep, len("STORED\r\n"))
	seq, body, n, err := ParsePeerReply(rep, 1<<20)
	if err != nil || seq != 9 || string(body) != "STORED\r\n" || n != len(rep) {
		t.Fatalf("reply: %d %q %d %v", seq, body, n, err)
	}
	for i := 0; i < len(rep); i++ {
		if _, _, n, err := ParsePeerReply(rep[:i], 1<<20); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("reply prefix %d: %d %v", i, n, err)
		}
	}
	empty := AppendPeerReplyHeader(nil, 1, 0)
	if _, body, n, err := ParsePeerReply(empty, 0); err != nil || len(body) != 0 || n != PeerReplyHeaderLen {
		t.Fatalf("empty reply: %q %d %v", body, n, err)
	}
}

// FuzzPeerFrames checks the peer parsers' invariants on any input: no
// panic, n within the buffer and zero with an error, a frame that parses
// re-encodes to the bytes it was parsed from, and every strict prefix of
// it is incomplete.
func FuzzPeerFrames(f *testing.F) {
	f.Add(AppendPeerHello(nil, "secret"))
	f.Add(AppendPeerRequest(nil, 1, 2, PeerBinary, []byte{0x80, 0, 0, 1}))
	f.Add(AppendPeerRequest(nil, 1, 2, PeerText, []byte("get k\r\n")))
	f.Add(append(AppendPeerReplyHeader(nil, 3, 5), "END\r\n"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 16
		if secret, n, err := ParsePeerHello(data); err == nil {
			if n > len(data) || len(secret) > MaxPeerSecret || !bytes.Equal(AppendPeerHello(nil, string(secret)), data[:n]) {
				t.Fatalf("hello %q: n %d", data, n)
			}
		} else if n != 0 {
			t.Fatalf("hello error with n %d", n)
		}
		var r PeerRequest
		if n, err := ParsePeerRequest(data, &r, max); err == nil {
			if n > len(data) || len(r.Body) > max || !bytes.Equal(AppendPeerRequest(nil, r.Seq, r.CacheID, r.Proto, r.Body), data[:n]) {
				t.Fatalf("request %q: n %d", data, n)
			}
			for i := 0; i < n; i++ {
				if m, err := ParsePeerRequest(data[:i], &r, max); !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrPeerFrame) || m != 0 {
					t.Fatalf("request prefix %d: %d %v", i, m, err)
				}
			}
		} else if n != 0 {
			t.Fatalf("request error with n %d", n)
		}
		if seq, body, n, err := ParsePeerReply(data, max); err == nil {
			if n > len(data) || len(body) > max || !bytes.Equal(append(AppendPeerReplyHeader(nil, seq, len(body)), body...), data[:n]) {
				t.Fatalf("reply %q: n %d", data, n)
			}
		} else if n != 0 {
			t.Fatalf("reply error with n %d", n)
		}
	})
}
