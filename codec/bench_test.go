package codec

import "testing"

var (
	benchGet    = []byte("get user:1234567890\r\n")
	benchSet    = []byte("set user:1234567890 0 0 100\r\n" + string(make([]byte, 100)) + "\r\n")
	benchBinGet = pkt{op: OpGetK, key: "user:1234567890"}.bytes()
	benchKey    = []byte("user:1234567890")
	benchValue  = make([]byte, 100)
)

func BenchmarkParseASCIIGet(b *testing.B) {
	var p Parser
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(benchGet)))
	for b.Loop() {
		if _, err := p.ParseASCII(benchGet, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseASCIIMultiGet(b *testing.B) {
	in := []byte("get a1 b2 c3 d4 e5 f6 g7 h8 i9 j10 k11 l12 m13 n14 o15 p16 q17 r18 s19 t20 u21 v22 w23 x24 y25\r\n")
	var p Parser
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := p.ParseASCII(in, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseASCIISet(b *testing.B) {
	var p Parser
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(benchSet)))
	for b.Loop() {
		if _, err := p.ParseASCII(benchSet, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBinaryGet(b *testing.B) {
	var p Parser
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBinGet)))
	for b.Loop() {
		if _, err := p.ParseBinary(benchBinGet, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseASCIIGetParallel parses from every P with one shared
// Parser, as the server's event loops do.
func BenchmarkParseASCIIGetParallel(b *testing.B) {
	var p Parser
	b.ReportAllocs()
	b.SetBytes(int64(len(benchGet)))
	b.RunParallel(func(pb *testing.PB) {
		var r Request
		for pb.Next() {
			if _, err := p.ParseASCII(benchGet, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendValue(b *testing.B) {
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		out = AppendValue(out[:0], benchKey, 123, benchValue, 987654321, true)
	}
}

func BenchmarkAppendBinaryGet(b *testing.B) {
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		out = AppendBinaryGet(out[:0], OpGetK, 7, 987654321, 123, benchKey, benchValue)
	}
}
