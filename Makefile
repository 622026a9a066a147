# modelfleet — build, lint and test entry points.
#
#   make bootstrap    install missing Debian packages (scripts/bootstrap-apt.sh)
#   make venv         .venv with the project and its dev tools (idempotent)
#   make collection   make this checkout usable as the collection modelfleet.serving
#   make lint         ruff, mypy, pycodestyle, yamllint, argument specs vs defaults, ansible-lint
#   make unit         pytest tests/unit
#   make integration  pytest tests/integration
#   make sanity       ansible-test sanity on the built collection
#   make test         everything CI runs (apt, venv, lint, pytest tests/, sanity, molecule)
#   make demo         a local fleet (2 serving + 1 monitoring systemd hosts), credit-risk v1, then a canary
#                     rollout of v2 under live traffic with the real playbooks; the fleet stays up
#   make demo-down    remove the demo fleet
#   make molecule     the Molecule scenarios on local hosts: provision (GPU host roles on stand-in GPUs) and fleet
#                     (deploy, canaries, rollback, drift alert); MOLECULE_SCENARIOS=fleet for one
#   make bench-serving / bench-drift   benchmarks against peer systems (docs/*-benchmark.md)
#   make bench-rollout  the canary judgement's false-rollback and miss rates, simulated (docs/rollout.md)
#   make bench-scale  a rollout's weight change and overhead on 2, 8 and 24 light hosts (docs/rollout.md, Scale)
#   make gpu-hardware-check  on a GPU host: gpu_facts, nvidia-smi parsing, DCGM collectors (docs/gpu.md)
#   make clean        remove caches and build output (keeps .venv; `make distclean` removes it too)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

ROOT := $(CURDIR)
PYTHON ?= python3
VENV ?= .venv
VENV_ABS := $(abspath $(VENV))
# Installed before the project: this release is a CPU build on local disk; any other
# torch requirement would download the multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.modelfleet-installed

CACHE := .cache
NAMESPACE := modelfleet
NAME := serving
COLLECTIONS_DIR := $(CACHE)/collections
COLLECTION_LINK := $(COLLECTIONS_DIR)/ansible_collections/$(NAMESPACE)/$(NAME)
BUILD_DIR := $(CACHE)/build
SANITY_DIR := $(CACHE)/sanity
SANITY_ROOT := $(SANITY_DIR)/ansible_collections/$(NAMESPACE)/$(NAME)
SANITY_PYTHON ?= 3.11
SANITY_ARGS ?=
ARTIFACTS := $(CACHE)/artifacts
# Wheels of modelfleet and its dependencies for the fleet's hosts (the air-gapped install path).
WHEELHOUSE := $(CACHE)/wheelhouse
TESTBED_ENV := DOCKER_HOST=unix://$(ROOT)/$(CACHE)/testbed/docker/docker.sock
RUNTIME_SOURCES := pyproject.toml setup.py $(shell git ls-files src 2>/dev/null)
EXAMPLES := credit-risk mlp

# Only the directories that exist (ruff fails on missing paths).
LINT_DIRS := $(wildcard src tests plugins examples bench scripts pulumi)
PYTEST_ARGS ?=

# The venv first on PATH: molecule and ansible shell out to ansible-config & co.
export PATH := $(VENV_ABS)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv wheelhouse bootstrap collection lint ruff mypy pep8 yamllint argument-specs molecule-verifiers ansible-lint \
        unit integration pytest pytest-side sanity collection-build test test-checks test-side demo demo-down examples testbed molecule molecule-scenarios \
        molecule-prereqs molecule-run molecule-roles bench-serving bench-drift \
        bench-rollout bench-scale lambda-rie lambda-package bench-serverless gpu-hardware-check \
        clean distclean

help:
	@sed -n '3,19s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

## --- environment -----------------------------------------------------------

wheelhouse: $(CACHE)/wheelhouse.stamp

