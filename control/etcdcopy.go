package control

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	if err := writeAtomic(e.copyPath(), c); err != nil {
		e.log.Warn("etcd store: saving the last state seen", "err", err)
		return last
	}
	return c.Revision
}

// writeAtomic writes v as JSON to path so that a crash leaves either the
// old file or the new one: a temporary file, fsynced, renamed over path,
// and the directory fsynced for the rename.
func writeAtomic(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
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
