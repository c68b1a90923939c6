package e2e

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

const (
	// memLimitMiB is the server's item memory bound (--memory / -m).
	memLimitMiB = 64

	// rssOverheadMiB is what the process may hold beyond memLimitMiB.
	// memcached 1.6.18 stays near 70 MiB in this test (the hash table,
	// per-thread and per-connection buffers, slab headers). memhive also
	// carries the Go runtime (a few MiB), its off-heap index, gnet's
	// per-connection input and output buffers (each fill connection moves
	// values up to 500 KB) and heap garbage between collections; 48 MiB
	// bounds all that while still catching item memory that is not bounded
	// by --memory (the fill writes 400 MiB, six times the limit).
	rssOverheadMiB = 48

	fillBytes   = 400 << 20 // total value bytes written by the fill
	fillWorkers = 8
	minValue    = 100
	maxValue    = 500_000

	fillTimeLimit = 45 * time.Second // memcached needs well under 1 s
	maxRefusals   = 1000             // out-of-memory answers before the fill gives up
)

// valuePool is the random source the fill's values are cut from; a value is
// identified by its offset and length, so a reader can check it without
// the writer keeping a copy.
var valuePool = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// fillItem is one written item, kept to read it back.
type fillItem struct {
	key      string
	off, len int
}

func (f fillItem) value() []byte { return valuePool[f.off : f.off+f.len] }