# SOURCE_DATE_EPOCH makes the modelfleet wheel byte-for-byte reproducible, so hosts reinstall it only
# when the code changed.
$(CACHE)/wheelhouse.stamp: $(STAMP) $(RUNTIME_SOURCES)
	rm -rf $(WHEELHOUSE).tmp
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
	  $(VENV)/bin/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE).tmp .
	rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE)
	tar --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner -C $(WHEELHOUSE) -cf $(WHEELHOUSE).tar .
	@touch $@

bootstrap:
	scripts/bootstrap-apt.sh

venv: $(STAMP)

# Re-installs when pyproject.toml changes; `pip install` is a no-op for what is already there.
$(STAMP): pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install -U pip
	$(VENV)/bin/python -m pip install '$(TORCH_SPEC)'
	$(VENV)/bin/python -m pip install -e '.[dev]'
	@touch $@

# The checkout itself is the collection: ansible.cfg puts $(COLLECTIONS_DIR) on collections_path.
collection:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@if [ "$$(readlink $(COLLECTION_LINK) 2>/dev/null)" != "../../../.." ]; then \
	  rm -rf $(COLLECTION_LINK); ln -s ../../../.. $(COLLECTION_LINK); fi
	@test -f $(COLLECTION_LINK)/galaxy.yml
	@echo "$(NAMESPACE).$(NAME) -> $(COLLECTION_LINK) -> $$(cd $(COLLECTION_LINK) && pwd -P)"

## --- lint ------------------------------------------------------------------

lint: ruff mypy pep8 yamllint argument-specs molecule-verifiers ansible-lint

ruff: venv
	$(VENV)/bin/ruff check $(LINT_DIRS)

mypy: venv
	$(VENV)/bin/mypy

# The collection ships src/ and plugins/: ansible-test's pep8 rules apply there (caught here first).
# Generated protobuf code (*_pb2.py, made by `pip install`) is not shipped in the collection, nor checked.
pep8: venv
	$(VENV)/bin/pycodestyle --max-line-length 160 --ignore E402,W503,W504,E741 --exclude '*_pb2.py,__pycache__' src plugins

yamllint: venv
	$(VENV)/bin/yamllint -s .

# Every role's meta/argument_specs.yml agrees with its defaults/main.yml (names, defaults, required).
argument-specs: venv
	$(VENV)/bin/python scripts/check_argument_specs.py

# Every scenario `make molecule` runs by default has a verifier that collects at least one test.
molecule-verifiers: venv
	$(VENV)/bin/python scripts/check_molecule_verifiers.py

ansible-lint: venv collection
	$(VENV)/bin/ansible-lint

## --- tests -----------------------------------------------------------------

# Exit code 5 (no tests collected) is a failure on purpose.
unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: venv collection wheelhouse lambda-rie testbed
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

pytest: venv collection wheelhouse lambda-rie testbed
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

# ansible-test needs a path ending in ansible_collections/<ns>/<name> and resolves symlinks,
# so it runs on the collection as built (build_ignore applied) and installed under $(SANITY_DIR).
collection-build: venv
	rm -rf $(BUILD_DIR)
	$(VENV)/bin/ansible-galaxy collection build --force --output-path $(BUILD_DIR) .

sanity: collection-build
	rm -rf $(SANITY_DIR)
	$(VENV)/bin/ansible-galaxy collection install --offline --force --no-deps \
	  -p $(SANITY_DIR) $(BUILD_DIR)/$(NAMESPACE)-$(NAME)-*.tar.gz
	@# ansible-test bootstraps pip with get-pip-<ver>.py from a host we cannot reach; it uses a
	@# cached copy if present. Put our stand-in there, for the pip version this ansible-test wants.
	@pipver=$$($(VENV)/bin/python -c 'import types; \
	  from ansible_test._internal.python_requirements import get_venv_packages; \
	  print(get_venv_packages(types.SimpleNamespace(version="$(SANITY_PYTHON)"))["pip"])'); \
	cached="$$HOME/.ansible/test/cache/get_pip_$${pipver//./_}.py"; \
	if [ -f "$$cached" ] && ! grep -q 'modelfleet: ansible-test get-pip stand-in' "$$cached"; then \
	  echo "using existing $$cached"; \
	else \
	  mkdir -p "$$(dirname "$$cached")"; install -m 0644 scripts/ansible-test-get-pip.py "$$cached"; \
	  echo "get-pip $$pipver stand-in -> $$cached"; \
	fi
	@# The installed tree is inside this repo's git work tree, where git ignores it (.cache/):
	@# pin the content root so ansible-test lists the files itself instead of asking git.
	cd $(SANITY_ROOT) && ANSIBLE_TEST_CONTENT_ROOT="$$PWD" \
	  $(VENV_ABS)/bin/ansible-test sanity --local --python $(SANITY_PYTHON) --requirements $(SANITY_ARGS)

