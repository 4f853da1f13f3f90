# bosun: see README.md. Every target works on a fresh machine after
# `bash .ci/run` (or the packages it installs) has run once.

CARGO   ?= cargo
RUN_DIR ?= $(CURDIR)/run
# Root tests run inside private mount, UTS, IPC and network namespaces so
# that nothing they do (mounts, hostname, links) reaches this machine.
ISOLATE = unshare --mount --uts --ipc --net --propagation private --

.PHONY: build run test bench vm-test lint clean

build:
	$(CARGO) build --release --locked --bins

run: build
	./scripts/demo.sh "$(RUN_DIR)"

test:
	$(CARGO) build --locked --all-targets
	@if [ "$$(id -u)" = 0 ]; then \
		echo "== tests (root: including root-only tests, in private namespaces)"; \
		$(ISOLATE) $(CARGO) test --locked --offline -- --include-ignored; \
	else \
		echo "== tests (not root: root-only tests are listed as ignored, \"needs root\")"; \
		$(CARGO) test --locked; \
	fi

bench:
	@echo "bench: the benchmark lands with its issue; nothing is measured yet" >&2

vm-test:
	@echo "vm-test: the guest image lands with its issue; nothing is booted yet" >&2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf "$(RUN_DIR)"
