package analytics

import (
	"log/slog"
	"sync"
	"time"

	"github.com/memhive/memhive/control"
)

// Sampler stores every cache's stats in the control store at a fixed
// interval, for the history graphs, and drops samples older than the
// retention. "New evictions" and an interval's hit rate are the
// differences of consecutive samples.
type Sampler struct {
	store     control.Store
	source    Source
	server    string
	interval  time.Duration
	retention time.Duration
	log       *slog.Logger
	stop      chan struct{}
	done      sync.WaitGroup
	once      sync.Once
}

// StartSampler samples at once and then every interval until Stop.
func StartSampler(store control.Store, source Source, server string, interval, retention time.Duration, log *slog.Logger) *Sampler {
	if log == nil {
		log = slog.Default()
	}
	s := &Sampler{store: store, source: source, server: server, interval: interval, retention: retention, log: log, stop: make(chan struct{})}
	s.done.Add(1)
	go s.run()
	return s
}

func (s *Sampler) run() {
	defer s.done.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.SampleOnce(time.Now())
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// SampleOnce takes one sample of every cache at now and prunes old ones.
func (s *Sampler) SampleOnce(now time.Time) {
	var samples []control.Sample
	for _, id := range s.source.CacheIDs() {
		if st, ok := s.source.CacheStats(id); ok {
			samples = append(samples, control.Sample{CacheID: id, Server: s.server, Time: now, Stats: st})
		}
	}
	if err := s.store.AppendHistory(samples); err != nil {
		s.log.Warn("storing stats history", "err", err)
	}
	if err := s.store.PruneHistory(now.Add(-s.retention)); err != nil {
		s.log.Warn("pruning stats history", "err", err)
	}
}

// Stop ends sampling.
func (s *Sampler) Stop() {
	s.once.Do(func() { close(s.stop) })
	s.done.Wait()
}
