//go:build !race

package codec

import "testing"

// TestZeroAllocs asserts that parsing a request and encoding its reply
// allocates nothing once the caller's buffers have grown: a get hit and a
// set, in both protocols.
func TestZeroAllocs(t *testing.T) {
	var p Parser
	var r Request
	out := make([]byte, 0, 4096)
	multiGet := []byte("get a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n")
	bogus := []byte("bogus\r\n")
	binSet := pkt{op: OpSet, key: "user:1234567890", ext: be32(1) + be32(0), val: string(benchValue)}.bytes()
	cases := []struct {
		name string
		run  func()
	}{
		{"ascii get hit", func() {
			n, err := p.ParseASCII(benchGet, &r)
			if err != nil || n != len(benchGet) {
				t.Fatal(n, err)
			}
			out = out[:0]
			for _, k := range r.Keys {
				out = AppendValue(out, k, 0, benchValue, 1, false)
			}
			out = AppendEnd(out)
		}},
		{"ascii multi-get", func() {
			if _, err := p.ParseASCII(multiGet, &r); err != nil {
				t.Fatal(err)
			}
			out = out[:0]
			for _, k := range r.Keys {
				out = AppendValue(out, k, 0, benchValue[:8], 1, true)
			}
			out = AppendEnd(out)
		}},
		{"ascii set", func() {
			if _, err := p.ParseASCII(benchSet, &r); err != nil || r.Cmd != CmdSet {
				t.Fatal(err)
			}
			out = append(out[:0], ReplyStored...)
		}},
		{"ascii error", func() {
			if _, err := p.ParseASCII(bogus, &r); err != nil || r.Cmd != CmdError {
				t.Fatal(err)
			}
			out = append(out[:0], r.ErrReply...)
		}},
		{"binary get hit", func() {
			if _, err := p.ParseBinary(benchBinGet, &r); err != nil {
				t.Fatal(err)
			}
			out = AppendBinaryGet(out[:0], r.Opcode, r.Opaque, 1, 0, r.Key, benchValue)
		}},
		{"binary set", func() {
			if _, err := p.ParseBinary(binSet, &r); err != nil || r.Cmd != CmdSet {
				t.Fatal(err)
			}
			out = AppendBinaryOK(out[:0], r.Opcode, r.Opaque, 2)
		}},
		{"binary miss", func() {
			if _, err := p.ParseBinary(benchBinGet, &r); err != nil {
				t.Fatal(err)
			}
			out = AppendBinaryStatus(out[:0], r.Opcode, StatusKeyNotFound, r.Opaque)
			out = AppendBinaryMiss(out, r.Opcode, r.Opaque, r.Key)
		}},
	}
	for _, c := range cases {
		c.run() // let Keys grow
		if a := testing.AllocsPerRun(200, c.run); a != 0 {
			t.Errorf("%s: %.1f allocations per run, want 0", c.name, a)
		}
	}
}
