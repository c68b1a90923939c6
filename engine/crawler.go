package engine

import "time"

// crawlBatch is how many hash buckets the crawler checks per lock hold, so
// that requests on the same stripe wait at most a few microseconds.
const crawlBatch = 256

// crawl reclaims expired and flushed items in the background, so memory
// held by items nobody reads again is freed without waiting for eviction.
func (e *Engine) crawl(interval time.Duration) {
	defer e.crawlerDone.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-e.stopCrawler:
			return
		case <-t.C:
			e.CrawlOnce()
		}
	}
}

// CrawlOnce walks every stripe's index once, freeing expired and flushed
// items. It returns how many it freed.
func (e *Engine) CrawlOnce() int {
	freed := 0
	// A flush leaves items to reclaim until one pass has run after its
	// time; otherwise only stripes holding expiring items need a pass.
	ol := e.oldestLive.Load()
	flushWork := ol != 0 && e.flushCrawled.Load() <= ol
	for i := range e.stripes {
		s := &e.stripes[i]
		s.mu.Lock()
		idle := s.expiring == 0 && !flushWork
		s.mu.Unlock()
		if idle {
			continue
		}
		for b := 0; ; b += crawlBatch {
			select {
			case <-e.stopCrawler:
				return freed
			default:
			}
			s.mu.Lock()
			if b >= len(s.buckets) {
				s.mu.Unlock()
				break
			}
			freed += s.crawlLocked(b, min(b+crawlBatch, len(s.buckets)), e.clock.Now())
			s.mu.Unlock()
		}
	}
	if now := e.clock.Now(); flushWork && now > ol {
		e.flushCrawled.Store(now)
	}
	return freed
}

func (s *stripe) crawlLocked(from, to int, now uint32) int {
	freed := 0
	for b := from; b < to; b++ {
		for it := s.buckets[b]; it != 0; {
			next := s.items.HNext(it)
			s.st.crawlerChecked++
			// memcached's crawler counts what it frees in
			// crawler_reclaimed, flushed items too.
			if s.flushedLocked(it, now) {
				s.alloc.CountCrawled(it, true)
				s.removeLocked(it)
				s.st.crawlerReclaimed++
				freed++
			} else if exp := s.items.Exptime(it); exp != 0 && exp <= now {
				s.alloc.CountCrawled(it, false)
				s.removeLocked(it)
				s.st.crawlerReclaimed++
				s.st.crawlerExpired++
				freed++
			}
			it = next
		}
	}
	return freed
}
