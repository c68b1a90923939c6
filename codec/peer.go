package codec

import (
	"encoding/binary"
	"errors"
)

// The peer protocol carries requests that one node of a cluster forwards
// to the node that owns their key, on that node's ordinary memcache port.
// A peer connection opens with a hello, which no memcache client sends
// (its first byte is neither a text command's nor the binary magic):
//
//	hello:   [0xC1][version u8][secret length u16][secret]
//
// then carries request frames one way and reply frames the other, each
// reply answering the request of the same sequence number, in order:
//
//	request: [seq u32][cache id u32][proto u8][length u32][one raw request]
//	reply:   [seq u32][length u32][the raw reply, possibly empty]
//
// Integers are big-endian. A request frame holds exactly one client
// request as the client sent it (a data block included), so that the
// owner parses and answers it with the same code as a client's; a reply
// frame holds exactly the bytes the owner would have written to that
// client, which is nothing for a quiet binary hit or a noreply command.

// PeerHelloMagic is the first byte of a peer connection.
const PeerHelloMagic = 0xC1

// PeerVersion is the version of the peer protocol this code speaks.
const PeerVersion = 1

// The protocols a request frame's request is in.
const (
	PeerText   uint8 = 1 // a text or meta request
	PeerBinary uint8 = 2 // a binary request
)

// Header lengths of the peer frames.
const (
	PeerHelloHeaderLen   = 4
	PeerRequestHeaderLen = 13
	PeerReplyHeaderLen   = 8
)

// MaxPeerSecret is the longest cluster secret a hello may carry.
const MaxPeerSecret = 4096

// Errors of the peer protocol; either means the connection is not a
// well-behaved peer and must be closed.
var (
	ErrPeerHello = errors.New("codec: malformed peer hello")
	ErrPeerFrame = errors.New("codec: malformed peer frame")
)

// IsPeerHello reports whether a connection's first byte opens a peer
// connection.
func IsPeerHello(first byte) bool { return first == PeerHelloMagic }

// AppendPeerHello appends the hello that opens a peer connection.
func AppendPeerHello(dst []byte, secret string) []byte {
	dst = append(dst, PeerHelloMagic, PeerVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(secret)))
	return append(dst, secret...)
}

// ParsePeerHello parses a hello at the start of buf. secret aliases buf.
// It returns ErrIncomplete (n == 0) when buf ends first, ErrPeerHello for
// a wrong magic byte, version or length.
func ParsePeerHello(buf []byte) (secret []byte, n int, err error) {
	if len(buf) > 0 && buf[0] != PeerHelloMagic || len(buf) > 1 && buf[1] != PeerVersion {
		return nil, 0, ErrPeerHello
	}
	if len(buf) < PeerHelloHeaderLen {
		return nil, 0, ErrIncomplete
	}
	l := int(binary.BigEndian.Uint16(buf[2:4]))
	if l > MaxPeerSecret {
		return nil, 0, ErrPeerHello
	}
	if len(buf) < PeerHelloHeaderLen+l {
		return nil, 0, ErrIncomplete
	}
	return buf[PeerHelloHeaderLen : PeerHelloHeaderLen+l], PeerHelloHeaderLen + l, nil
}

// PeerRequest is one parsed request frame. Body aliases the parsed buffer
// and is valid only as long as it is.
type PeerRequest struct {
	Seq     uint32
	CacheID uint32
	Proto   uint8 // PeerText or PeerBinary
	Body    []byte
}

// AppendPeerRequestHeader appends a request frame's header for a request
// of length bytes, which the caller appends after it (possibly in pieces).
func AppendPeerRequestHeader(dst []byte, seq, cacheID uint32, proto uint8, length int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint32(dst, cacheID)
	dst = append(dst, proto)
	return binary.BigEndian.AppendUint32(dst, uint32(length))
}

// AppendPeerRequest appends a whole request frame.
func AppendPeerRequest(dst []byte, seq, cacheID uint32, proto uint8, body []byte) []byte {
	return append(AppendPeerRequestHeader(dst, seq, cacheID, proto, len(body)), body...)
}

// ParsePeerRequest parses one request frame at the start of buf into f,
// refusing (ErrPeerFrame) an unknown protocol or a body over maxBody
// bytes. It returns ErrIncomplete, with n == 0, when buf ends first.
func ParsePeerRequest(buf []byte, f *PeerRequest, maxBody int) (n int, err error) {
	if len(buf) < PeerRequestHeaderLen {
		return 0, ErrIncomplete
	}
	proto := buf[8]
	l := binary.BigEndian.Uint32(buf[9:13])
	if proto != PeerText && proto != PeerBinary || uint64(l) > uint64(maxBody) {
		return 0, ErrPeerFrame
	}
	end := PeerRequestHeaderLen + int(l)
	if len(buf) < end {
		return 0, ErrIncomplete
	}
	*f = PeerRequest{
		Seq:     binary.BigEndian.Uint32(buf[0:4]),
		CacheID: binary.BigEndian.Uint32(buf[4:8]),
		Proto:   proto,
		Body:    buf[PeerRequestHeaderLen:end],
	}
	return end, nil
}

// AppendPeerReplyHeader appends a reply frame's header for a reply of
// length bytes.
func AppendPeerReplyHeader(dst []byte, seq uint32, length int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return binary.BigEndian.AppendUint32(dst, uint32(length))
}

// PutPeerReplyLength sets the length of the reply frame whose header
// starts hdr, for a writer that reserves the header and appends the reply
// after it.
func PutPeerReplyLength(hdr []byte, length int) {
	binary.BigEndian.PutUint32(hdr[4:8], uint32(length))
}

// ParsePeerReply parses one reply frame at the start of buf; body aliases
// buf. It refuses (ErrPeerFrame) a body over maxBody bytes and returns
// ErrIncomplete, with n == 0, when buf ends first.
func ParsePeerReply(buf []byte, maxBody int) (seq uint32, body []byte, n int, err error) {
	if len(buf) < PeerReplyHeaderLen {
		return 0, nil, 0, ErrIncomplete
	}
	l := binary.BigEndian.Uint32(buf[4:8])
	if uint64(l) > uint64(maxBody) {
		return 0, nil, 0, ErrPeerFrame
	}
	end := PeerReplyHeaderLen + int(l)
	if len(buf) < end {
		return 0, nil, 0, ErrIncomplete
	}
	return binary.BigEndian.Uint32(buf[0:4]), buf[PeerReplyHeaderLen:end], end, nil
}
