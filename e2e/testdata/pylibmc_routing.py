"""pylibmc over binary SASL against a memhive cluster with --route server,
keys spread by ketama, which no node uses to decide who owns a key.

usage: pylibmc_routing.py SERVERS USER PASS set|get PREFIX N
  SERVERS is MEMCACHIER_SERVERS: host:port,host:port,...
set stores PREFIX-0 .. PREFIX-(N-1), each with the value PREFIX-value-I,
and prints "N stored" (N the count stored). get reads them back, expecting
those values (written by another client that hashes its own way), and
prints "M read back, X missing, W wrong" followed by the first few keys
that were not right.
"""
import sys
import pylibmc


def main():
    servers, user, password, mode, prefix, n = sys.argv[1:7]
    n = int(n)
    c = pylibmc.Client(servers.split(","), binary=True, username=user, password=password,
                       behaviors={"ketama": True, "connect_timeout": 2000, "retry_timeout": 0})
    if mode == "set":
        stored = 0
        for i in range(n):
            if c.set("%s-%d" % (prefix, i), "%s-value-%d" % (prefix, i)):
                stored += 1
        print("%d stored" % stored)
        return
    back, missing, wrong, bad = 0, 0, 0, []
    for i in range(n):
        key, want = "%s-%d" % (prefix, i), "%s-value-%d" % (prefix, i)
        got = c.get(key)
        if isinstance(got, bytes):
            got = got.decode()
        if got == want:
            back += 1
            continue
        if got is None:
            missing += 1
        else:
            wrong += 1
        if len(bad) < 5:
            bad.append("%s=%r" % (key, got))
    print("%d read back, %d missing, %d wrong %s" % (back, missing, wrong, " ".join(bad)))


main()
