#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other, each for
# $FUZZTIME. `make fuzz` runs it with KEEP_CORPUS=1 for minutes; `make test`
# runs a short form.
#
#   FUZZTIME          per target (Nx for N calls, or a Go duration); default
#                     4000000x. Prefer counts: with a duration Go 1.26 may
#                     fail a target with "context deadline exceeded" and no
#                     input when the time runs out (go.dev/issue/75804)
#   FUZZMINIMIZETIME  go test's -fuzzminimizetime; default 5s (see below)
#   KEEP_CORPUS=1     afterwards, copy the new inputs Go found interesting
#                     (kept in $(go env GOCACHE)/fuzz/<import path>/<Name>/)
#                     into <package dir>/testdata/fuzz/<Name>/, where they
#                     become seed corpus committed with the code
#   KEEP_MAX          at most this many, the newest, per target and run;
#                     default 200, so the repository does not bloat
#
# A failing target does not stop the others; the script ends with status 1
# and names each failure. Go writes the failing input to the package's
# testdata/fuzz/<Name>/, where `go test` replays it from then on.
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-4000000x}
# Go's default budget of 60 s is all but used up by every new interesting
# input of over 2 KiB: the minimizer tries O(n^2) shorter candidates (2.1
# million, some 55 s, for the 2049 bytes that reach the ASCII parser's
# long-line close), and none keeps the coverage. The worker reports no
# execs meanwhile ("0/sec"), and a run shorter than that ends before the
# input is kept, so the next run finds and minimizes it again. A few
# seconds still shrink a small crasher to its core.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
KEEP_CORPUS=${KEEP_CORPUS:-0}
KEEP_MAX=${KEEP_MAX:-200}

GO=${GO:-go}
gocache=$($GO env GOCACHE)

# A count (Nx) gets a generous bound in time, so that a stuck target still
# ends; a duration gets 5 minutes past the fuzzing time to build, replay the
# seeds and minimize a crasher (Go durations add up: "2m5m" is 7 minutes).
case $FUZZTIME in
*x) timeout=20m ;;
*) timeout="${FUZZTIME}5m" ;;
esac

# keep copies the newest new inputs of target name of the package at dir
# (import path pkg) from Go's cache into its testdata.
keep() {
	local pkg=$1 dir=$2 name=$3
	local src="$gocache/fuzz/$pkg/$name" dst="$dir/testdata/fuzz/$name"
	[ -d "$src" ] || return 0
	mkdir -p "$dst"
	# Go names cache entries by content hash, seeds are named by hand:
	# compare contents so that neither is copied twice.
	local have
	have=$(find "$dst" -type f -exec sha256sum {} + | cut -d' ' -f1)
	local copied=0 f sum
	while IFS= read -r f; do
		[ "$copied" -lt "$KEEP_MAX" ] || break
		[ -e "$dst/$f" ] && continue
		sum=$(sha256sum "$src/$f" | cut -d' ' -f1)
		grep -qx "$sum" <<<"$have" && continue
		cp "$src/$f" "$dst/$f"
		have+=$'\n'$sum
		copied=$((copied + 1))
	done < <(ls -t "$src")
	echo "fuzz: kept $copied new corpus entries of $name in $dst"
}

log=
trap 'rm -f "$log"' EXIT

pkgs=$($GO list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' ./...)
failed=()
ntargets=0
while read -r pkg dir; do
	[ -n "$pkg" ] || continue
	if ! listing=$($GO test "$pkg" -list '^Fuzz' 2>&1 </dev/null); then
		echo "$listing"
		echo "fuzz: FAILED to list the fuzz targets of $pkg" >&2
		failed+=("$pkg (listing)")
		continue
	fi
	for name in $(grep -E '^Fuzz[A-Za-z0-9_]*$' <<<"$listing" || true); do
		ntargets=$((ntargets + 1))
		echo "fuzz: $pkg $name for $FUZZTIME"
		log=$(mktemp)
		if $GO test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" \
			-fuzzminimizetime "$FUZZMINIMIZETIME" -timeout "$timeout" </dev/null 2>&1 | tee "$log"; then
			if [ "$KEEP_CORPUS" = 1 ]; then
				keep "$pkg" "$dir" "$name"
			fi
		else
			input=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | tail -1)
			{
				echo
				echo "######## fuzz: $pkg $name FAILED"
				if [ -n "$input" ]; then
					echo "######## failing input: $dir/$input"
					echo "######## replay: go test $pkg -run '^${name}/$(basename "$input")\$'"
				else
					echo "######## no failing input was written: see go test's output above"
				fi
				echo
			} >&2
			failed+=("$pkg $name${input:+ ($dir/$input)}")
		fi
		rm -f "$log"
	done
done <<<"$pkgs"

if [ "$ntargets" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $ntargets targets FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all $ntargets targets passed ($FUZZTIME each)"
