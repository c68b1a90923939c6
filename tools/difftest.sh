#!/usr/bin/env bash
# Replays one run of the differential test (memcached against memhive).
#   tools/difftest.sh SEED [REQUESTS]
# Environment: DIFF_AGAINST=memcached compares two memcached processes (to
# validate the harness); DIFF_CHECK_STATE=1 also compares every key's value
# after each batch (slow; memhive must support "mg"). To see the history of a
# key: DIFF_SEED=SEED DIFF_TRACE_KEY=KEY DIFF_TRACE_UPTO=N go test ./tools/difftest/ -run TestTrace -v
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 SEED [REQUESTS]" >&2
	exit 2
fi
cd "$(dirname "$0")/.."
export DIFF_SEED="$1"
if [ $# -eq 2 ]; then
	export DIFF_REQUESTS="$2"
fi
exec go test ./tools/difftest/ -run '^TestDifferential$' -count=1 -timeout 20m -v
