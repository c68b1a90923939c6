# memhive developer entry points. `make run` serves locally, `make test` is
# what CI runs (.ci/run) and must finish well under 15 minutes on 2 cores.

GO       ?= go
LISTEN   ?= 127.0.0.1:11211
DATA     ?= ./data
FUZZTIME ?= 5m
# Package holding the protocol fuzz targets, and the targets run by test/fuzz.
FUZZPKG     := ./codec
FUZZTARGETS := FuzzParseASCII FuzzParseBinary FuzzParseSASLPlain

.PHONY: all build run deps fmtcheck vet test fuzz bench microbench clean

all: build

build:
	$(GO) build -o bin/memhive ./cmd/memhive

run: build
	@echo "memhive listening on $(LISTEN) (data in $(DATA))"
	exec bin/memhive serve --listen $(LISTEN) --auth sasl --data $(DATA)

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

test: deps fmtcheck vet
	$(GO) test ./... -count=1 -timeout 12m
	@for f in $(FUZZTARGETS); do \
		echo "fuzz $$f for 10s"; \
		$(GO) test $(FUZZPKG) -run '^$$' -fuzz "^$$f\$$" -fuzztime 10s || exit 1; \
	done

fuzz:
	@for f in $(FUZZTARGETS); do \
		echo "fuzz $$f for $(FUZZTIME)"; \
		$(GO) test $(FUZZPKG) -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

# Side-by-side with memcached (targets T1..T8 of the performance issue);
# rewrites the generated section of BENCHMARKS.md. Under 15 minutes.
bench: deps build
	$(GO) run ./cmd/memhive-bench compare --write BENCHMARKS.md

# Micro-benchmarks only.
microbench:
	$(GO) test ./... -run '^$$' -bench . -benchmem

clean:
	rm -rf bin
