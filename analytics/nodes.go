package analytics

import (
	"sort"
	"strings"
	"time"
)

// Nodes is how the analytics API reaches the memcache nodes that hold a
// cache. Each call answers for the nodes that answered and names, by
// host:port, the nodes that did not, because MemCachier's API reports a
// partial failure by listing them: 500 "Server error: host:port,...".
// A single server is one node (LocalNode); a cluster fans out to each of
// its nodes behind the same interface. Implementations are safe for
// concurrent use.
type Nodes interface {
	// Stats gathers cache id's statistics under memcached's names, one
	// entry per node that answered, keyed by the node's host:port.
	Stats(id uint32) (byNode map[string]map[string]uint64, failed []string)
	// Flush empties cache id on every node, as flush_all does.
	Flush(id uint32) (failed []string)
}

// DefaultStatsTimeout bounds how long LocalNode waits for a cache's
// statistics when its Timeout is zero.
const DefaultStatsTimeout = 5 * time.Second

// LocalNode is this process as the only node of every cache it serves.
type LocalNode struct {
	Source Source
	// Name is the node's host:port as clients reach it (the memcache
	// address), the name stats answers and errors use.
	Name string
	// Timeout bounds gathering stats: a node that has not answered by
	// then counts as failed, so that a stuck engine costs the caller an
	// error rather than a hung request. Zero means DefaultStatsTimeout.
	Timeout time.Duration
}

// Stats implements Nodes. A cache this process does not serve (its
// engine missing, or closing) fails, as does one whose statistics take
// longer than the timeout; the late answer is then dropped.
func (n LocalNode) Stats(id uint32) (map[string]map[string]uint64, []string) {
	type answer struct {
		stats map[string]uint64
		ok    bool
	}
	done := make(chan answer, 1) // buffered: a late answer does not block its goroutine
	go func() {
		st, ok := n.Source.CacheStats(id)
		done <- answer{st, ok}
	}()
	timeout := n.Timeout
	if timeout <= 0 {
		timeout = DefaultStatsTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case a := <-done:
		if !a.ok {
			return nil, []string{n.Name}
		}
		return map[string]map[string]uint64{n.Name: a.stats}, nil
	case <-timer.C:
		return nil, []string{n.Name}
	}
}

// Flush implements Nodes. It waits for the flush however long it takes:
// a flush reported as failed that then completes would mislead.
func (n LocalNode) Flush(id uint32) []string {
	if !n.Source.Flush(id) {
		return []string{n.Name}
	}
	return nil
}

// serverError is MemCachier's answer naming the nodes that failed:
// "Server error: host:port,host:port", sorted so that it does not depend
// on the order in which nodes answered.
func serverError(failed []string) string {
	names := append([]string(nil), failed...)
	sort.Strings(names)
	return msgServer + ": " + strings.Join(names, ",")
}
