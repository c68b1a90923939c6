package engine

import (
	"strconv"
	"testing"
)

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("key:" + strconv.Itoa(i))
	}
	return keys
}

func BenchmarkEngineSet(b *testing.B) {
	e, _ := newTestEngine(b, 256)
	keys := benchKeys(100_000)
	val := make([]byte, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(val)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Store(ModeSet, keys[i%len(keys)], 0, 0, val, 0)
			i++
		}
	})
}

func BenchmarkEngineGetHit(b *testing.B) {
	e, _ := newTestEngine(b, 256)
	keys := benchKeys(100_000)
	val := make([]byte, 100)
	for _, k := range keys {
		e.Store(ModeSet, k, 0, 0, val, 0)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(val)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]byte, 0, 256)
		i := 0
		for pb.Next() {
			if r, ok := e.Get(keys[i%len(keys)]); ok {
				out = append(out[:0], r.Value()...)
				r.Release()
			}
			i++
		}
	})
}