# Two cores, two streams at a time: lint beside building what the tests need (the test hosts' image, the
# examples, the wheelhouse); then two streams: pytest (but PYTEST_SIDE_MODULES), then the shorter Molecule scenarios
# (provision), beside the timed scenarios' setup (create, converge, idempotence, then their untimed tests: check mode)
# followed by ansible-test sanity, the role scenarios and pytest's PYTEST_SIDE_MODULES; then the timed scenarios'
# verify alone (their fleet tests measure live traffic and must not share the machine). The timed scenarios' setup
# goes first in its stream: phase 3 waits for it.
# make test took 40.7 min here (2026-12-07, after deploys began to skip the unchanged host stack: 47.6 min before),
# 51.7 min the next run on a day the same machine was ~20 % slower (timed verify 23 min, pytest 14 min), and 44.2 min
# after the fleet scenario lost 2 deploys and a check run (2026-12-07 evening; the streams in the order before this
# one: pytest, sanity, role scenarios 20.3 min beside provision, fleet setup, untimed 24.9 min; timed verify 18.5 min).
# In this order the streams took 24.1 min (pytest, provision) and 21.1 min (fleet setup, untimed, sanity, roles).
# 2026-12-08: 44.8 min (CI: 51.8 min for the tree before, whose run here took 48.2): lint and builds 1.5 min, the
# streams 24.8 min (pytest 15.8, provision 9.0) and 22.7 min (fleet setup and untimed 17.1, sanity 2.6, roles 3.0),
# the timed verify 18.3 min (this machine was also running benchmarks then); hence PYTEST_SIDE_MODULES. Later
# the same day, undisturbed, with the serverless image module moved: 38.4 min (streams 21.6 and 18.7, timed 16.1).
test: molecule-scenarios bootstrap venv collection
	$(MAKE) -j2 --output-sync=line lint molecule-prereqs lambda-rie
	$(MAKE) -j2 --output-sync=line test-checks test-side
	$(if $(TEST_LAST_SCENARIOS),$(MAKE) molecule-verify MOLECULE_SCENARIOS="$(TEST_LAST_SCENARIOS)",true)

# pytest's modules that make test runs in its second stream, to even the two out (each builds and runs a Docker
# image, about 1.1-1.2 min; 2026-12-08 with the first of them moved: 21.6 min for the first stream, 18.7 for the
# second). A module named here that is missing fails the run (pytest: file not found): nothing is dropped silently.
PYTEST_SIDE_MODULES ?= tests/integration/test_serverless_image.py tests/integration/test_docker_host_stack.py

# make test's first stream, one after the other.
test-checks:
	$(MAKE) pytest PYTEST_ARGS="$(PYTEST_ARGS) $(addprefix --ignore=,$(PYTEST_SIDE_MODULES))"
	$(if $(TEST_SIDE_SCENARIOS),$(MAKE) molecule-run MOLECULE_SCENARIOS="$(TEST_SIDE_SCENARIOS)",true)

# make test's second stream, one after the other: the timed scenarios' setup first (the longest chain).
test-side:
	$(if $(TEST_LAST_SCENARIOS),$(MAKE) molecule-setup MOLECULE_SCENARIOS="$(TEST_LAST_SCENARIOS)",true)
	$(MAKE) sanity
	$(MAKE) molecule-roles
	$(if $(strip $(PYTEST_SIDE_MODULES)),$(MAKE) pytest-side,true)

pytest-side: venv collection wheelhouse lambda-rie testbed
	$(VENV)/bin/pytest $(PYTEST_SIDE_MODULES) $(PYTEST_ARGS)

