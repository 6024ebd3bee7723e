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
# the system PATH: install puts it there, with daxlink(8) and the bash and zsh
# completions, which the binary writes from its own command-line definitions.
install: build
	install -m 0755 $(BIN) $(PREFIX)/bin/daxlink
	$(BIN) generate man target/gen
	$(BIN) generate bash target/gen
	$(BIN) generate zsh target/gen
	install -D -m 0644 target/gen/daxlink.8 $(PREFIX)/share/man/man8/daxlink.8
	install -D -m 0644 target/gen/daxlink $(PREFIX)/share/bash-completion/completions/daxlink
	install -D -m 0644 target/gen/_daxlink $(PREFIX)/share/zsh/site-functions/_daxlink

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
	MOUNT_OPTIONS=nowriteback fs-tests/check -g $(GROUP)

fs-tests: install
	fs-tests/check -g $(GROUP)

bench: deps install
	cargo build --release --example populate --example core_bench
	fs-tests/bench/run

clean:
	cargo clean
