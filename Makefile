# portgate: `make run` starts the gateway, `make test` runs every test.
# Both install what the build needs on a fresh Debian machine (cmake for Pingora's zlib-ng).

CARGO ?= cargo

.PHONY: run test deps build release lint layers fmt bench bench-ab bench-instructions check-settings conformance soak drill bench-translate bench-guardrails bench-cache bench-limits bench-logstore

deps:
	@./scripts/ensure-deps.sh

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

run: release
	./target/release/portgate $(if $(CONFIG),--config $(CONFIG),)

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/layers.py --self-test
	python3 scripts/layers.py
	$(CARGO) run -q --bin portgate -- --check --config conf/portgate.yaml > /dev/null
	./scripts/validate-deploy.sh
	./scripts/run-tests.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/layers.py

# The module graph of src/, its cycles and the upward imports left.
layers:
	python3 scripts/layers.py --graph

fmt:
	$(CARGO) fmt --all

bench: deps
	./bench/run.sh

# What rate limits and a budget cost a request (memory and Redis backends), in A/B rounds.
bench-limits: deps
	./bench/limits.sh

# What the log store (PostgreSQL, bodies kept) costs a request, and whether it keeps up.
bench-logstore: deps
	./bench/logstore.sh

# A/B of two builds' CPU per request in alternating rounds: make bench-ab A=path B=path
bench-ab: deps
	./bench/ab.sh $(A) $(B)

bench-instructions: deps
	./bench/instructions.sh

# CPU per request of a request translated to Anthropic and back vs an untranslated one.
bench-translate: deps
	./bench/translate.sh

# CPU per request with five built-in guardrail checks on input and output vs no hooks.
bench-guardrails: deps
	./bench/guardrails.sh
bench-cache: deps
	./bench/cache.sh

# Minutes of mixed load; reports RSS and open descriptors before, during and after (not part
# of `make test`). SOAK_SECONDS=60 for a shorter run.
soak: deps
	./bench/soak.sh

# Outage drill: the guide's fallback config through each kind of primary outage, with and
# without a breaker, at 1 and 16 clients (not part of `make test`; about four minutes).
# DRILL_REQUESTS=50 for a shorter run. See docs/outage-drill.md.
drill: deps
	./bench/drill.sh

# Differential check against Portkey's gateway 1.15.2 (needs node, npm, python3; not part of
# `make test`). PORTGATE_BIN=path skips the release build. See scripts/conformance/README.md.
conformance:
	CARGO="$(CARGO)" ./scripts/conformance/run.sh
