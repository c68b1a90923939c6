package tenancy

import "sync/atomic"

// ConnCounters are the connection-level counters of a cache (Cache.Conns)
// or of a server's connections that use none. The server adds to them
// from its event loops without allocating; CacheStats and the server's
// stats sum them when read. Byte counters are sharded by file descriptor
// so that event loops rarely share a cache line. Safe for concurrent use.
type ConnCounters struct {
	CurrConns     atomic.Int64
	TotalConns    atomic.Uint64
	RejectedConns atomic.Uint64
	// HandedOver counts the items this node handed over to their new
	// owners when it left the cluster gracefully (issue 15's handover);
	// add to it with AddHandedOver.
	HandedOver atomic.Uint64
	shards     [32]ConnShard
}

// AddHandedOver counts n items of the cache handed over to another node.
func (c *ConnCounters) AddHandedOver(n uint64) { c.HandedOver.Add(n) }

// ConnShard is one shard of a ConnCounters' per-connection counters: the
// one a connection adds to, chosen by Shard.
type ConnShard struct {
	BytesRead     atomic.Uint64
	BytesWritten  atomic.Uint64
	StoreTooLarge atomic.Uint64
	AuthCmds      atomic.Uint64
	AuthErrors    atomic.Uint64
	MetaCmds      atomic.Uint64
	// Forwarded counts requests sent to the node that owns their key;
	// ForwardErrors those of them whose owner did not answer in time or
	// could not be reached (answered with a miss or a server error).
	Forwarded     atomic.Uint64
	ForwardErrors atomic.Uint64
}

// Shard is the shard the connection on file descriptor fd adds to; it
// lives as long as c.
func (c *ConnCounters) Shard(fd int) *ConnShard { return &c.shards[fd&31] }

// ConnTotals are a ConnCounters' shards summed.
type ConnTotals struct {
	BytesRead, BytesWritten, StoreTooLarge, AuthCmds, AuthErrors, MetaCmds uint64
	Forwarded, ForwardErrors                                               uint64
}

// Totals sums the shards.
func (c *ConnCounters) Totals() ConnTotals {
	var t ConnTotals
	for i := range c.shards {
		s := &c.shards[i]
		t.BytesRead += s.BytesRead.Load()
		t.BytesWritten += s.BytesWritten.Load()
		t.StoreTooLarge += s.StoreTooLarge.Load()
		t.AuthCmds += s.AuthCmds.Load()
		t.AuthErrors += s.AuthErrors.Load()
		t.MetaCmds += s.MetaCmds.Load()
		t.Forwarded += s.Forwarded.Load()
		t.ForwardErrors += s.ForwardErrors.Load()
	}
	return t
}

// Reset zeroes the counters, keeping CurrConns, a gauge ("stats reset").
func (c *ConnCounters) Reset() {
	c.TotalConns.Store(0)
	c.RejectedConns.Store(0)
	c.HandedOver.Store(0)
	for i := range c.shards {
		s := &c.shards[i]
		s.BytesRead.Store(0)
		s.BytesWritten.Store(0)
		s.StoreTooLarge.Store(0)
		s.AuthCmds.Store(0)
		s.AuthErrors.Store(0)
		s.MetaCmds.Store(0)
		s.Forwarded.Store(0)
		s.ForwardErrors.Store(0)
	}
}
