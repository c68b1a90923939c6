package codec

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// pkt builds a binary request. Header lengths default to those of the
// parts; a positive keylen, extlen or bodylen overrides them for malformed
// packets (bodylen -1 means 0).
type pkt struct {
	magic   byte
	op      byte
	key     string
	ext     string
	val     string
	cas     uint64
	opaque  uint32
	keylen  int
	extlen  int
	bodylen int
}

func (p pkt) bytes() []byte {
	magic := p.magic
	if magic == 0 {
		magic = MagicRequest
	}
	kl, el, bl := len(p.key), len(p.ext), len(p.key)+len(p.ext)+len(p.val)
	if p.keylen > 0 {
		kl = p.keylen
	}
	if p.extlen > 0 {
		el = p.extlen
	}
	if p.bodylen > 0 {
		bl = p.bodylen
	} else if p.bodylen < 0 {
		bl = 0
	}
	b := make([]byte, BinaryHeaderLen, BinaryHeaderLen+len(p.ext)+len(p.key)+len(p.val))
	b[0] = magic
	b[1] = p.op
	binary.BigEndian.PutUint16(b[2:], uint16(kl))
	b[4] = byte(el)
	binary.BigEndian.PutUint32(b[8:], uint32(bl))
	binary.BigEndian.PutUint32(b[12:], p.opaque)
	binary.BigEndian.PutUint64(b[16:], p.cas)
	b = append(b, p.ext...)
	b = append(b, p.key...)
	return append(b, p.val...)
}

func be32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }
func be64(v uint64) string { return string(binary.BigEndian.AppendUint64(nil, v)) }

