package tenancy

import "github.com/memhive/memhive/engine"

// Snapshot reads the cache's counters for engine.StatTable: its engine's,
// and those of its connections. Both "stats" and the analytics API
// (Tenants.CacheStats) read a cache through it.
func (tn *Cache) Snapshot() engine.StatSnapshot {
	snap := tn.eng.StatSnapshot(tn.Conns.Snapshot())
	snap.Routed = tn.routing != nil && tn.routing.Load()
	return snap
}

// Snapshot sums the connection counters for engine.StatTable.
func (c *ConnCounters) Snapshot() engine.ConnStats {
	t := c.Totals()
	return engine.ConnStats{
		// Never below zero: a connection is counted in before it is
		// counted out.
		Curr:          uint64(max(0, c.CurrConns.Load())),
		Total:         c.TotalConns.Load(),
		BytesRead:     t.BytesRead,
		BytesWritten:  t.BytesWritten,
		StoreTooLarge: t.StoreTooLarge,
		AuthCmds:      t.AuthCmds,
		AuthErrors:    t.AuthErrors,
		MetaCmds:      t.MetaCmds,
		Forwarded:     t.Forwarded,
		ForwardErrors: t.ForwardErrors,
		HandedOver:    c.HandedOver.Load(),
	}
}
