"""Exercise every operation of pylibmc (libmemcached) over the binary protocol.

Usage: /usr/bin/python3 pylibmc_ops.py --server HOST:PORT --memory-mib N

Prints one line per check, "ok   <name>" or "FAIL <name>: <detail>", then a
summary line, and exits 1 if any check failed (2 if pylibmc is missing). The
expectations are those of memcached 1.6.18 as seen through pylibmc 1.6.3 on
libmemcached 1.0.18 (Debian 12), e.g. that replace of a missing key raises
NotFound in binary mode while append of a missing key returns False.
"""

import argparse
import os
import sys
import time
import traceback

try:
    import pylibmc
except ImportError as exc:  # the Go test checks this first; be loud anyway
    print("FAIL import pylibmc: %s (use /usr/bin/python3, Debian python3-pylibmc)" % exc)
    sys.exit(2)

MiB = 1 << 20
passed = 0
failed = 0


def report(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + name, flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, detail), flush=True)


def check(name, fn, want):
    """Run fn(); the check passes when it returns want (compared with ==,
    and with the same type, so 1 never passes for True)."""
    try:
        got = fn()
    except Exception as exc:  # any exception is a failed check, not a crash
        report(name, False, "raised %s: %s" % (type(exc).__name__, exc))
        return None
    ok = got == want and type(got) is type(want)
    report(name, ok, "got %s, want %s" % (short(got), short(want)))
    return got


def check_true(name, fn, detail="condition false"):
    try:
        ok = bool(fn())
    except Exception as exc:
        report(name, False, "raised %s: %s" % (type(exc).__name__, exc))
        return
    report(name, ok, detail)


def check_raises(name, fn, exc_type):
    try:
        got = fn()
    except exc_type:
        report(name, True)
        return
    except Exception as exc:
        report(name, False, "raised %s: %s, want %s" % (type(exc).__name__, exc, exc_type.__name__))
        return
    report(name, False, "returned %s, want %s raised" % (short(got), exc_type.__name__))


