package control_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/control/storetest"
)

// TestBoltContract runs the Store contract suite against the embedded
// backend. It is an external test: control's internal tests cannot import
// storetest, which imports control.
func TestBoltContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, p control.Policy) control.Store {
		s, err := control.Open(filepath.Join(t.TempDir(), "control.db"), p, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
