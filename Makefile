# memhive developer entry points. `make run` serves locally, `make test` is
# what CI runs (.ci/run) and must finish well under 15 minutes on 2 cores.

GO       ?= go
LISTEN   ?= 127.0.0.1:11211
DATA     ?= ./data
# Fuzz budgets are counts of calls, not durations: with a duration, Go
# 1.26's fuzzing coordinator can fail a target with "context deadline
# exceeded" and no input when the time runs out (go.dev/issue/75804,
# fixed in Go 1.27). 4,000,000 calls take about two minutes here.
FUZZTIME ?= 4000000x

.PHONY: all build run cluster deps fmtcheck vet test fuzz soak bench microbench clean

all: build

build:
	$(GO) build -o bin/memhive ./cmd/memhive

run: build
	@echo "memhive listening on $(LISTEN) (data in $(DATA))"
	exec bin/memhive serve --listen $(LISTEN) --auth sasl --data $(DATA)

# Three nodes on loopback over Debian's etcd (tools/cluster.sh says what and
# where): prints a cache's MEMCACHIER_* lines, serves until Ctrl-C.
cluster: build
	tools/cluster.sh

# Fails loudly, naming what is missing, when a reference peer is absent and
# cannot be installed.
deps:
	tools/install-deps.sh

fmtcheck:
	@files=$$(find . -name '*.go' -not -path './bin/*' -not -path './data/*' -not -path './.git/*'); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt: these files are not formatted (run gofmt -w):"; echo "$$bad"; exit 1; fi

vet:
	$(GO) vet ./...

# The differential tests run apart, with -v, so that their seeds, request
# counts and "identical" summaries are in the output of a passing run too
# (TestTrace is a debugging tool, run by hand with DIFF_TRACE_KEY).
test: deps fmtcheck vet
	$(GO) test $$($(GO) list ./... | grep -v /tools/difftest$$) -count=1 -timeout 12m
	$(GO) test ./tools/difftest/ -count=1 -timeout 12m -v -skip '^TestTrace$$'
	FUZZTIME=300000x FUZZMINIMIZETIME=20000x GO=$(GO) tools/fuzz.sh

# Every fuzz target of the module for $(FUZZTIME) each; the new interesting
# inputs become seed corpus under the packages' testdata/fuzz/.
fuzz:
	KEEP_CORPUS=1 FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=200000x GO=$(GO) tools/fuzz.sh

# Ten minutes of mixed load with disconnects, auth failures and resizes;
# goroutines, fds and RSS must come back to their baseline.
soak:
	MEMHIVE_SOAK=10m $(GO) test ./e2e -run '^TestSoak$$' -count=1 -timeout 15m -v

# Side-by-side with memcached (targets T1..T8 of the performance issue, T11,
# T12 and T13 (forwarded gets) on a three-node cluster with Debian's etcd);
# rewrites the generated section of BENCHMARKS.md. Under 15 minutes.
bench: deps build
	$(GO) run ./cmd/memhive-bench compare --write BENCHMARKS.md

# Micro-benchmarks only.
microbench:
	$(GO) test ./... -run '^$$' -bench . -benchmem

clean:
	rm -rf bin