def short(v):
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="HOST:PORT of the server under test")
    ap.add_argument("--memory-mib", type=int, required=True,
                    help="the server's memory limit, expected as limit_maxbytes")
    args = ap.parse_args()

    # "cas" is needed for gets/cas; pylibmc refuses them without it.
    mc = pylibmc.Client([args.server], binary=True,
                        behaviors={"cas": True, "tcp_nodelay": True})

    # Start clean: earlier runs or other checks must not leak in.
    check("flush_all", lambda: mc.flush_all(), True)

    # set / get, with each value type pylibmc encodes in the flags.
    check("set str", lambda: mc.set("s", "hello"), True)
    check("get str", lambda: mc.get("s"), "hello")
    check("set unicode", lambda: mc.set("u", "h\u00e9llo \u2603"), True)
    check("get unicode", lambda: mc.get("u"), "h\u00e9llo \u2603")
    check("set int", lambda: mc.set("i", 42), True)
    check("get int", lambda: mc.get("i"), 42)
    check("set long", lambda: mc.set("l", 2 ** 70), True)
    check("get long", lambda: mc.get("l"), 2 ** 70)
    check("set pickled", lambda: mc.set("o", {"a": [1, 2], "b": None}), True)
    check("get pickled", lambda: mc.get("o"), {"a": [1, 2], "b": None})
    check("get missing", lambda: mc.get("missing"), None)
    check("get missing default", lambda: mc.get("missing", "dflt"), "dflt")
    check("set empty", lambda: mc.set("e", b""), True)
    check("get empty", lambda: mc.get("e"), b"")
    binary_value = bytes(range(256)) * 4 + b"\r\nEND\r\n\x00"
    check("set binary-safe bytes", lambda: mc.set("bin", binary_value), True)
    check("get binary-safe bytes", lambda: mc.get("bin"), binary_value)
    check("set 250-byte key", lambda: mc.set("k" * 250, "long"), True)
    check("get 250-byte key", lambda: mc.get("k" * 250), "long")
    check("set overwrite", lambda: mc.set("s", "world"), True)
    check("get overwritten", lambda: mc.get("s"), "world")
    # Compressed values come back decompressed: the flags round-trip.
    compressible = b"z" * 50000
    check("set compressed", lambda: mc.set("z", compressible, min_compress_len=1), True)
    check("get compressed", lambda: mc.get("z"), compressible)

    # add / replace
    check("add new", lambda: mc.add("a", "first"), True)
    check("add existing", lambda: mc.add("a", "second"), False)
    check("get after add", lambda: mc.get("a"), "first")
    # In binary mode libmemcached maps "key not found" of replace to NotFound.
    check_raises("replace missing", lambda: mc.replace("r", "x"), pylibmc.NotFound)
    check("get after replace missing", lambda: mc.get("r"), None)
    check("set for replace", lambda: mc.set("r", "old"), True)
    check("replace existing", lambda: mc.replace("r", "new"), True)
    check("get after replace", lambda: mc.get("r"), "new")

    # append / prepend
    check("append missing", lambda: mc.append("ap", "x"), False)
    check("prepend missing", lambda: mc.prepend("ap", "x"), False)
    check("get after append missing", lambda: mc.get("ap"), None)
    check("set for append", lambda: mc.set("ap", "mid"), True)
    check("append", lambda: mc.append("ap", ">>"), True)
    check("prepend", lambda: mc.prepend("ap", "<<"), True)
    check("get appended", lambda: mc.get("ap"), "<<mid>>")

    # gets / cas
    check("set for cas", lambda: mc.set("c", "v1"), True)
    got = check_gets("gets", mc, "c", "v1")
    check("gets missing", lambda: mc.gets("c-missing"), (None, None))
    if got is not None:
        cas1 = got[1]
        check("cas current", lambda: mc.cas("c", "v2", cas1), True)
        check("cas stale", lambda: mc.cas("c", "v3", cas1), False)
        check("get after cas", lambda: mc.get("c"), "v2")
        got2 = check_gets("gets after cas", mc, "c", "v2")
        if got2 is not None:
            check_true("cas unique changed", lambda: got2[1] != cas1,
                       "cas unique %r unchanged" % cas1)
    check_raises("cas missing", lambda: mc.cas("c-missing", "x", 12345), pylibmc.NotFound)

    # delete
    check("set for delete", lambda: mc.set("d", "x"), True)
    check("delete hit", lambda: mc.delete("d"), True)
    check("get after delete", lambda: mc.get("d"), None)
    check("delete miss", lambda: mc.delete("d"), False)

    # incr / decr
    check("set counter", lambda: mc.set("n", "10"), True)
    check("incr", lambda: mc.incr("n", 5), 15)
    check("incr default delta", lambda: mc.incr("n"), 16)
    check("decr", lambda: mc.decr("n", 6), 10)
    check("incr grows digits", lambda: mc.incr("n", 90), 100)
    check("get after incr", lambda: mc.get("n"), "100")
    check("decr floors at 0", lambda: mc.decr("n", 1000), 0)
    # memcached may pad a shrunk number with spaces in place ("0  ").
    check("get after decr floor", lambda: mc.get("n").rstrip(" "), "0")
    check("set max counter", lambda: mc.set("n", "18446744073709551615"), True)
    check("incr wraps at 2**64", lambda: mc.incr("n", 1), 0)
    check("set int counter", lambda: mc.set("ni", 7), True)
    check("incr int value", lambda: mc.incr("ni", 3), 10)
    check("get int counter", lambda: mc.get("ni"), 10)
    check_raises("incr missing", lambda: mc.incr("n-missing"), pylibmc.NotFound)
    check_raises("decr missing", lambda: mc.decr("n-missing"), pylibmc.NotFound)
    check("get after incr missing", lambda: mc.get("n-missing"), None)
    check("set non-numeric", lambda: mc.set("nn", "abc"), True)
    check_incr_non_numeric(mc)
    check("get non-numeric unchanged", lambda: mc.get("nn"), "abc")

    # touch
    check("set for touch", lambda: mc.set("t", "x", time=100), True)
    check("touch hit", lambda: mc.touch("t", 200), True)
    check("touch miss", lambda: mc.touch("t-missing", 200), False)
    check("get after touch", lambda: mc.get("t"), "x")

    # multi operations, with and without a key prefix
    check("set_multi", lambda: mc.set_multi({"m1": "a", "m2": 2, "m3": b"c"}), [])
    check("get_multi", lambda: mc.get_multi(["m1", "m2", "m3", "m-missing"]),
          {"m1": "a", "m2": 2, "m3": b"c"})
    check("get_multi all missing", lambda: mc.get_multi(["x1", "x2"]), {})
    check("set_multi prefix", lambda: mc.set_multi({"a": 1, "b": "2"}, key_prefix="p_"), [])
    check("get_multi prefix", lambda: mc.get_multi(["a", "b", "c"], key_prefix="p_"),
          {"a": 1, "b": "2"})
    check("get prefixed key", lambda: mc.get("p_b"), "2")
    check("add_multi", lambda: mc.add_multi({"a": 10, "z": "26"}, key_prefix="p_"), ["a"])
    check("get after add_multi", lambda: mc.get_multi(["a", "z"], key_prefix="p_"),
          {"a": 1, "z": "26"})
    check("delete_multi hit", lambda: mc.delete_multi(["a", "b"], key_prefix="p_"), True)
    check("delete_multi miss", lambda: mc.delete_multi(["a", "b"], key_prefix="p_"), False)
    check("get after delete_multi", lambda: mc.get_multi(["a", "b", "z"], key_prefix="p_"),
          {"z": "26"})
    check("set_multi counters", lambda: mc.set_multi({"c1": "1", "c2": "2"}), [])
    check("incr_multi", lambda: mc.incr_multi(["c1", "c2"], delta=3), None)
    check("get after incr_multi", lambda: mc.get_multi(["c1", "c2"]), {"c1": "4", "c2": "5"})
    many = dict(("many-%d" % i, "value-%d" % i) for i in range(200))
    check("set_multi 200 keys", lambda: mc.set_multi(many), [])
    check("get_multi 200 keys", lambda: mc.get_multi(list(many)), many)
    check("delete_multi 200 keys", lambda: mc.delete_multi(list(many)), True)
    check("get_multi after delete_multi", lambda: mc.get_multi(list(many)), {})

    # big values around the 1 MiB item limit
    big = os.urandom(1000000)  # random, so compression cannot shrink it
    check("set 1,000,000 bytes", lambda: mc.set("big", big), True)
    check("get 1,000,000 bytes", lambda: mc.get("big") == big, True)
    # MemCachier: key + value "must still be less than 1MB" after an append
    # too, and the client hears "too large" (memcached answers NOT_STORED)
    check_raises("append past the item limit", lambda: mc.append("big", os.urandom(100000)), pylibmc.TooBig)
    check("get after append past limit", lambda: mc.get("big") == big, True)
    check_raises("set 2 MiB", lambda: mc.set("huge", os.urandom(2 * MiB)), pylibmc.TooBig)
    check("get after set 2 MiB", lambda: mc.get("huge"), None)
    check("set after too big", lambda: mc.set("after-big", "ok"), True)
    check("get after too big", lambda: mc.get("after-big"), "ok")

    # behaviors, clone, quiet (noreply) commands, disconnect
    def set_behaviors():
        mc.behaviors = {"tcp_nodelay": True, "ketama": True, "no_block": True,
                        "receive_timeout": 5000000, "send_timeout": 5000000}
        b = mc.behaviors
        return (b["tcp_nodelay"], b["ketama"], b["no_block"], b["cas"], b["receive_timeout"])
    check("behaviors", set_behaviors, (1, 1, 1, 1, 5000000))
    check("ops after behaviors", lambda: (mc.set("bh", "v"), mc.get("bh")), (True, "v"))
    check_true("hash", lambda: isinstance(mc.hash("some-key"), int), "hash is not an int")
    clone = mc.clone()
    check("clone get", lambda: clone.get("bh"), "v")
    check("clone behaviors", lambda: clone.behaviors["ketama"], 1)
    quiet = mc.clone()
    quiet.behaviors = {"_noreply": True, "no_block": False}
    # With _noreply libmemcached sends the quiet opcodes (SETQ, DELETEQ, ...)
    # and may hold them in its write buffer; a get on the same connection
    # flushes them and, as replies come in order, waits until they are done.
    check("noreply set_multi", lambda: quiet.set_multi(dict(("q%d" % i, i) for i in range(20))), [])
    check("noreply set", lambda: quiet.set("q-single", "quiet"), True)
    check("noreply delete", lambda: quiet.delete("q0"), True)
    check("get on noreply client", lambda: quiet.get("q-single"), "quiet")
    check("get after noreply", lambda: mc.get_multi(["q0", "q1", "q19", "q-single"]),
          {"q1": 1, "q19": 19, "q-single": "quiet"})
    check("disconnect_all", lambda: mc.disconnect_all(), None)
    check("get after disconnect_all", lambda: mc.get("bh"), "v")

    # stats
    def stats():
        s = mc.get_stats()
        if len(s) != 1:
            raise AssertionError("get_stats returned %d servers" % len(s))
        # pylibmc returns the server name and the values as bytes.
        return dict((k, v.decode() if isinstance(v, bytes) else v) for k, v in s[0][1].items())
    check_stats(stats, args.memory_mib)
    check_true("get_stats settings",
               lambda: len(mc.get_stats("settings")) == 1, "not one server entry")

    # expiry: the server's clock ticks once a second, so an item of n
    # seconds goes more than n-1 and at most n seconds after it is stored.
    # With 2 s the items are certainly there just after they are stored,
    # and gone within a few seconds: the wait polls, with a deadline.
    stored = time.monotonic()
    check("set time=2", lambda: mc.set("exp-2s", "x", time=2), True)
    check("set for short touch", lambda: mc.set("exp-touch", "x"), True)
    check("touch to 2 s", lambda: mc.touch("exp-touch", 2), True)
    check("set time=100", lambda: mc.set("exp-100s", "x", time=100), True)
    check("get before expiry", lambda: mc.get("exp-2s"), "x")
    check("get touched before expiry", lambda: mc.get("exp-touch"), "x")
    for key, name in (("exp-2s", "2 s expiry"), ("exp-touch", "touch expiry")):
        while mc.get(key) is not None and time.monotonic() - stored < 6:
            time.sleep(0.05)
        gone = time.monotonic() - stored
        check("get after " + name, lambda: mc.get(key), None)
        check_true("no expiry before 1 s (%s)" % name, lambda: gone > 1, "gone after %.2f s" % gone)
    check("get 100 s item", lambda: mc.get("exp-100s"), "x")

    # flush_all last: everything goes
    check("flush_all end", lambda: mc.flush_all(), True)
    check("get after flush_all", lambda: mc.get_multi(["s", "exp-100s", "bh"]), {})
    check("set after flush_all", lambda: (mc.set("s", "again"), mc.get("s")), (True, "again"))

    print("%d checks passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


def check_gets(name, mc, key, want_value):
    """gets returns (value, cas unique) with a non-zero unique."""
    try:
        got = mc.gets(key)
    except Exception as exc:
        report(name, False, "raised %s: %s" % (type(exc).__name__, exc))
        return None
    ok = (isinstance(got, tuple) and len(got) == 2 and got[0] == want_value
          and isinstance(got[1], int) and got[1] != 0)
    report(name, ok, "got %s, want (%r, non-zero cas)" % (short(got), want_value))
    return got if ok else None


def check_incr_non_numeric(mc):
    # Binary status 0x06 (non-numeric value) has no NotFound-style class in
    # pylibmc; it must be an error, and not the one for a missing key.
    for op in ("incr", "decr"):
        name = op + " non-numeric"
        try:
            got = getattr(mc, op)("nn", 1)
        except pylibmc.NotFound as exc:
            report(name, False, "raised NotFound (%s), want a non-numeric error" % exc)
        except pylibmc.Error:
            report(name, True)
        except Exception as exc:
            report(name, False, "raised %s: %s" % (type(exc).__name__, exc))
        else:
            report(name, False, "returned %s, want an error" % short(got))


def check_stats(stats_fn, memory_mib):
    try:
        st = stats_fn()
    except Exception as exc:
        report("get_stats", False, "raised %s: %s" % (type(exc).__name__, exc))
        return
    report("get_stats", True)
    for field in ("curr_items", "total_items", "bytes", "curr_connections",
                  "total_connections", "cmd_get", "cmd_set", "get_hits",
                  "get_misses", "evictions", "limit_maxbytes", "time"):
        check_true("get_stats has " + field, lambda: field in st and st[field].isdigit(),
                   "got %s" % short(st.get(field)))
    check("get_stats limit_maxbytes", lambda: st.get("limit_maxbytes"), str(memory_mib * MiB))
    check_true("get_stats curr_items counts our items",
               lambda: int(st["curr_items"]) >= 3, "curr_items=%s" % st.get("curr_items"))
    check_true("get_stats get_hits counts our hits",
               lambda: int(st["get_hits"]) >= 10, "get_hits=%s" % st.get("get_hits"))
    check_true("get_stats time is now",
               lambda: abs(int(st["time"]) - time.time()) < 5, "time=%s" % st.get("time"))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        print("FAIL script crashed", flush=True)
        sys.exit(1)
