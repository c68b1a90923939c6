package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestStopRestart writes a key, stops etcd, starts it again on the same
// data, and reads the key back: the outage a cluster test plays.
func TestStopRestart(t *testing.T) {
	e := Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := cli.Get(short, "k"); err == nil {
		t.Fatal("a read succeeded while etcd was stopped")
	}
	cancelShort()
	e.Restart()
	got, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v" {
		t.Fatalf("after restart k = %v, want v", got.Kvs)
	}
}