var binaryCases = []struct {
	name string
	in   []byte
	want string
}{
	{"get", pkt{op: OpGet, key: "k"}.bytes(), `n=25 get key="k" op=0x00`},
	{"getq", pkt{op: OpGetQ, key: "k", opaque: 7}.bytes(), `n=25 get key="k" op=0x09 quiet`},
	{"getk", pkt{op: OpGetK, key: "k"}.bytes(), `n=25 get key="k" op=0x0c withkey`},
	{"getkq", pkt{op: OpGetKQ, key: "k"}.bytes(), `n=25 get key="k" op=0x0d quiet withkey`},
	{"get no key", pkt{op: OpGet}.bytes(), `n=24 error op=0x00 status=0x04 close flush`},
	{"get extras", pkt{op: OpGet, key: "k", ext: "1234"}.bytes(), `n=29 error op=0x00 status=0x04 close flush`},
	{"get body", pkt{op: OpGet, key: "k", val: "v"}.bytes(), `n=25 error op=0x00 status=0x04 close flush`},
	{"get key 250", pkt{op: OpGet, key: k250}.bytes(), `n=274 get key="` + k250 + `" op=0x00`},
	{"get key 251", pkt{op: OpGet, key: k251}.bytes(), `n=275 error op=0x00 status=0x04 close flush`},
	{"get cas", pkt{op: OpGet, key: "k", cas: 5}.bytes(), `n=25 get key="k" cas=5 op=0x00`},
	{"set", pkt{op: OpSet, key: "k", ext: be32(3) + be32(10), val: "abc", cas: 9}.bytes(),
		`n=36 set key="k" value="abc" flags=3 exp=10 cas=9 op=0x01`},
	{"setq empty value", pkt{op: OpSetQ, key: "k", ext: be32(0) + be32(0xffffffff)}.bytes(),
		`n=33 set key="k" value="" exp=4294967295 op=0x11 quiet`},
	{"add", pkt{op: OpAdd, key: "k", ext: be32(0) + be32(0), val: "v"}.bytes(), `n=34 add key="k" value="v" op=0x02`},
	{"addq", pkt{op: OpAddQ, key: "k", ext: be32(0) + be32(0), val: "v"}.bytes(), `n=34 add key="k" value="v" op=0x12 quiet`},
	{"replaceq", pkt{op: OpReplaceQ, key: "k", ext: be32(0) + be32(0), val: "v"}.bytes(), `n=34 replace key="k" value="v" op=0x13 quiet`},
	{"set no extras", pkt{op: OpSet, key: "k", val: "v"}.bytes(), `n=25 error op=0x01 status=0x04 close flush`},
	{"set no key", pkt{op: OpSet, ext: be32(0) + be32(0), val: "v"}.bytes(), `n=32 error op=0x01 status=0x04 close flush`},
	{"set too large", pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), bodylen: 9 + 1048576}.bytes(),
		`n=33 error key="k" op=0x01 status=0x03 swallow=1048576 refused=set`},
	{"setq too large", pkt{op: OpSetQ, key: "k", ext: be32(0) + be32(0), bodylen: 9 + 1048576}.bytes(),
		`n=33 error key="k" op=0x11 status=0x03 swallow=1048576 refused=set`},
	{"set 2GiB", pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), bodylen: 9 + 1<<31}.bytes(),
		`n=33 error key="k" op=0x01 status=0x03 refused=set`},
	{"append", pkt{op: OpAppend, key: "k", val: "xy"}.bytes(), `n=27 append key="k" value="xy" op=0x0e`},
	{"prependq", pkt{op: OpPrependQ, key: "k", val: "xy"}.bytes(), `n=27 prepend key="k" value="xy" op=0x1a quiet`},
	{"append extras", pkt{op: OpAppend, key: "k", ext: "1234", val: "xy"}.bytes(), `n=29 error op=0x0e status=0x04 close flush`},
	{"append too large", pkt{op: OpAppend, key: "k", bodylen: 1 + 1048576}.bytes(),
		`n=25 error key="k" op=0x0e status=0x03 swallow=1048576 refused=append`},
	{"delete", pkt{op: OpDelete, key: "k", cas: 3}.bytes(), `n=25 delete key="k" cas=3 op=0x04`},
	{"deleteq", pkt{op: OpDeleteQ, key: "k"}.bytes(), `n=25 delete key="k" op=0x14 quiet`},
	{"delete extras", pkt{op: OpDelete, key: "k", ext: "1234"}.bytes(), `n=29 error op=0x04 status=0x04 close flush`},
	{"incr", pkt{op: OpIncrement, key: "c", ext: be64(2) + be64(10) + be32(0)}.bytes(),
		`n=45 incr key="c" delta=2 initial=10 op=0x05`},
	{"decrq", pkt{op: OpDecrementQ, key: "c", ext: be64(2) + be64(10) + be32(0xffffffff)}.bytes(),
		`n=45 decr key="c" exp=4294967295 delta=2 initial=10 op=0x16 quiet`},
	{"incr short extras", pkt{op: OpIncrement, key: "c", ext: be64(2)}.bytes(), `n=33 error op=0x05 status=0x04 close flush`},
	{"incr body", pkt{op: OpIncrement, key: "c", ext: be64(2) + be64(10) + be32(0), val: "x"}.bytes(), `n=45 error op=0x05 status=0x04 close flush`},
	{"touch", pkt{op: OpTouch, key: "k", ext: be32(100)}.bytes(), `n=29 touch key="k" exp=100 op=0x1c`},
	{"touch trailing body", pkt{op: OpTouch, key: "k", ext: be32(100), val: "zz"}.bytes(), `n=29 touch key="k" exp=100 op=0x1c`},
	{"gat", pkt{op: OpGAT, key: "k", ext: be32(1)}.bytes(), `n=29 gat key="k" exp=1 op=0x1d`},
	{"gatq", pkt{op: OpGATQ, key: "k", ext: be32(1)}.bytes(), `n=29 gat key="k" exp=1 op=0x1e quiet`},
	{"gatk", pkt{op: OpGATK, key: "k", ext: be32(1)}.bytes(), `n=29 gat key="k" exp=1 op=0x23 withkey`},
	{"gatkq", pkt{op: OpGATKQ, key: "k", ext: be32(1)}.bytes(), `n=29 gat key="k" exp=1 op=0x24 quiet withkey`},
	{"gat no extras", pkt{op: OpGAT, key: "k"}.bytes(), `n=25 error op=0x1d status=0x04 close flush`},
	{"flush", pkt{op: OpFlush}.bytes(), `n=24 flush_all op=0x08`},
	{"flush delay", pkt{op: OpFlush, ext: be32(30)}.bytes(), `n=28 flush_all exp=30 op=0x08`},
	{"flushq", pkt{op: OpFlushQ}.bytes(), `n=24 flush_all op=0x18 quiet`},
	{"flush key", pkt{op: OpFlush, key: "k"}.bytes(), `n=25 error op=0x08 status=0x04 close flush`},
	{"flush 8 extras", pkt{op: OpFlush, ext: be64(1)}.bytes(), `n=32 error op=0x08 status=0x04 close flush`},
	{"noop", pkt{op: OpNoop, opaque: 0xdeadbeef}.bytes(), `n=24 noop op=0x0a flush`},
	{"version", pkt{op: OpVersion}.bytes(), `n=24 version op=0x0b`},
	{"version body", pkt{op: OpVersion, val: "x"}.bytes(), `n=24 error op=0x0b status=0x04 close flush`},
	{"quit", pkt{op: OpQuit}.bytes(), `n=24 quit op=0x07 flush`},
	{"quitq", pkt{op: OpQuitQ}.bytes(), `n=24 quit op=0x17 quiet flush`},
	{"stat", pkt{op: OpStat}.bytes(), `n=24 stats op=0x10`},
	{"stat key", pkt{op: OpStat, key: "items"}.bytes(), `n=29 stats key="items" op=0x10`},
	{"stat trailing body", pkt{op: OpStat, key: "items", val: "zz"}.bytes(), `n=29 stats key="items" op=0x10`},
	{"stat extras", pkt{op: OpStat, ext: "1234"}.bytes(), `n=28 error op=0x10 status=0x04 close flush`},
	{"sasl list", pkt{op: OpSASLListMechs}.bytes(), `n=24 sasl_list op=0x20`},
	{"sasl auth", pkt{op: OpSASLAuth, key: "PLAIN", val: "\x00u\x00p"}.bytes(), `n=33 sasl_auth key="PLAIN" value="\x00u\x00p" op=0x21`},
	{"sasl step", pkt{op: OpSASLStep, key: "PLAIN", val: "x"}.bytes(), `n=30 sasl_step key="PLAIN" value="x" op=0x22`},
	{"sasl auth no mech", pkt{op: OpSASLAuth, val: "x"}.bytes(), `n=24 error op=0x21 status=0x04 close flush`},
	{"sasl auth long mech", pkt{op: OpSASLAuth, key: strings.Repeat("M", 33), val: "xyz"}.bytes(), `n=57 error op=0x21 status=0x04 swallow=3`},
	{"verbosity", pkt{op: OpVerbosity, ext: be32(1)}.bytes(), `n=28 error op=0x1b status=0x81 swallow=4`},
	{"unknown with body", pkt{op: 0x3d, key: "ab", ext: "1234", val: "xyz"}.bytes(), `n=30 error op=0x3d status=0x81 swallow=9`},
	{"range op", pkt{op: 0x30, key: "k"}.bytes(), `n=25 error op=0x30 status=0x81 swallow=1`},
	{"unknown 3GiB body", pkt{op: 0xff, bodylen: 3 << 30}.bytes(), `n=24 error op=0xff status=0x81 flush`},
	{"keylen beyond body", pkt{op: OpGet, key: "abc", bodylen: 2}.bytes(), `n=27 error op=0x00 status=0x81 close flush`},
	{"extlen beyond body", pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), bodylen: 8}.bytes(), `n=33 error op=0x01 status=0x81 close flush`},
	{"bad magic", pkt{magic: 0x81, op: OpVersion}.bytes(), `n=24 error op=0x0b close abort`},
	{"short header", pkt{op: OpGet, key: "k"}.bytes()[:23], `incomplete n=0`},
	{"short key", pkt{op: OpGet, key: "kk"}.bytes()[:25], `incomplete n=0`},
	{"short value", pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), val: "vv"}.bytes()[:34], `incomplete n=0`},
	{"head over 16 KiB, waiting", pkt{op: OpGet, keylen: 16361, bodylen: 16361}.bytes(), `incomplete n=0`},
	{"head over 16 KiB", append(pkt{op: OpGet, keylen: 16361, bodylen: 16361}.bytes(), strings.Repeat("k", 16361)...),
		`n=16385 error op=0x00 close abort`},
	{"head at 16 KiB", append(pkt{op: OpGet, keylen: 16360, bodylen: 16360}.bytes(), strings.Repeat("k", 16360)...),
		`n=16384 error op=0x00 status=0x04 close flush`},
}

