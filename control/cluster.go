package control

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Member is one live node of a cluster, as its lease-backed key in etcd
// describes it.
type Member struct {
	// Name is the node's --node name; the server list is in name order.
	Name string `json:"name"`
	// Advertise is the memcache host:port clients use.
	Advertise string `json:"advertise"`
	// HTTP is the host:port of the node's HTTP endpoints, where the other
	// nodes ask it for stats, history and flushes.
	HTTP string `json:"http"`
	// Version is the memhive version the node runs.
	Version string `json:"version"`
}

// Cluster is what a node knows of the cluster it belongs to.
type Cluster interface {
	// Members lists the live nodes in name order: the last list seen when
	// etcd cannot be reached.
	Members() []Member
	// WatchMembers calls fn with the live nodes in name order, now and
	// after every change of the list, until cancel is called. Calls are
	// in order, one at a time; fn must return quickly.
	WatchMembers(fn func([]Member)) (cancel func())
	// Secret is the shared secret nodes present when they call each
	// other's HTTP endpoints.
	Secret() string
}

// EtcdConfig configures OpenEtcd.
type EtcdConfig struct {
	// Endpoints are etcd's client URLs.
	Endpoints []string
	// Prefix is put before every key memhive writes; "" means "/memhive".
	Prefix string
	// TLS, if not nil, is used to reach etcd (--etcd-ca/cert/key).
	TLS *tls.Config
	// Dir is a local directory (--data) for the copy of the last state
	// seen, so a node restarted while etcd is away still serves the logins
	// it knew, and for this node's stats history.
	Dir string
	// DialTimeout bounds each attempt to reach etcd; 0 means 2 s.
	DialTimeout time.Duration
	// LeaseTTL is the membership lease: a node that dies leaves the
	// member list within it. 0 means 5 s.
	LeaseTTL time.Duration
	// Logger gets the store's transitions ("etcd unreachable; serving
	// the last state seen", "etcd reachable again"), each logged once;
	// nil means slog.Default().
	Logger *slog.Logger
}
