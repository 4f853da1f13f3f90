# bosun: see README.md. `make run`, `make test` and `make vm-test` first
# install what they need (scripts/setup.sh: only the missing packages; as
# root), so on a fresh Debian/Ubuntu machine with Rust they are all a
# newcomer types.

CARGO   ?= cargo
RUN_DIR ?= $(CURDIR)/run
# Release binaries are linked statically (glibc, crt-static): one file for
# the guest's initramfs, and ~1 MiB less resident memory than with the
# shared libc (see README). An explicit --target keeps the flag off the
# build scripts and proc macros, which cannot be static.
TARGET  ?= $(shell rustc -vV | sed -n 's/^host: //p')
# Where cargo puts what it builds: asked, not assumed (CARGO_TARGET_DIR,
# a shared cache or a CI system may put it elsewhere).
TARGET_DIR := $(shell $(CARGO) metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
BIN     := $(TARGET_DIR)/$(TARGET)/release
# The release link (rust-lld, the toolchain's linker here) packs relative
# relocations (RELR: 0.4 MiB less read at start), and lays out together the
# functions the agent runs from start to idle (crates/bosun/symbol-order.txt,
# from scripts/symbol-order.sh), so that it maps 1.1 MiB of its text, not
# 3.7 (README, "Memory"). A name the order file has and the build does not
# is skipped: the layout then slowly returns to the compiler's own.
RELEASE_RUSTFLAGS := -C target-feature=+crt-static \
	-C link-arg=-Wl,-z,pack-relative-relocs \
	-C link-arg=-Wl,--symbol-ordering-file=crates/bosun/symbol-order.txt \
	-C link-arg=-Wl,--no-warn-symbol-ordering
# Root tests run inside private mount, UTS, IPC and network namespaces so
# that nothing they do (mounts, hostname, links) reaches this machine.
ISOLATE = unshare --mount --uts --ipc --net --propagation private --

.PHONY: print-bin build run test bench guest-image vm-test lint clean setup-run setup-test setup-vm-test

print-bin:
	@echo $(BIN)

build:
	RUSTFLAGS="$(RELEASE_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) --workspace --bins

run: setup-run build
	./scripts/demo.sh "$(RUN_DIR)" "$(BIN)"

setup-%:
	./scripts/setup.sh $*

# As root, the tests include pods in real QEMU VMs (bosun-podvm's): the
# guest image and the VM tools are set up first.
test: setup-test
	@if [ "$$(id -u)" = 0 ]; then ./scripts/setup.sh vm-test && $(MAKE) --no-print-directory guest-image; fi
	$(CARGO) build --locked --workspace --all-targets
	@if [ "$$(id -u)" = 0 ]; then \
		echo "== tests (root: including root-only tests, in private namespaces)"; \
		PATH="$$HOME/.cargo/bin:$$PATH" $(ISOLATE) $(CARGO) test --locked --offline --workspace -- --include-ignored; \
	else \
		echo "== tests (not root: root-only tests are listed as ignored, \"needs root\")"; \
		$(CARGO) test --locked --workspace; \
	fi

# BENCH_ARGS: --addr ADDR (another agent), --vs ADDR (a second one,
# interleaved), --json, --checks N, --pods N, --load N (CPU hogs in a cgroup).
bench: setup-bench build
	$(BIN)/bosun-bench $(BENCH_ARGS)

# The guest: Debian's cloud kernel + an initramfs with bosun as /init.
guest-image: build
	./guest-image/build.sh $(BIN)/bosun guest-image/out

vm-test: setup-vm-test guest-image
	PATH="$$HOME/.cargo/bin:$$PATH" ./guest-image/vm-test.sh guest-image/out $(BIN)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf "$(RUN_DIR)"