func TestParseBinary(t *testing.T) {
	var p Parser
	var r Request
	for _, c := range binaryCases {
		n, err := p.ParseBinary(c.in, &r)
		if got := describe(n, err, &r); got != c.want {
			t.Errorf("%s: ParseBinary\n got: %s\nwant: %s", c.name, got, c.want)
		}
		checkInvariants(t, c.in, n, err, &r)
	}
}

func TestParseBinaryOpaque(t *testing.T) {
	var p Parser
	var r Request
	for _, in := range [][]byte{
		pkt{op: OpGet, key: "k", opaque: 0x01020304}.bytes(),
		pkt{op: 0x55, opaque: 0x01020304}.bytes(),
		pkt{op: OpGet, opaque: 0x01020304}.bytes(),
	} {
		if _, err := p.ParseBinary(in, &r); err != nil || r.Opaque != 0x01020304 || !r.Binary {
			t.Fatalf("opaque %#x binary %v err %v", r.Opaque, r.Binary, err)
		}
	}
}

func TestParseBinaryMaxItemSize(t *testing.T) {
	p := Parser{MaxItemSize: 10}
	var r Request
	in := pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), val: "12345678"}.bytes()
	if n, err := p.ParseBinary(in, &r); err != nil || r.Cmd != CmdSet || n != len(in) {
		t.Fatalf("9-byte item (limit 10): %s", describe(n, err, &r))
	}
	in = pkt{op: OpSet, key: "k", ext: be32(0) + be32(0), val: "123456789"}.bytes()
	if n, err := p.ParseBinary(in, &r); err != nil || r.Status != StatusTooLarge || r.Swallow != 9 || n != 33 {
		t.Fatalf("10-byte item (limit 10): %s", describe(n, err, &r))
	}
	in = pkt{op: OpAppend, key: "kk", val: "12345678"}.bytes()
	if n, err := p.ParseBinary(in, &r); err != nil || r.Status != StatusTooLarge || r.Swallow != 8 || n != 26 {
		t.Fatalf("10-byte append (limit 10): %s", describe(n, err, &r))
	}
	in = pkt{op: OpSASLAuth, key: "PLAIN", val: "123456"}.bytes()
	if n, err := p.ParseBinary(in, &r); err != nil || r.Status != StatusOutOfMemory || r.Swallow != 6 || n != 29 {
		t.Fatalf("large SASL data: %s", describe(n, err, &r))
	}
}

