package tenancy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/engine"
)

const day = 24 * 3600

// TestHandoffExptime: up to 30 days ahead an item's expiry is sent as the
// seconds left, beyond that as its unix time; an item expiring now is not
// sent at all, since a relative 0 would make it immortal.
func TestHandoffExptime(t *testing.T) {
	const now = 1_800_000_000
	cases := []struct {
		name    string
		expires int64
		want    uint32
		live    bool
	}{
		{"never", 0, 0, true},
		{"one second left", now + 1, 1, true},
		{"an hour left", now + 3600, 3600, true},
		{"30 days less a second", now + 30*day - 1, 30*day - 1, true},
		{"exactly 30 days: still relative", now + 30*day, 30 * day, true},
		{"30 days and a second: absolute", now + 30*day + 1, now + 30*day + 1, true},
		{"a year: absolute", now + 365*day, now + 365*day, true},
		{"past 2106: the field's largest", math.MaxUint32 + 10, math.MaxUint32, true},
		{"expires now", now, 0, false},
		{"expired", now - 1, 0, false},
		{"long expired", 1, 0, false},
	}
	for _, c := range cases {
		got, live := HandoffExptime(c.expires, now)
		if got != c.want || live != c.live {
			t.Errorf("%s: expires %d: got %d, %v; want %d, %v", c.name, c.expires, got, live, c.want, c.live)
		}
	}
}

// TestAppendHandoffBytes pins the request's layout: a binary ADD with the
// flags and expiry extras, CAS 0, the opaque given.
func TestAppendHandoffBytes(t *testing.T) {
	it := engine.ExportedItem{Key: []byte("key"), Value: []byte("val"), Flags: 0xdeadbeef, Expires: 1000 + 60}
	got, ok := AppendHandoff([]byte("prefix"), &it, 1000, false, 0x01020304)
	want := "prefix" +
		"\x80\x02\x00\x03" + // magic, ADD, key length
		"\x08\x00\x00\x00" + // extras length, data type, vbucket
		"\x00\x00\x00\x0e" + // body: 8 + 3 + 3
		"\x01\x02\x03\x04" + // opaque
		"\x00\x00\x00\x00\x00\x00\x00\x00" + // CAS
		"\xde\xad\xbe\xef" + "\x00\x00\x00\x3c" + // flags, 60 s
		"keyval"
	if !ok || string(got) != want {
		t.Fatalf("got %v\n%s\nwant\n%s", ok, hex.Dump(got), hex.Dump([]byte(want)))
	}
	q, _ := AppendHandoff(nil, &it, 1000, true, 0)
	if q[1] != 0x12 {
		t.Errorf("quiet request has opcode %#x, want ADDQ 0x12", q[1])
	}
	it.Expires = 1000
	if out, ok := AppendHandoff([]byte("prefix"), &it, 1000, false, 0); ok || string(out) != "prefix" {
		t.Errorf("an item expiring now gave %q, %v; want nothing appended", out, ok)
	}
}

