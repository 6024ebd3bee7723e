# daxlink — see README.md.
PREFIX ?= /usr/local
BIN    := target/release/daxlink
POOL   ?= daxlink.pool
MNT    ?= mnt
SIZE   ?= 1G
GROUP  ?= quick

.PHONY: all build run stop test deps install fs-tests bench clean

all: build

build:
	cargo build --release

deps:
	@.ci/deps

# `mount -t fuse.daxlink` finds the binary through mount.fuse3, which searches only
# the system PATH: install puts it there.
install: build
	install -m 0755 $(BIN) $(PREFIX)/bin/daxlink

run: deps build
	@mkdir -p $(MNT)
	@test -e $(POOL) || $(BIN) mkfs --size $(SIZE) $(POOL)
	@if mountpoint -q $(MNT); then echo "daxlink: $(MNT) is already mounted"; \
	 else $(BIN) mount $(POOL) $(MNT); fi
	@echo "daxlink: $(POOL) is mounted at ./$(MNT)"
	@echo "  use it:      cp --reflink=auto FILE $(MNT)/ ; $(BIN) stat $(MNT)"
	@echo "  unmount it:  make stop   (or: umount $(MNT))"

stop:
	umount $(MNT)

test: deps
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test
	$(MAKE) fs-tests GROUP=$(GROUP)

fs-tests: install
	fs-tests/check -g $(GROUP)

bench: deps install
	cargo build --release --example populate --example core_bench
	fs-tests/bench/run

clean:
	cargo clean
