"""pylibmc over binary SASL against memhive in SASL mode.

usage: pylibmc_sasl.py ADDR MODE USER PASS [USER2 PASS2]
  MODE ok:     USER/PASS work for every operation; USER2/PASS2 is another
               cache's credential, which must never see the first's keys,
               stats or flushes; a wrong password and an unknown user fail.
  MODE refused: USER/PASS must fail for every operation.
Prints "N checks passed, M failed" last.
"""
import sys
import pylibmc

passed = failed = 0


def check(name, cond):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", name)


def client(addr, user, password):
    return pylibmc.Client([addr], binary=True, username=user, password=password,
                          behaviors={"connect_timeout": 2000, "retry_timeout": 0, "cas": True})


def fails(fn):
    try:
        fn()
    except pylibmc.Error:
        return True
    return False


def run_ok(addr, user, password, user2, password2):
    c = client(addr, user, password)
    check("set", c.set("k", "v") is True)
    check("get", c.get("k") == b"v" or c.get("k") == "v")
    check("add existing", c.add("k", "x") is False)
    check("add new", c.add("k2", "x") is True)
    check("replace", c.replace("k2", "y") is True)
    check("append", c.append("k2", "z") is True)
    check("prepend", c.prepend("k2", "w") is True)
    check("get after append/prepend", c.get("k2") in (b"wyz", "wyz"))
    check("incr", c.set("n", "10") and c.incr("n", 5) == 15)
    check("decr", c.decr("n", 20) == 0)
    check("touch", c.touch("k", 100) is True)
    check("delete", c.delete("k2") is True)
    check("get deleted", c.get("k2") is None)
    check("get_multi", c.get_multi(["k", "n"]) == {"k": b"v", "n": b"0"} or len(c.get_multi(["k", "n"])) == 2)
    v, cas = c.gets("k")
    check("gets", v in (b"v", "v") and cas > 0)
    check("cas", c.cas("k", "v2", cas) is True)
    check("cas stale", c.cas("k", "v3", cas) is False)
    check("set_multi", c.set_multi({"m1": "1", "m2": "2"}) == [])
    stats = c.get_stats()
    check("stats", len(stats) == 1 and int(stats[0][1]["curr_items"]) >= 4)

    other = client(addr, user2, password2)
    check("other cache misses", other.get("k") is None)
    check("other cache set", other.set("k", "other") is True)
    check("first cache keeps its value", c.get("k") in (b"v2", "v2"))
    other_items = int(other.get_stats()[0][1]["curr_items"])
    check("other cache's stats are its own", other_items == 1)
    check("other cache flush", other.flush_all() is True)
    check("flush did not reach the first cache", c.get("k") in (b"v2", "v2"))
    check("first cache flush", c.flush_all() is True)
    check("flushed", c.get("k") is None)

    bad = client(addr, user, password + "x")
    check("wrong password fails", fails(lambda: bad.set("k", "v")))
    unknown = client(addr, "NOSUCHUSER", password)
    check("unknown user fails", fails(lambda: unknown.get("k")))


def run_refused(addr, user, password):
    c = client(addr, user, password)
    check("set refused", fails(lambda: c.set("k", "v")))
    check("get refused", fails(lambda: c.get("k")))
    check("incr refused", fails(lambda: c.incr("n", 1)))


def main():
    addr, mode = sys.argv[1], sys.argv[2]
    if mode == "ok":
        run_ok(addr, *sys.argv[3:7])
    else:
        run_refused(addr, *sys.argv[3:5])
    print("%d checks passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