// TestMemoryBound fills a server started with --memory 64 with 400 MiB of
// values of mixed sizes from several connections, then checks that it
// evicted, that its resident memory stayed within the limit plus
// rssOverheadMiB, and that recent writes are readable.
func TestMemoryBound(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{memoryMiB: memLimitMiB, threads: 4, maxItemSize: "1m"})
	c := newGomemcache(s.Addr, fillWorkers)
	defer c.Close()

	// Sample RSS while filling; the kernel's high-water mark is read at the
	// end as well, as it also catches peaks between samples.
	var maxRSS atomic.Int64
	stopSampling := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := s.RSS(); err == nil && rss > maxRSS.Load() {
				maxRSS.Store(rss)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	var (
		written   atomic.Int64
		sets      atomic.Int64
		oom       atomic.Int64 // SERVER_ERROR out of memory storing object
		wg        sync.WaitGroup
		errs      = make(chan error, fillWorkers)
		lastItems = make([][]fillItem, fillWorkers)
	)
	start := time.Now()
	for w := 0; w < fillWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			var last []fillItem
			errs <- func() error {
				for i := 0; written.Load() < fillBytes; i++ {
					// Refusals do not count as written, so a store that
					// refuses instead of evicting would never finish.
					if time.Since(start) > fillTimeLimit {
						return fmt.Errorf("fill stopped after %v with %d MiB written", fillTimeLimit, written.Load()>>20)
					}
					if oom.Load() > maxRefusals {
						break
					}
					// Log-uniform sizes: as many 100 B..1 KB values as
					// 50 KB..500 KB ones, so every size class fills.
					n := int(math.Exp(math.Log(minValue) + r.Float64()*(math.Log(maxValue)-math.Log(minValue))))
					it := fillItem{key: fmt.Sprintf("fill-%d-%d", w, i), off: r.IntN(len(valuePool) - n), len: n}
					err := c.Set(&memcache.Item{Key: it.key, Value: it.value()})
					sets.Add(1)
					if err != nil {
						if strings.Contains(err.Error(), "SERVER_ERROR out of memory storing object") {
							oom.Add(1)
							continue
						}
						return fmt.Errorf("Set %s (%d bytes) after %d MiB: %v", it.key, n, written.Load()>>20, err)
					}
					written.Add(int64(n))
					last = append(last, it)
					if len(last) > 3 {
						last = last[1:]
					}
				}
				lastItems[w] = last
				return nil
			}()
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	elapsed := time.Since(start)
	t.Logf("wrote %d MiB in %d sets (%d refused as out of memory) in %v",
		written.Load()>>20, sets.Load(), oom.Load(), elapsed.Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}
	// A refusal now and then is memcached behaviour (a slab class with no
	// page to evict from); more than 1% means the store is not evicting.
	if n := oom.Load(); n*100 > sets.Load() {
		t.Errorf("%d of %d sets answered out of memory; want evictions instead", n, sets.Load())
	}

	// Recent writes survive: the last item of each worker, then fresh ones.
	for w, last := range lastItems {
		if len(last) == 0 {
			t.Errorf("worker %d wrote nothing", w)
			continue
		}
		it := last[len(last)-1]
		got, err := c.Get(it.key)
		if err != nil {
			t.Errorf("Get %s (last write of worker %d, %d bytes): %v", it.key, w, it.len, err)
		} else if !bytes.Equal(got.Value, it.value()) {
			t.Errorf("Get %s: %d bytes differing from the %d written", it.key, len(got.Value), it.len)
		}
	}
	for i := 0; i < 100; i++ {
		key := fmt.Sprintf("fresh-%d", i)
		val := valuePool[i*1000 : i*1000+1000]
		if err := c.Set(&memcache.Item{Key: key, Value: val}); err != nil {
			t.Fatalf("Set %s after the fill: %v", key, err)
		}
	}
	for i := 0; i < 100; i++ {
		key := fmt.Sprintf("fresh-%d", i)
		got, err := c.Get(key)
		if err != nil {
			t.Errorf("Get %s just written after the fill: %v", key, err)
		} else if !bytes.Equal(got.Value, valuePool[i*1000:i*1000+1000]) {
			t.Errorf("Get %s: wrong value", key)
		}
	}

	stats := serverStats(t, s.Addr)
	close(stopSampling)
	<-samplerDone
	if rss, err := s.RSS(); err == nil && rss > maxRSS.Load() {
		maxRSS.Store(rss)
	}
	evictions := statInt(t, stats, "evictions")
	limit := statInt(t, stats, "limit_maxbytes")
	used := statInt(t, stats, "bytes")
	t.Logf("stats: evictions=%d curr_items=%s bytes=%d limit_maxbytes=%d total_items=%s",
		evictions, stats["curr_items"], used, limit, stats["total_items"])
	if evictions <= 0 {
		t.Errorf("evictions = %d after writing %d MiB into %d MiB; want > 0", evictions, written.Load()>>20, memLimitMiB)
	}
	if limit != memLimitMiB<<20 {
		t.Errorf("limit_maxbytes = %d, want %d", limit, memLimitMiB<<20)
	}
	if used > limit {
		t.Errorf("bytes = %d exceeds limit_maxbytes = %d", used, limit)
	}

	const rssLimit = (memLimitMiB + rssOverheadMiB) << 20
	hwm, err := peakRSS(s.Pid)
	if err != nil {
		t.Fatalf("reading the server's peak RSS: %v", err)
	}
	t.Logf("RSS: max sampled %.1f MiB, peak (VmHWM) %.1f MiB, limit %d MiB",
		float64(maxRSS.Load())/(1<<20), float64(hwm)/(1<<20), rssLimit>>20)
	if m := maxRSS.Load(); m > rssLimit {
		t.Errorf("RSS reached %.1f MiB; want <= %d MiB (--memory %d + %d overhead)",
			float64(m)/(1<<20), rssLimit>>20, memLimitMiB, rssOverheadMiB)
	}
	if hwm > rssLimit {
		t.Errorf("peak RSS (VmHWM) %.1f MiB; want <= %d MiB (--memory %d + %d overhead)",
			float64(hwm)/(1<<20), rssLimit>>20, memLimitMiB, rssOverheadMiB)
	}
	if s.Exited() {
		t.Fatalf("server exited; its output:\n%s", s.Output())
	}
}