## --- serverless (docs/serverless.md) ----------------------------------------

# The AWS Lambda Runtime Interface Emulator: a static binary inside the aws-sam-cli wheel. Only that file
# is extracted (installing aws-sam-cli itself would pull in a heavy dependency tree).
AWS_SAM_CLI_SPEC ?= aws-sam-cli==1.170.0
LAMBDA_RIE := $(CACHE)/lambda-rie/aws-lambda-rie-x86_64
lambda-rie: $(LAMBDA_RIE)

$(LAMBDA_RIE):
	rm -rf $(CACHE)/lambda-rie.tmp && mkdir -p $(CACHE)/lambda-rie.tmp
	$(VENV)/bin/python -m pip download --quiet --no-deps --only-binary=:all: -d $(CACHE)/lambda-rie.tmp '$(AWS_SAM_CLI_SPEC)'
	cd $(CACHE)/lambda-rie.tmp && $(VENV_ABS)/bin/python -c 'import glob, zipfile; \
	  open("aws-lambda-rie-x86_64", "wb").write(zipfile.ZipFile(glob.glob("aws_sam_cli-*.whl")[0]).read( \
	  "samcli/local/rapid/aws-lambda-rie-x86_64"))'
	chmod 0755 $(CACHE)/lambda-rie.tmp/aws-lambda-rie-x86_64
	mkdir -p $(dir $@) && mv $(CACHE)/lambda-rie.tmp/aws-lambda-rie-x86_64 $@ && rm -rf $(CACHE)/lambda-rie.tmp

# A Lambda deployment package for one artifact: manylinux wheels for Lambda's Python, zip + image context.
# LAMBDA_ARTIFACT=.cache/artifacts/credit-risk/1 make lambda-package
LAMBDA_ARTIFACT ?= $(ARTIFACTS)/credit-risk/1
LAMBDA_PACKAGE_ARGS ?=
lambda-package: venv lambda-rie
	$(VENV)/bin/python -m modelfleet.cli serverless package $(LAMBDA_ARTIFACT) --output $(CACHE)/lambda \
	  --rie $(LAMBDA_RIE) $(LAMBDA_PACKAGE_ARGS)

bench-serverless: venv lambda-rie examples
	$(VENV)/bin/python bench/serverless/run.py --rie $(LAMBDA_RIE)

## --- demo ------------------------------------------------------------------

examples: venv
	$(foreach m,$(EXAMPLES),test -f examples/$(m)/data/reference.npz || $(VENV)/bin/python examples/$(m)/train.py;)

# The hosts: a private Docker engine, the Debian 12 systemd image, the fleet network (scripts/testbed.sh).
testbed: bootstrap
	scripts/testbed.sh up

demo: bootstrap venv collection examples wheelhouse testbed
	scripts/fleet.sh up inventories/local/hosts.yml
	$(TESTBED_ENV) $(VENV)/bin/python scripts/demo_fleet.py --inventory inventories/local/hosts.yml

demo-down:
	scripts/fleet.sh down inventories/local/hosts.yml
	rm -rf $(CACHE)/rollouts $(CACHE)/demo

# Molecule drives the scenarios' hosts through the same harness (molecule/shared/create.yml -> fleet.sh).
MOLECULE_SCENARIOS ?= provision fleet
# Scenarios that `make test` runs alone, after everything else; the others run beside pytest. A timed scenario's
# verifier splits its tests by MODELFLEET_VERIFY_PART (as molecule/fleet/tests/conftest.py does).
TEST_TIMED_SCENARIOS ?= fleet
TEST_SIDE_SCENARIOS = $(filter-out $(TEST_TIMED_SCENARIOS),$(MOLECULE_SCENARIOS))
TEST_LAST_SCENARIOS = $(filter $(TEST_TIMED_SCENARIOS),$(MOLECULE_SCENARIOS))
# Roles with a scenario of their own (roles/<role>/molecule/default): `make molecule` runs them before the
# scenarios above, `make test` after pytest.
MOLECULE_ROLES ?= grafana
# An empty list fails first (before the testbed starts): it would otherwise pass without testing anything.
molecule: molecule-scenarios molecule-prereqs
	$(MAKE) molecule-roles molecule-run

