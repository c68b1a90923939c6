"""pylibmc over binary SASL against a memhive cluster, keys spread by ketama.

usage: pylibmc_cluster.py SERVERS USER PASS N
  SERVERS is MEMCACHIER_SERVERS: host:port,host:port,...
Stores N keys (cluster-py-0 .. cluster-py-N-1), each with a value naming
it, then reads every one back. Prints "N stored, M read back" last.
"""
import sys
import pylibmc


def main():
    servers, user, password, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = pylibmc.Client(servers.split(","), binary=True, username=user, password=password,
                       behaviors={"ketama": True, "connect_timeout": 2000, "retry_timeout": 0})
    stored = 0
    for i in range(n):
        if c.set("cluster-py-%d" % i, "value-%d" % i):
            stored += 1
    back = 0
    for i in range(n):
        if c.get("cluster-py-%d" % i) in ("value-%d" % i, b"value-%d" % i):
            back += 1
    print("%d stored, %d read back" % (stored, back))


main()
