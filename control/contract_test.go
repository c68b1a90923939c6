package control_test

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memhive/memhive/control"
	"github.com/memhive/memhive/control/storetest"
	"github.com/memhive/memhive/internal/etcdtest"
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

// TestEtcdContract runs the Store contract suite against the etcd
// backend: one embedded etcd for the whole suite, each subtest on a
// prefix and a local directory of its own, so that they start empty.
func TestEtcdContract(t *testing.T) {
	etcd := etcdtest.Start(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T, p control.Policy) control.Store {
		s, err := control.OpenEtcd(control.EtcdConfig{
			Endpoints: etcd.Endpoints(),
			Prefix:    fmt.Sprintf("/contract%d", n.Add(1)),
			Dir:       t.TempDir(),
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