// TestAppendHandoffParses: codec's parser, the one every node runs, reads
// each request back as an ADD of exactly the item: flags, empty values,
// expiry at the 30-day boundary, and the largest item (key+value 1 MiB - 1),
// which it accepts; one byte more is refused there as too large.
func TestAppendHandoffParses(t *testing.T) {
	const now = 1_800_000_000
	cases := []struct {
		name        string
		key         string
		value       int
		flags       uint32
		expires     int64
		quiet       bool
		wantExptime int64
		tooLarge    bool
	}{
		{"empty value, no flags", "k", 0, 0, 0, false, 0, false},
		{"all flag bits", "flags", 10, 0xffffffff, 0, false, 0, false},
		{"flags 1", "one", 1, 1, 0, true, 0, false},
		{"relative expiry", "ttl", 100, 7, now + 90, false, 90, false},
		{"30 days", "30d", 5, 0, now + 30*day, false, 30 * day, false},
		{"30 days and a second", "30d+1", 5, 0, now + 30*day + 1, true, now + 30*day + 1, false},
		{"longest key", strings.Repeat("k", 250), 3, 9, 0, false, 0, false},
		{"1 MiB - 1", "big", 1<<20 - 1 - 3, 0xabcdef, now + 60, false, 60, false},
		{"1 MiB: refused by the owner", "big", 1<<20 - 3, 0, 0, false, 0, true},
	}
	var p codec.Parser
	var req codec.Request
	for i, c := range cases {
		val := make([]byte, c.value)
		for j := range val {
			val[j] = byte(j * 7)
		}
		it := engine.ExportedItem{Key: []byte(c.key), Value: val, Flags: c.flags, Expires: c.expires}
		buf, ok := AppendHandoff(nil, &it, now, c.quiet, uint32(i))
		if !ok {
			t.Fatalf("%s: not encoded", c.name)
		}
		n, err := p.ParseBinary(buf, &req)
		if err != nil || n == 0 {
			t.Fatalf("%s: parse: %d, %v", c.name, n, err)
		}
		if c.tooLarge {
			if req.Refused != codec.CmdAdd {
				t.Errorf("%s: not refused (refused %v)", c.name, req.Refused)
			}
			continue
		}
		switch {
		case n != len(buf):
			t.Errorf("%s: parser used %d of %d bytes", c.name, n, len(buf))
		case req.Cmd != codec.CmdAdd || req.Quiet != c.quiet || req.Refused != codec.CmdNone:
			t.Errorf("%s: command %v quiet %v refused %v", c.name, req.Cmd, req.Quiet, req.Refused)
		case string(req.Key) != c.key || !bytes.Equal(req.Value, val):
			t.Errorf("%s: key %q and a %d-byte value differ", c.name, req.Key, len(req.Value))
		case req.Flags != c.flags || req.Exptime != c.wantExptime:
			t.Errorf("%s: flags %#x exptime %d, want %#x %d", c.name, req.Flags, req.Exptime, c.flags, c.wantExptime)
		case req.CAS != 0 || req.Opaque != uint32(i):
			t.Errorf("%s: CAS %d opaque %d", c.name, req.CAS, req.Opaque)
		}
	}
}

// handoverCluster is three nodes' caches 3 and 7 on one clock: n1 leaves,
// n2 and n3 stay.
type handoverCluster struct {
	clk   *engine.Clock
	nodes map[string]*Tenants
	after Owners // the owners without n1
}

