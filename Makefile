# Braid: the two commands of the README, plus developer helpers.
# `make demo` and `make test` do all set-up on a fresh Debian 12 machine (as root).

.PHONY: setup demo test build lint fmt bench

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

build: setup
	cargo build --locked --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Agent idle footprint (docs/benchmarks.md), about 4 minutes; not part of `make test`.
.PHONY: bench-idle
bench-idle: setup
	bash scripts/bench-idle.sh

# Debian package (packaging/README.md): `make deb` (amd64), `make deb ARCH=arm64`
# (cross-build; needs the sysroot of scripts/arm64-sysroot.sh).
.PHONY: deb
ARCH ?= amd64
deb: setup
	bash scripts/deb.sh $(ARCH)

# Bonded-transport benchmark (issue 3, B1-B6; ~20 min): rewrites the transport section of
# docs/benchmarks.md. `make bench ARGS=--quick` for a short indicative run.
bench: setup
	bash scripts/bench.sh $(ARGS)
