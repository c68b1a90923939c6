#!/usr/bin/env bash
# Installs, on Debian, what memhive's tests need: the reference memcached, the
# libmemcached tools (memccapable, memcslap), the python clients used by
# e2e tests, openssl (s_client, for the TLS test), Chromium for the dashboard's browser test, and that test's npm
# packages (playwright-core, from e2e/browser/package-lock.json), and etcd
# (Debian's etcd-server: /usr/bin/etcd, which `make cluster` runs). Idempotent: when everything is present it only checks and exits,
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
	[ -x /usr/bin/chromium ] || echo chromium
	command -v saslpasswd2 >/dev/null 2>&1 || echo sasl2-bin
	command -v npm >/dev/null 2>&1 || echo npm
	command -v openssl >/dev/null 2>&1 || echo openssl
	[ -x /usr/bin/etcd ] || echo etcd-server
}

# npm_deps installs the browser test's packages when they are absent.
npm_deps() {
	local dir
	dir="$(cd "$(dirname "$0")/.." && pwd)/e2e/browser"
	[ -f "$dir/package-lock.json" ] || return 0
	[ -d "$dir/node_modules/playwright-core" ] && return 0
	echo "install-deps: npm ci in $dir" >&2
	if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
		echo "install-deps: npm ci failed in $dir" >&2
		exit 1
	fi
}

need=$(missing | tr '\n' ' ')
need=${need% }
if [ -z "$need" ]; then
	npm_deps
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
	echo "install-deps: need /usr/bin/memcached, memccapable, memcslap, /usr/bin/chromium, /usr/bin/etcd, npm, openssl and '$PY -c \"import pylibmc, pymemcache\"'" >&2
	exit 1
fi
npm_deps
echo "install-deps: all test dependencies present" >&2