func newHandoverCluster(t *testing.T) *handoverCluster {
	t.Helper()
	hc := &handoverCluster{clk: engine.NewClock(time.Hour), nodes: map[string]*Tenants{}}
	t.Cleanup(hc.clk.Stop)
	for _, name := range []string{"n1", "n2", "n3"} {
		mem, err := engine.NewMemory(engine.Config{MemoryBytes: 64 << 20, Clock: hc.clk, CrawlInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := Fixed(mem, []control.Cache{
			{ID: 7, Name: "seven", LimitBytes: 24 << 20, Enabled: true},
			{ID: 3, Name: "three", LimitBytes: 24 << 20, Enabled: true},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ts.Close(); mem.Close() })
		hc.nodes[name] = ts
	}
	all := nodes("n1", "n2", "n3")
	hc.after.Set(all[1:], "n1")
	return hc
}

// deliver hands n1's items over as a server would: each request is
// encoded, parsed by codec on the owner and stored there as binary ADD
// is. It returns how many requests each owner got, and the exptime each
// key was sent with.
func (hc *handoverCluster) deliver(t *testing.T) (map[string]int, map[string]int64) {
	t.Helper()
	sent := map[string]int{}
	exptimes := map[string]int64{}
	var p codec.Parser
	var req codec.Request
	var buf []byte
	for h := range HandOver(&hc.after, hc.nodes["n1"].Caches()) {
		if h.Owner.Name == "n1" {
			t.Fatalf("%s handed to the leaving node", h.Item.Key)
		}
		var ok bool
		buf, ok = AppendHandoff(buf[:0], &h.Item, hc.clk.Unix(), false, 0)
		if !ok {
			continue
		}
		if _, err := p.ParseBinary(buf, &req); err != nil || req.Cmd != codec.CmdAdd {
			t.Fatalf("%s: %v %v", h.Item.Key, req.Cmd, err)
		}
		eng := hc.nodes[h.Owner.Name].Engine(h.Cache)
		eng.Store(engine.ModeAdd, req.Key, req.Flags, req.Exptime, req.Value, req.CAS)
		sent[h.Owner.Name]++
		exptimes[string(req.Key)] = req.Exptime
	}
	return sent, exptimes
}

type stored struct {
	value   string
	flags   uint32
	expires int64
}

func contents(e *engine.Engine) map[string]stored {
	m := map[string]stored{}
	e.Export(func(it engine.ExportedItem) bool {
		m[string(it.Key)] = stored{string(it.Value), it.Flags, it.Expires}
		return true
	})
	return m
}

// TestHandOverStoresEachItemOnItsOwner: every live item of every cache of
// the leaving node ends up on the node that owns its key without it, with
// its value, flags and expiry (at and around the 30-day boundary) exactly;
// a key its owner already holds keeps the owner's (newer) value; expired
// items do not travel.
func TestHandOverStoresEachItemOnItsOwner(t *testing.T) {
	hc := newHandoverCluster(t)
	leaving := hc.nodes["n1"]
	want := map[uint32]map[string]stored{3: {}, 7: {}}
	// Seconds each item has left when stored; the clock then moves 10 s
	// on, so that at the handover they have 30 days less a second, 30
	// days, and 30 days and a second left.
	lefts := []int64{0, 3600, 30*day + 9, 30*day + 10, 30*day + 11, 60 * day}
	// The clock reads wall time whenever it ticks (Advance ticks): begin
	// just after a wall-clock second starts, so that the stores and the
	// Advance below fall within one second and the clock moves by exactly
	// 10. A second boundary crossed in between made it move by 11, and
	// every expected exptime one second off.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	hc.clk.Advance(0)
	start := hc.clk.Unix()
	for _, id := range []uint32{3, 7} {
		eng := leaving.Engine(id)
		for i := 0; i < 3000; i++ {
			key := fmt.Sprintf("c%d-key-%d", id, i)
			val := strings.Repeat(string(rune('a'+i%26)), i%500)
			left := lefts[i%len(lefts)]
			exptime, expires := left, start+left
			switch {
			case left == 0:
				expires = 0
			case left > 30*day:
				exptime = expires // memcached reads it as a unix time
			}
			if st, _ := eng.Store(engine.ModeSet, []byte(key), uint32(i*31), exptime, []byte(val), 0); st != engine.Stored {
				t.Fatalf("%s: %v", key, st)
			}
			want[id][key] = stored{val, uint32(i * 31), expires}
		}
		eng.Store(engine.ModeSet, []byte("short-lived"), 0, 5, []byte("v"), 0)
	}
	// A newer write reached the new owner of one key before the handover.
	newer := "c7-key-42"
	owner, _ := hc.after.Owner(7, []byte(newer))
	hc.nodes[owner.Name].Engine(7).Store(engine.ModeSet, []byte(newer), 1, 0, []byte("newer"), 0)
	hc.clk.Advance(10) // short-lived has expired

	sent, exptimes := hc.deliver(t)
	if sent["n2"] == 0 || sent["n3"] == 0 || sent["n2"]+sent["n3"] != 6000 {
		t.Errorf("handed over %v, want all 6000 items split over n2 and n3", sent)
	}
	for i, w := range map[int]int64{0: 0, 1: 3590, 2: 30*day - 1, 3: 30 * day, 4: start + 30*day + 11, 5: start + 60*day} {
		if k := fmt.Sprintf("c3-key-%d", i); exptimes[k] != w {
			t.Errorf("%s sent with exptime %d, want %d", k, exptimes[k], w)
		}
	}
	for _, id := range []uint32{3, 7} {
		got := map[string]map[string]stored{"n2": contents(hc.nodes["n2"].Engine(id)), "n3": contents(hc.nodes["n3"].Engine(id))}
		for k, w := range want[id] {
			owner, _ := hc.after.Owner(id, []byte(k))
			g, ok := got[owner.Name][k]
			if k == newer {
				w = stored{"newer", 1, 0}
			}
			if !ok || g != w {
				t.Fatalf("cache %d %s on %s: %v (%d bytes, flags %d, expires %d), want %d bytes, flags %d, expires %d",
					id, k, owner.Name, ok, len(g.value), g.flags, g.expires, len(w.value), w.flags, w.expires)
			}
		}
		for _, n := range []string{"n2", "n3"} {
			if _, ok := got[n]["short-lived"]; ok {
				t.Errorf("an expired item reached %s", n)
			}
		}
	}
}

// TestHandOverNowhereToGo: with no other node left (an empty Owners, or
// one naming only this node) nothing is handed over.
func TestHandOverNowhereToGo(t *testing.T) {
	hc := newHandoverCluster(t)
	hc.nodes["n1"].Engine(3).Store(engine.ModeSet, []byte("k"), 0, 0, []byte("v"), 0)
	var empty, alone Owners
	alone.Set(nodes("n1"), "n1")
	for name, o := range map[string]*Owners{"empty": &empty, "alone": &alone} {
		for h := range HandOver(o, hc.nodes["n1"].Caches()) {
			t.Errorf("%s: %s handed to %v", name, h.Item.Key, h.Owner)
		}
	}
}

// TestHandOverBreak: leaving the loop ends the walk, across caches too.
func TestHandOverBreak(t *testing.T) {
	hc := newHandoverCluster(t)
	for _, id := range []uint32{3, 7} {
		for i := 0; i < 100; i++ {
			hc.nodes["n1"].Engine(id).Store(engine.ModeSet, []byte(fmt.Sprint(i)), 0, 0, []byte("v"), 0)
		}
	}
	caches := hc.nodes["n1"].Caches()
	if len(caches) != 2 || caches[0].ID() != 3 || caches[1].ID() != 7 {
		t.Fatalf("Caches: want ids 3, 7 in order")
	}
	n := 0
	for h := range HandOver(&hc.after, caches) {
		if h.Cache != 3 {
			t.Fatalf("cache %d reached before the loop ended", h.Cache)
		}
		if n++; n == 5 {
			break
		}
	}
}

// BenchmarkHandOver: items planned (owner lookup) and encoded a second,
// from a cache of 100-byte values, and allocations per item.
func BenchmarkHandOver(b *testing.B) {
	clk := engine.NewClock(time.Hour)
	defer clk.Stop()
	mem, err := engine.NewMemory(engine.Config{MemoryBytes: 128 << 20, Clock: clk, CrawlInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	ts, err := Fixed(mem, []control.Cache{{ID: 1, Name: "c", LimitBytes: 100 << 20, Enabled: true}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ts.Close()
	const n = 200_000
	val := make([]byte, 100)
	for i := 0; i < n; i++ {
		ts.Engine(1).Store(engine.ModeSet, []byte(fmt.Sprintf("key:%d", i)), 0, 3600, val, 0)
	}
	var after Owners
	after.Set(nodes("n1", "n2", "n3", "n4")[1:], "n1") // without this node, n1
	caches := ts.Caches()
	out := map[string][]byte{"n2": nil, "n3": nil, "n4": nil}
	run := func() {
		for name := range out {
			out[name] = out[name][:0]
		}
		now := clk.Unix()
		for h := range HandOver(&after, caches) {
			out[h.Owner.Name], _ = AppendHandoff(out[h.Owner.Name], &h.Item, now, true, 0)
		}
	}
	run()
	b.ReportAllocs()
	b.ResetTimer()
	var before, end runtime.MemStats
	runtime.ReadMemStats(&before)
	for range b.N {
		run()
	}
	runtime.ReadMemStats(&end)
	b.StopTimer()
	items := float64(n) * float64(b.N)
	b.ReportMetric(items/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(end.Mallocs-before.Mallocs)/items, "allocs/item")
}
