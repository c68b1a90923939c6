package control

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/memhive/memhive/internal/atomicfile"
)

// stateCopy is the local copy of the last state seen, as written to
// cfg.Dir: everything under the prefix (records, members, secret) at one
// revision. A node restarted while etcd is away serves it.
type stateCopy struct {
	Prefix   string             `json:"prefix"`
	Revision int64              `json:"revision"`
	Saved    time.Time          `json:"saved"`
	KV       map[string]kvEntry `json:"kv"`
}

// saveDebounce gathers a burst of changes into one write of the copy: it
// is only read when a node restarts while etcd is away, so the last
// quarter second of changes is worth less than rewriting it after each.
const saveDebounce = 250 * time.Millisecond

// saver is the goroutine that writes the copy after changes, at most once
// per saveDebounce, and once more when the store closes.
func (e *Etcd) saver() {
	defer close(e.saved)
	var last int64 = -1
	for range e.saveSignal {
		select {
		case <-time.After(saveDebounce):
		case <-e.ctx.Done(): // closing: save now
		}
		last = e.saveCopy(last)
	}
	e.saveCopy(last)
}

// saveCopy writes the copy if its revision moved since last; it returns
// the revision written.
func (e *Etcd) saveCopy(last int64) int64 {
	e.mu.RLock()
	c := stateCopy{Prefix: e.cfg.Prefix, Revision: e.st.rev, Saved: time.Now().UTC(), KV: make(map[string]kvEntry, len(e.st.kv))}
	for k, v := range e.st.kv {
		c.KV[k] = v
	}
	e.mu.RUnlock()
	if c.Revision == last {
		return last
	}
	if err := atomicfile.WriteJSON(e.copyPath(), c); err != nil {
		e.log.Warn("etcd store: saving the last state seen", "err", err)
		return last
	}
	return c.Revision
}

// loadCopy reads the copy at path, if it was saved for prefix.
func loadCopy(path, prefix string) (*etcdState, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c stateCopy
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Prefix != prefix {
		return nil, fmt.Errorf("%s holds prefix %q, not %q", path, c.Prefix, prefix)
	}
	st := newEtcdState()
	st.rev = c.Revision
	for k, v := range c.KV {
		st.set(k, v)
	}
	return st, nil
}
