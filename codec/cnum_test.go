package codec

import (
	"math/rand"
	"testing"
)

func TestSafeStrtoull(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    uint64
		okay bool
	}{
		{"0", 0, true}, {"123", 123, true}, {"+5", 5, true}, {" \t5", 5, true},
		{"  7", 7, true}, {"5  ", 5, true}, {"5\t", 5, true}, {"5\vjunk", 5, true},
		{"5x", 0, false}, {"1a", 0, false}, {"", 0, false}, {" ", 0, false},
		{"-", 0, false}, {"+", 0, false}, {"x5", 0, false}, {"0x10", 0, false},
		{"-0", 0, true}, {"-1", 0, false},
		{"18446744073709551615", 1<<64 - 1, true}, {"18446744073709551616", 0, false},
		{"-18446744073709551615", 1, true}, {"-9223372036854775809", 9223372036854775807, true},
		{"9223372036854775808", 1 << 63, true},
		// 2^63 or more is refused when a '-' follows in the string, but
		// not beyond its NUL.
		{"9223372036854775808 -", 0, false}, {"9223372036854775808\x00-", 1 << 63, true},
		// A C string ends at its NUL.
		{"100\x00junk", 100, true}, {"\x00", 0, false}, {"\x005", 0, false}, {"+\x005", 0, false},
	} {
		v, ok := SafeStrtoull([]byte(c.in))
		if v != c.v || ok != c.okay {
			t.Errorf("SafeStrtoull(%q) = %d, %v; want %d, %v", c.in, v, ok, c.v, c.okay)
		}
	}
}

func TestSafeStrtoul(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    uint32
		okay bool
	}{
		{"4294967295", 1<<32 - 1, true}, {"4294967296", 0, true}, {"4294967297", 1, true},
		{"-1", 0, false}, {"18446744073709551616", 0, false}, {"7 x", 7, true},
	} {
		v, ok := safeStrtoul([]byte(c.in))
		if v != c.v || ok != c.okay {
			t.Errorf("safeStrtoul(%q) = %d, %v; want %d, %v", c.in, v, ok, c.v, c.okay)
		}
	}
}

func TestSafeStrtol(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    int32
		okay bool
	}{
		{"0", 0, true}, {"-1", -1, true}, {"2147483647", 2147483647, true},
		{"2147483648", -2147483648, true}, {"4294967297", 1, true},
		{"9223372036854775807", -1, true}, {"9223372036854775808", 0, false},
		{"-9223372036854775808", 0, true}, {"-9223372036854775809", 0, false},
		{" -3 ", -3, true}, {"--3", 0, false}, {"12\x00x", 12, true}, {"", 0, false},
	} {
		v, ok := safeStrtol([]byte(c.in))
		if v != c.v || ok != c.okay {
			t.Errorf("safeStrtol(%q) = %d, %v; want %d, %v", c.in, v, ok, c.v, c.okay)
		}
	}
}

// TestCString checks that every parser reads only up to the first NUL,
// as C does: the bytes after it never change the answer.
func TestCString(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("0123456789 -+\t\x00x")
	for range 100_000 {
		s := make([]byte, rng.Intn(24))
		for i := range s {
			s[i] = alphabet[rng.Intn(len(alphabet))]
		}
		c := cString(s)
		u1, ok1 := SafeStrtoull(s)
		u2, ok2 := SafeStrtoull(c)
		l1, lok1 := safeStrtol(s)
		l2, lok2 := safeStrtol(c)
		if u1 != u2 || ok1 != ok2 || l1 != l2 || lok1 != lok2 {
			t.Fatalf("%q reads as %d %v / %d %v, its C string %q as %d %v / %d %v", s, u1, ok1, l1, lok1, c, u2, ok2, l2, lok2)
		}
	}
}

func TestNumberParserAllocatesNothing(t *testing.T) {
	s := []byte(" 18446744073709551615 ")
	if n := testing.AllocsPerRun(100, func() {
		SafeStrtoull(s)
		safeStrtol(s)
	}); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}
