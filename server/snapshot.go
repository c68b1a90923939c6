package server

import "github.com/memhive/memhive/engine"

// snapshot reads cache tn's counters for engine.StatTable: its engine's,
// and the server's of its connections. Both "stats" and the analytics API
// (Tenants.CacheStats) read a cache through it.
func (tn *tenant) snapshot() engine.StatSnapshot {
	return tn.eng.StatSnapshot(tn.stats.snapshot())
}

// snapshot sums the connection counters for engine.StatTable.
func (c *connStats) snapshot() engine.ConnStats {
	t := c.totals()
	return engine.ConnStats{
		// Never below zero: a connection is counted in before it is
		// counted out.
		Curr:          uint64(max(0, c.currConns.Load())),
		Total:         c.totalConns.Load(),
		BytesRead:     t.bytesRead,
		BytesWritten:  t.bytesWritten,
		StoreTooLarge: t.storeTooLarge,
		AuthCmds:      t.authCmds,
		AuthErrors:    t.authErrors,
		MetaCmds:      t.metaCmds,
	}
}
