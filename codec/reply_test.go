package codec

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestASCIIEncoders(t *testing.T) {
	cases := []struct {
		got, want string
	}{
		{string(AppendValue(nil, []byte("k"), 0, []byte("abc"), 0, false)), "VALUE k 0 3\r\nabc\r\n"},
		{string(AppendValue([]byte("x"), []byte("key"), 4294967295, []byte(""), 18446744073709551615, true)),
			"xVALUE key 4294967295 0 18446744073709551615\r\n\r\n"},
		{string(AppendValue(nil, []byte("k"), 7, []byte("a\r\nb"), 12, true)), "VALUE k 7 4 12\r\na\r\nb\r\n"},
		{string(AppendEnd(nil)), "END\r\n"},
		{string(AppendUint(nil, 0)), "0\r\n"},
		{string(AppendUint(nil, 18446744073709551615)), "18446744073709551615\r\n"},
		{string(AppendVersion(nil, "1.6.18")), "VERSION 1.6.18\r\n"},
		{string(AppendStat(nil, "version", []byte("1.6.18"))), "STAT version 1.6.18\r\n"},
		{string(AppendStatUint(nil, "curr_items", 42)), "STAT curr_items 42\r\n"},
		{string(AppendStatInt(nil, "delta", -3)), "STAT delta -3\r\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// Binary goldens: the bytes memcached 1.6.18 sends (captured from it).
func TestBinaryEncoders(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string // hex, spaces ignored
	}{
		{"version", AppendBinaryValue(nil, OpVersion, StatusOK, 0x11223344, 0, []byte("1.6.18")),
			"810b0000 00000000 00000006 11223344 0000000000000000 312e362e3138"},
		{"not found", AppendBinaryStatus(nil, OpGAT, StatusKeyNotFound, 0x11223344),
			"811d0000 00000001 00000009 11223344 0000000000000000 4e6f7420666f756e64"},
		{"unknown", AppendBinaryStatus(nil, 0x1b, StatusUnknownCommand, 0x11223344),
			"811b0000 00000081 0000000f 11223344 0000000000000000 556e6b6e6f776e20636f6d6d616e64"},
		{"einval", AppendBinaryStatus(nil, OpGet, StatusInvalid, 0x11223344),
			"81000000 00000004 00000011 11223344 0000000000000000 496e76616c696420617267756d656e7473"},
		{"too large", AppendBinaryStatus(nil, OpSet, StatusTooLarge, 0x11223344),
			"81010000 00000003 0000000a 11223344 0000000000000000 546f6f206c617267652e"},
		{"exists", AppendBinaryStatus(nil, OpAdd, StatusKeyExists, 0x11223344),
			"81020000 00000002 00000014 11223344 0000000000000000 446174612065786973747320666f72206b65792e"},
		{"not stored", AppendBinaryStatus(nil, OpAppend, StatusNotStored, 1),
			"810e0000 00000005 0000000b 00000001 0000000000000000 4e6f742073746f7265642e"},
		{"non-numeric", AppendBinaryStatus(nil, OpIncrement, StatusNonNumeric, 1),
			"81050000 00000006 0000002e 00000001 0000000000000000" + hex.EncodeToString([]byte("Non-numeric server-side value for incr or decr"))},
		{"auth error", AppendBinaryStatus(nil, OpSASLStep, StatusAuthError, 1),
			"81220000 00000020 0000000d 00000001 0000000000000000" + hex.EncodeToString([]byte("Auth failure."))},
		{"enomem", AppendBinaryStatus(nil, OpSet, StatusOutOfMemory, 1),
			"81010000 00000082 0000000d 00000001 0000000000000000" + hex.EncodeToString([]byte("Out of memory"))},
		{"error text", AppendBinaryError(nil, OpIncrement, StatusOutOfMemory, 1, "Out of memory incrementing value"),
			"81050000 00000082 00000020 00000001 0000000000000000" + hex.EncodeToString([]byte("Out of memory incrementing value"))},
		{"ok", AppendBinaryOK(nil, OpFlush, 0x11223344, 0),
			"81080000 00000000 00000000 11223344 0000000000000000"},
		{"stored", AppendBinaryOK(nil, OpSet, 7, 0xbc),
			"81010000 00000000 00000000 00000007 00000000000000bc"},
		{"getk miss", AppendBinaryMiss(nil, OpGetK, 0x11223344, []byte("nokey")),
			"810c0005 00000001 00000005 11223344 0000000000000000 6e6f6b6579"},
		{"get hit", AppendBinaryGet(nil, OpGet, 5, 0x1234, 0x1316c498, nil, []byte("abc")),
			"81000000 04000000 00000007 00000005 0000000000001234 1316c498 616263"},
		{"getk hit", AppendBinaryGet(nil, OpGetK, 5, 1, 0, []byte("a"), []byte("v")),
			"810c0001 04000000 00000006 00000005 0000000000000001 00000000 61 76"},
		{"touch hit", AppendBinaryGet(nil, OpTouch, 5, 7, 0x1316c498, nil, nil),
			"811c0000 04000000 00000004 00000005 0000000000000007 1316c498"},
		{"counter", AppendBinaryCounter(nil, OpIncrement, 0x11223344, 0xbc, 5),
			"81050000 00000000 00000008 11223344 00000000000000bc 0000000000000005"},
		{"stat", AppendBinaryStat(nil, 0x11223344, []byte("pid"), []byte("12247")),
			"81100003 00000000 00000008 11223344 0000000000000000 706964 3132323437"},
		{"stat end", AppendBinaryStat(nil, 9, nil, nil),
			"81100000 00000000 00000000 00000009 0000000000000000"},
		{"sasl list", AppendBinaryValue(nil, OpSASLListMechs, StatusOK, 1, 0, []byte("PLAIN")),
			"81200000 00000000 00000005 00000001 0000000000000000 504c41494e"},
	}
	for _, c := range cases {
		want := strings.ReplaceAll(c.want, " ", "")
		if got := hex.EncodeToString(c.got); got != want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
		}
	}
}

func TestBinaryStatusText(t *testing.T) {
	if BinaryStatusText(StatusOK) != "" || BinaryStatusText(StatusAuthContinue) != "" {
		t.Fatal("success statuses carry no text")
	}
	if BinaryStatusText(0x99) != "UNHANDLED ERROR" {
		t.Fatal("unknown status text")
	}
}
