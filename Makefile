# dockroot — boot a Docker image as the machine's root filesystem.
# `make help` lists the targets.

SHELL       := /bin/sh
export PATH := /usr/local/go/bin:$(PATH)
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
GOBUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# Slow fixtures (the kernel package, debootstrap roots, generator roots,
# daemons built from source) are kept machine-wide, each keyed by its
# inputs, so a fresh clone does not rebuild them; without a writable
# /var/cache they stay in the clone's .cache.
CACHE       ?= $(shell if [ -w /var/cache ]; then echo /var/cache/dockroot; else echo $(CURDIR)/.cache; fi)
export DOCKROOT_CACHE := $(CACHE)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the build, tests and demo need (idempotent).
	@./tests/deps.sh

.PHONY: build
build: ## Build bin/dockroot and the static bin/dockroot-init for amd64 and arm64.
	GOARCH=amd64 $(GOBUILD) -o bin/dockroot-init ./cmd/dockroot-init
	GOARCH=arm64 $(GOBUILD) -o bin/arm64/dockroot-init ./cmd/dockroot-init
	$(GOBUILD) -o bin/dockroot ./cmd/dockroot
	@ls -l bin/dockroot-init bin/arm64/dockroot-init bin/dockroot

PREFIX ?= /usr
DESTDIR ?=
.PHONY: install
install: build ## Install dockroot, dockroot-init, the initramfs-tools, dracut and mkinitcpio hooks and the systemd units (mark-good, prepare, update + timer, watch) under $(DESTDIR)$(PREFIX) (PREFIX=/usr: the hook runs /usr/lib/dockroot/dockroot-init).
	install -D -m755 bin/dockroot $(DESTDIR)$(PREFIX)/bin/dockroot
	install -D -m755 bin/dockroot-init $(DESTDIR)$(PREFIX)/lib/dockroot/dockroot-init
	install -D -m755 hook/initramfs-tools/hooks/dockroot $(DESTDIR)$(PREFIX)/share/initramfs-tools/hooks/dockroot
	install -D -m755 hook/initramfs-tools/scripts/local-premount/dockroot $(DESTDIR)$(PREFIX)/share/initramfs-tools/scripts/local-premount/dockroot
	install -D -m755 hook/dracut/90dockroot/module-setup.sh $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90dockroot/module-setup.sh
	install -D -m644 dist/systemd/dockroot-mark-good.service $(DESTDIR)$(PREFIX)/lib/systemd/system/dockroot-mark-good.service
	for u in dockroot-update.service dockroot-update.timer dockroot-watch.service; do \
		install -D -m644 dist/systemd/$$u $(DESTDIR)$(PREFIX)/lib/systemd/system/$$u || exit 1; done
	install -D -m644 hook/mkinitcpio/install/dockroot $(DESTDIR)$(PREFIX)/lib/initcpio/install/dockroot
	install -D -m644 hook/mkinitcpio/hooks/dockroot $(DESTDIR)$(PREFIX)/lib/initcpio/hooks/dockroot
	install -D -m644 dist/systemd/dockroot-prepare.service $(DESTDIR)$(PREFIX)/lib/systemd/system/dockroot-prepare.service

PKGROOT ?= bin/pkgroot
PKGOUT  ?= bin/packages
.PHONY: package
package: ## Build a .deb, an .rpm and an Arch package (nfpm) of what `make install` installs, into $(PKGOUT); version from git describe.
	rm -rf $(PKGROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(PKGROOT)) PREFIX=/usr
	$(GO) run ./dist/package -root $(PKGROOT) -out $(PKGOUT) -version $(VERSION) -arch amd64

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: test
test: deps lint build test-unit test-root test-vm fuzz-short ## CI's run: unit, root (loop btrfs + daemons), the CI selection of the VM tier (QEMU, 10 power-cut trials) and a short fuzz pass.

.PHONY: test-full
test-full: ## Every tier with every VM boot, including those make test leaves out for CI's budget.
	$(MAKE) test DOCKROOT_TEST_VM=full VM_TIMEOUT=240m

.PHONY: test-unit
test-unit: ## Unit tier: pure logic, any user.
	DOCKROOT_TEST_ROOT=0 $(GO) test -short -count=1 ./...

.PHONY: test-root
test-root: deps daemons ## Root tier: real loop btrfs, a private dockerd, Docker 29 built from source (once per machine) and Podman (skips unless root).
	DOCKROOT_TEST_VM=0 $(GO) test -p 1 -count=1 -timeout 40m ./...

.PHONY: daemons
daemons: ## Build Docker 29 (dockerd + containerd) for the containerd-store tests, once per machine, into $$DOCKROOT_CACHE/daemons.
	-$(GO) run ./tests/daemons

.PHONY: fixtures
fixtures: ## Build the slow cached fixtures (kernels, debootstrap, generator roots, Docker 29) into $$DOCKROOT_CACHE once per machine; FIXTURES="itools dracut" for some.
	$(GO) run ./tests/fixtures $(FIXTURES)

VM_TIMEOUT ?= 60m
.PHONY: test-vm
test-vm: deps build ## VM tier: QEMU (TCG) boots the real kernel and initramfs (the CI selection; DOCKROOT_TEST_VM=full for all).
	DOCKROOT_FAULT_TRIALS=10 DOCKROOT_TEST_VM=$(DOCKROOT_TEST_VM) $(GO) test -p 1 -count=1 -timeout $(VM_TIMEOUT) -v ./tests/vm/... ./tests/uefi/... ./tests/faults/...

FAULT_TRIALS ?= 50
.PHONY: test-faults
test-faults: deps build ## Power-cut fault injection in QEMU: FAULT_TRIALS trials (default 50) against dockroot's initramfs and as many against initramfs-tools' (hook mode), prints the tallies.
	DOCKROOT_FAULT_TRIALS=$(FAULT_TRIALS) DOCKROOT_FAULT_ITOOLS_TRIALS=$(FAULT_TRIALS) $(GO) test -p 1 -count=1 -timeout 180m -v -run TestPowerCut ./tests/faults/

FUZZTIME ?= 30s
.PHONY: fuzz
fuzz: ## Fuzz every parser (each Fuzz* target) for FUZZTIME (default 30s); a crash is saved under testdata/fuzz and becomes a regression test.
	@set -e; grep -rHo --include='*_test.go' --exclude-dir=.cache '^func Fuzz[A-Za-z0-9_]*' . | sort | \
	while IFS=: read -r file fn; do \
		pkg=./$$(dirname "$${file#./}"); name=$${fn#func }; \
		echo "== $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

.PHONY: fuzz-short
fuzz-short: ## A short fuzz pass (50,000 inputs per target), as CI runs it.
	@# A count, not a duration: a time-based -fuzztime can end a run with a
	@# spurious "context deadline exceeded" failure when the deadline hits a
	@# worker mid-input (seen in CI), and a count is repeatable.
	@$(MAKE) --no-print-directory fuzz FUZZTIME=50000x

.PHONY: bench
bench: deps ## Benchmarks (root, ~45 min, <= 6 GB in .cache/bench; section 6 boots seven initramfs images 6 times each): rewrites docs/BENCHMARKS.md and docs/bench/.
	$(GO) run ./tests/bench -out docs

.PHONY: demo
demo: deps build ## Build a sample image and boot it twice in QEMU with dockroot (fresh each time).
	$(GO) run ./tests/demo

.PHONY: clean
clean: ## Remove build outputs (keeps the kernel/debootstrap cache).
	rm -rf bin
