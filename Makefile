# aovs: `make test` and `make demo` work on a fresh Debian machine (they install what they need).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test test-neutron demo deps system-deps lint typecheck unit bench bench-quick bench-ovsdb \
	bench-openflow bench-rpc bench-reboot bench-firewall bench-neutron-rpc bench-coldboot bench-hosts \
	bench-extensions soak clean

deps: system-deps $(STAMP)

system-deps:
	@scripts/ensure-system-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: deps lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# the conformance tier: aovs agents against a REAL neutron 29 server (tests/neutron); the server's
# venv is built once per tests/neutron/server/requirements.lock, in ~/.cache/aovs
test-neutron: deps
	tests/neutron/server/install-neutron
	$(VENV)/bin/pytest tests/neutron --neutron $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

demo: deps
	$(VENV)/bin/aovs demo

bench-ovsdb: deps
	$(PY) -m benchmarks.bench_ovsdb

bench-openflow: deps
	$(PY) -m benchmarks.bench_openflow

bench-rpc: deps
	$(PY) -m benchmarks.bench_rpc

bench-reboot: deps
	$(PY) -m benchmarks.bench_reboot

bench-firewall: deps
	$(PY) -m benchmarks.bench_firewall

bench-neutron-rpc: deps
	tests/neutron/server/install-neutron
	$(PY) -m benchmarks.bench_neutron_rpc

bench: deps
	$(PY) -m benchmarks.suite --ports 1000 --timeout 900

bench-quick: deps
	$(PY) -m benchmarks.suite --ports 100

# cold boot with the agent running (one ovs-vsctl plugs N ports) at 1000, 3000 and 5000 ports,
# wall time and ovs-vswitchd CPU against the limit's: results/coldboot-cpu.{json,md,-scaling.png}
bench-coldboot: deps
	$(PY) -m benchmarks.suite --only cold_plug --ports 1000 --scaling-sizes 1000,3000,5000 \
		--timeout 900 --stem coldboot-cpu

# 20 agents (own OVS sandbox each, 50 ports) on one broker vhost with the simulator: SG rule and
# membership changes timed to every host's flows, broker messages per change: results/hosts.*
bench-hosts: deps
	$(PY) -m benchmarks.bench_hosts

# [agent] extensions = qos,trunk unused (vs off), a QoS policy on every port, 100 trunks with 4
# subports, at 1000 ports: results/extensions.{json,md}
bench-extensions: deps
	$(PY) -m benchmarks.bench_extensions

soak: deps
	$(VENV)/bin/pytest tests/faults --soak-seconds $${SOAK_SECONDS:-600} \
		--soak-ports $${SOAK_PORTS:-300} $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