molecule-roles:
	$(foreach r,$(MOLECULE_ROLES),(cd roles/$(r) && $(TESTBED_ENV) $(VENV_ABS)/bin/molecule test) &&) true

molecule-prereqs: bootstrap venv collection examples wheelhouse testbed

# The scenarios alone, without rebuilding anything (the wheelhouse must not change under a running fleet).
molecule-run: molecule-scenarios
	$(foreach s,$(MOLECULE_SCENARIOS),$(TESTBED_ENV) $(VENV)/bin/molecule test -s $(s) &&) true

# `molecule test` in two halves, for make test. The first: the scenario's test_sequence up to verify, then the
# verifier's untimed tests (those marked `untimed`: check mode; they may share the machine with other work); a
# failure destroys the hosts, as molecule test does. The second: the verifier's timed tests (live traffic, alone on
# the machine), then destroy (always, keeping verify's exit status). Each half fails if it collects no test.
MOLECULE_STEPS_BEFORE_VERIFY = $(VENV)/bin/python -c 'import sys, yaml; steps = yaml.safe_load(open(sys.argv[1]))["scenario"]["test_sequence"]; print(*steps[:steps.index("verify")])'
molecule-setup: molecule-scenarios
	$(foreach s,$(MOLECULE_SCENARIOS),( for step in $$($(MOLECULE_STEPS_BEFORE_VERIFY) molecule/$(s)/molecule.yml); do \
	  $(TESTBED_ENV) $(VENV)/bin/molecule $$step -s $(s) || { $(TESTBED_ENV) $(VENV)/bin/molecule destroy -s $(s); exit 1; }; \
	  done; MODELFLEET_VERIFY_PART=untimed $(TESTBED_ENV) $(VENV)/bin/molecule verify -s $(s) \
	  || { $(TESTBED_ENV) $(VENV)/bin/molecule destroy -s $(s); exit 1; } ) &&) true

molecule-verify: molecule-scenarios
	$(foreach s,$(MOLECULE_SCENARIOS),( rc=0; MODELFLEET_VERIFY_PART=timed $(TESTBED_ENV) $(VENV)/bin/molecule verify -s $(s) || rc=$$?; \
	  $(TESTBED_ENV) $(VENV)/bin/molecule destroy -s $(s); exit $$rc ) &&) true

molecule-scenarios:
	@if [ -z "$(strip $(MOLECULE_SCENARIOS))" ]; then \
	  echo "make molecule: MOLECULE_SCENARIOS is empty: no scenario would run (name one, e.g. MOLECULE_SCENARIOS=fleet)" >&2; \
	  exit 1; fi

# On a real GPU host: gpu_facts, nvidia-smi parsing, DCGM collectors (scripts/gpu-hardware-check.sh).
gpu-hardware-check: venv collection
	scripts/gpu-hardware-check.sh

## --- benchmarks (not part of `make test`: too noisy for CI; results go to .cache/bench/) --------

bench-serving: venv
	bench/serving/run.sh --modelfleet-python $(VENV_ABS)/bin/python --artifacts $(ROOT)/$(ARTIFACTS)

bench-drift: venv
	$(VENV)/bin/python bench/drift/run.py

# BENCH_ROLLOUT_ARGS: e.g. --trials 200 --volume demo --seed 2 --latency-file F
BENCH_ROLLOUT_ARGS ?=
bench-rollout: venv
	$(VENV)/bin/python bench/rollout/simulate.py $(BENCH_ROLLOUT_ARGS)

# BENCH_SCALE_ARGS: e.g. --hosts 2,8,24 --repeat 3 --interval 5s (starts mfs-* hosts, removes them after)
BENCH_SCALE_ARGS ?= --hosts 2,8,24
bench-scale: bootstrap venv collection testbed
	$(VENV)/bin/python bench/rollout/scale.py $(BENCH_SCALE_ARGS)

## --- housekeeping ----------------------------------------------------------

clean:
	rm -rf $(CACHE) .ansible tests/output .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -path ./.venv -prune -o -path ./.git -prune -o \
	  \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
