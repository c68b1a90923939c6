"""pymemcache with MemCachier's ASCII authentication against memhive.

usage: pymemcache_ascii.py HOST PORT USER PASS
The first command is set(USER, PASS); then ordinary use.
Prints "N checks passed, M failed" last.
"""
import sys
from pymemcache.client.base import Client

passed = failed = 0


def check(name, cond):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", name)


host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = Client((host, port), connect_timeout=2, timeout=5)
check("login", c.set(user, password, noreply=False) is True)
check("set", c.set("k", "v", noreply=False) is True)
check("get", c.get("k") == b"v")
check("add existing", c.add("k", "x", noreply=False) is False)
check("replace", c.replace("k", "w", noreply=False) is True)
check("append", c.append("k", "x", noreply=False) is True)
check("prepend", c.prepend("k", "y", noreply=False) is True)
check("get after append/prepend", c.get("k") == b"ywx")
check("incr", c.set("n", "1", noreply=False) and c.incr("n", 41, noreply=False) == 42)
check("decr", c.decr("n", 2, noreply=False) == 40)
v, cas = c.gets("k")
check("gets", v == b"ywx" and cas)
check("cas", c.cas("k", "z", cas, noreply=False) is True)
check("cas stale", c.cas("k", "q", cas, noreply=False) is False)
check("get_many", c.get_many(["k", "n"]) == {"k": b"z", "n": b"40"})
check("touch", c.touch("k", 100, noreply=False) is True)
check("delete", c.delete("k", noreply=False) is True)
check("deleted", c.get("k") is None)
stats = c.stats()
check("stats", int(stats[b"curr_items"]) >= 1 and int(stats[b"auth_cmds"]) >= 1)
check("version", len(c.version()) > 0)
check("flush_all", c.flush_all(noreply=False) is True)
check("flushed", c.get("n") is None)
print("%d checks passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
