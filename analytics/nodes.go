package analytics

import (
	"cmp"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/memhive/memhive/control"
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
	// Flush empties cache id on every node, as flush_all does, and
	// returns once every node has answered (or been given up on).
	Flush(id uint32) (failed []string)
	// History is cache id's stats samples taken at or after since on
	// every node that answered, oldest first, each naming its node in
	// Server: a node samples only what it holds, and keeps its samples
	// itself.
	History(id uint32, since time.Time) (samples []control.Sample, failed []string)
}

// HistoryReader is where a node keeps the stats samples it took: its
// control.Store, whose History answers for this node alone in a cluster
// (each node samples and keeps its own share of a cache).
type HistoryReader interface {
	// History returns a cache's samples taken at or after since, oldest first.
	History(cacheID uint32, since time.Time) ([]control.Sample, error)
}

// DefaultStatsTimeout bounds how long LocalNode waits for a cache's
// statistics when its Timeout is zero.
const DefaultStatsTimeout = 5 * time.Second

// LocalNode is this process as the only node of every cache it serves.
type LocalNode struct {
	Source Source
	// Store holds this node's stats history; nil fails every History.
	Store HistoryReader
	// Logger receives why a History failed (the API's answer only names
	// the node); nil means slog.Default().
	Logger *slog.Logger
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

// History implements Nodes from this node's store. A store that fails
// fails the node, named as Stats names it, so that /history reports a
// failure as /stats does.
func (n LocalNode) History(id uint32, since time.Time) ([]control.Sample, []string) {
	if n.Store == nil {
		return nil, []string{n.Name}
	}
	samples, err := n.Store.History(id, since)
	if err != nil {
		n.logger().Warn("reading stats history", "cache", id, "err", err)
		return nil, []string{n.Name}
	}
	return samples, nil
}

func (n LocalNode) logger() *slog.Logger {
	if n.Logger == nil {
		return slog.Default()
	}
	return n.Logger
}

// sortSamples orders samples by time, then by server, so that merged
// answers do not depend on the order in which nodes answered.
func sortSamples(samples []control.Sample) {
	slices.SortStableFunc(samples, func(a, b control.Sample) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Server, b.Server)
	})
}

// serverError is MemCachier's answer naming the nodes that failed:
// "Server error: host:port,host:port", sorted so that it does not depend
// on the order in which nodes answered.
func serverError(failed []string) string {
	names := append([]string(nil), failed...)
	sort.Strings(names)
	return msgServer + ": " + strings.Join(names, ",")
}
