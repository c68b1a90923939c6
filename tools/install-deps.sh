#!/usr/bin/env bash
# Installs, on Debian, what memhive's tests need: the reference memcached, the
# libmemcached tools (memccapable, memcslap) and the python clients used by
# e2e tests. Idempotent: when everything is present it only checks and exits,
# without touching apt. Exits non-zero, naming what is missing, when it cannot
# install (not root, not Debian, apt failure).
set -euo pipefail

PY=/usr/bin/python3

# missing prints the Debian package of every dependency that is absent.
missing() {
	[ -x /usr/bin/memcached ] || echo memcached
	if ! command -v memccapable >/dev/null 2>&1 || ! command -v memcslap >/dev/null 2>&1; then
		echo libmemcached-tools
	fi
	if ! [ -x "$PY" ] || ! "$PY" -c 'import pylibmc' >/dev/null 2>&1; then
		echo python3-pylibmc
	fi
	if ! [ -x "$PY" ] || ! "$PY" -c 'import pymemcache' >/dev/null 2>&1; then
		echo python3-pymemcache
	fi
}

need=$(missing | tr '\n' ' ')
need=${need% }
if [ -z "$need" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing test dependencies: $need" >&2
	echo "install-deps: not root; run: sudo $0  (or apt-get install $need)" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing test dependencies: $need; apt-get not found (Debian needed)" >&2
	exit 1
fi

echo "install-deps: installing $need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $need

still=$(missing | tr '\n' ' ')
still=${still% }
if [ -n "$still" ]; then
	echo "install-deps: still missing after apt-get install: $still" >&2
	echo "install-deps: need /usr/bin/memcached, memccapable, memcslap and '$PY -c \"import pylibmc, pymemcache\"'" >&2
	exit 1
fi
echo "install-deps: all test dependencies present" >&2
