# Parley: build, run and test the appliance. `make run` and `make test` do
# all the set-up on a fresh Debian machine with Go.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.Version=$(VERSION)
DATA_DIR  ?= ./data
SSH_LISTEN ?= 127.0.0.1:2222

# Debian packages the tests drive for real: the OpenSSH client (ssh, sftp,
# ssh-keygen), openssl, the XMPP clients go-sendxmpp and slixmpp (a
# Python library: checked by importing it with Debian's /usr/bin/python3),
# and for the federation tests the peer servers Prosody and ejabberd and
# the DNS server dnsmasq (package dnsmasq-base: no system service). The
# Debian package's test also needs systemd-analyze (package systemd; no
# running systemd needed) and adduser (the package depends on it); dpkg-deb,
# setpriv and prlimit come with every Debian system. The metrics test checks
# the exposition with promtool (/usr/bin/promtool, package prometheus). The
# directory tests run their own OpenLDAP server: slapd and ldap-utils. The
# syslog test runs its own rsyslogd (package rsyslog). The system services
# these packages bring are kept off like Prosody's and ejabberd's.
TEST_TOOLS    := ssh sftp ssh-keygen openssl go-sendxmpp prosody ejabberdctl dnsmasq systemd-analyze adduser promtool slapd slapadd ldapsearch rsyslogd
TEST_PACKAGES := openssh-client openssl go-sendxmpp python3-slixmpp prosody ejabberd dnsmasq-base systemd adduser prometheus slapd ldap-utils rsyslog
TEST_PYTHON   := /usr/bin/python3
TEST_PYMODS   := slixmpp

.PHONY: all build run test deps vet fmt-check fuzz docs bench clean deb

all: build

# The appliance, and beside it the load generator (a separate binary).
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/parley ./cmd/parley
	$(GO) build -o bin/parley-load ./cmd/parley-load

run: build
	@mkdir -p $(DATA_DIR)
	bin/parley serve --data-dir $(DATA_DIR) --ssh-listen $(SSH_LISTEN)

# Install what the tests need when it is missing. The tests run their own
# Prosody and ejabberd on loopback addresses: the system services the
# packages start would hold 5222/5269 on every address, so a fresh install
# stops and disables them (where systemd runs). The same for Prometheus
# (only its promtool is used) and the node exporter it recommends (9090,
# 9100 on every address).
deps:
	@missing=""; for t in $(TEST_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	for m in $(TEST_PYMODS); do $(TEST_PYTHON) -c "import $$m" >/dev/null 2>&1 || missing="$$missing python:$$m"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing $(TEST_PACKAGES) (missing:$$missing)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		norc=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null && $$SUDO chmod 755 /usr/sbin/policy-rc.d && norc=1; \
		fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(TEST_PACKAGES); st=$$?; \
		[ -z "$$norc" ] || $$SUDO rm -f /usr/sbin/policy-rc.d; \
		[ $$st = 0 ] || exit 1; \
		for s in prosody ejabberd prometheus prometheus-node-exporter slapd rsyslog; do \
			if command -v systemctl >/dev/null 2>&1; then $$SUDO systemctl disable --now $$s >/dev/null 2>&1; fi; \
			$$SUDO service $$s stop >/dev/null 2>&1; \
		done; true; \
	fi

fmt-check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

vet:
	$(GO) vet ./...

test: deps fmt-check vet fuzz
	$(GO) test -race -count=1 -timeout 15m ./...

# Each fuzz target runs FUZZTIME on top of its corpus (seeds in the code and
# in the package's testdata/fuzz/<Target>/, where a failing input is also
# written: keep it there as a regression case). `go test -fuzz` takes one
# target of one package at a time. The budget is a count of executions, not
# a duration: with a duration, Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure at the deadline on a loaded machine
# (golang/go#75804, fixed in Go 1.27), with nothing found. 20000 runs take
# 1-4 s per target here.
FUZZTIME    ?= 20000x
FUZZ_TARGETS := ./server/xml:FuzzReader ./server/xml:FuzzTokenizer ./server/c2s:FuzzSASL ./server/im:FuzzParseAddr ./server/cluster/routes:FuzzDecodeStanza ./server/tlsrec:FuzzRecords

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

# The Debian package parley_<version>_<arch>.deb in DEB_DIR: a static binary
# (in DEB_BUILD) for this machine's architecture, or GOARCH's (make deb
# GOARCH=arm64), the systemd unit, /etc/default/parley, the docs and the
# maintainer scripts, all in packaging/. The binary is built -trimpath
# (DEB_GOFLAGS): no build paths in it, the same binary from any checkout of
# a commit. nfpm runs as a Go tool pinned in packaging/tools/go.mod (its own
# module: the appliance's go.mod and binary know nothing of it). The version
# is VERSION as Debian wants it: a tag v1.2.3[-N-gHASH][-dirty] gives
# 1.2.3[+N.gHASH][.dirty]; with no tag, DEB_BASE~git<commits>.<hash>, which
# sorts before the release DEB_BASE.
DEB_DIR     ?= .
DEB_BUILD   ?= bin/deb
DEB_GOFLAGS ?= -trimpath
DEB_BASE    ?= 0.1.0
DEB_GOARCH  := $(or $(GOARCH),$(shell $(GO) env GOARCH))
DEB_ARCH    ?= $(shell case "$(DEB_GOARCH)" in (386) echo i386;; (arm) echo armhf;; (ppc64le) echo ppc64el;; (mips64le) echo mips64el;; (mipsle) echo mipsel;; (*) echo "$(DEB_GOARCH)";; esac)
DEB_VERSION ?= $(shell v='$(VERSION)'; case "$$v" in \
	(v[0-9]*|[0-9]*.*) echo "$$v" | sed 's/^v//; s/-/+/; s/-/./g';; \
	(*) n=$$(git rev-list --count HEAD 2>/dev/null || echo 0); echo "$(DEB_BASE)~git$$n.$$v" | tr -- '-' '.';; esac)

deb:
	@mkdir -p $(DEB_BUILD) $(DEB_DIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEB_GOARCH) $(GO) build $(DEB_GOFLAGS) -ldflags "-s -w $(LDFLAGS)" -o $(DEB_BUILD)/parley ./cmd/parley
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' DEB_BUILD='$(DEB_BUILD)' \
		$(GO) tool -modfile=packaging/tools/go.mod nfpm package --config packaging/nfpm.yaml \
		--packager deb --target $(DEB_DIR)/parley_$(DEB_VERSION)_$(DEB_ARCH).deb

docs:
	$(GO) run ./cmd/parley docs > docs/commands.md

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./store/ ./commands/ ./pki/

clean:
	rm -rf bin parley_*.deb