var validBinary = [][]byte{
	pkt{op: OpGet, key: "k"}.bytes(),
	pkt{op: OpGetKQ, key: "key"}.bytes(),
	pkt{op: OpSet, key: "k", ext: be32(1) + be32(2), val: "value"}.bytes(),
	pkt{op: OpAddQ, key: "k", ext: be32(1) + be32(2), val: "v"}.bytes(),
	pkt{op: OpReplace, key: "k", ext: be32(1) + be32(2), val: ""}.bytes(),
	pkt{op: OpAppendQ, key: "k", val: "tail"}.bytes(),
	pkt{op: OpPrepend, key: "k", val: "head"}.bytes(),
	pkt{op: OpDelete, key: "k"}.bytes(),
	pkt{op: OpIncrementQ, key: "k", ext: be64(1) + be64(0) + be32(0)}.bytes(),
	pkt{op: OpDecrement, key: "k", ext: be64(1) + be64(0) + be32(0)}.bytes(),
	pkt{op: OpTouch, key: "k", ext: be32(5)}.bytes(),
	pkt{op: OpGATKQ, key: "k", ext: be32(5)}.bytes(),
	pkt{op: OpFlush, ext: be32(5)}.bytes(),
	pkt{op: OpNoop}.bytes(),
	pkt{op: OpVersion}.bytes(),
	pkt{op: OpStat, key: "slabs"}.bytes(),
	pkt{op: OpQuitQ}.bytes(),
	pkt{op: OpSASLListMechs}.bytes(),
	pkt{op: OpSASLAuth, key: "PLAIN", val: "\x00user\x00pass"}.bytes(),
	pkt{op: OpSASLStep, key: "PLAIN", val: "x"}.bytes(),
}

func TestBinaryPrefixesIncomplete(t *testing.T) {
	var p Parser
	var r, full Request
	for _, b := range validBinary {
		n, err := p.ParseBinary(b, &full)
		if err != nil || n != len(b) || full.Cmd == CmdError {
			t.Fatalf("ParseBinary(%x) = %s", b, describe(n, err, &full))
		}
		for i := 0; i < len(b); i++ {
			n, err := p.ParseBinary(b[:i], &r)
			if !errors.Is(err, ErrIncomplete) || n != 0 {
				t.Fatalf("ParseBinary(prefix %d of %x) = %s", i, b, describe(n, err, &r))
			}
		}
		more := append(append([]byte{}, b...), pkt{op: OpNoop}.bytes()...)
		n, err = p.ParseBinary(more, &r)
		if err != nil || n != len(b) || !sameRequest(&r, &full) {
			t.Fatalf("ParseBinary(%x + more) = %s", b, describe(n, err, &r))
		}
	}
}
