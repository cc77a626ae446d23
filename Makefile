# lateralnorm: `make demo` runs the quick studies on built-in data; `make test` runs the tests.
# Both set up what they need first (virtual environment, pinned CPU torch, Debian packages when root).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stamp-setup
APT_PKGS := chromium chromium-driver dataset-fashion-mnist fortunes g++ python3-dev

.PHONY: setup system-deps test test-all bench lint format demo results reproduce clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,ray,browser,parquet,hf]'
	touch $(STAMP)

# The compiled CPU kernel of dn is built once per machine (about a minute); without a compiler dn runs on
# the PyTorch kernel, so a failure here is not fatal.
setup: $(STAMP) system-deps
	-@$(BIN)/lateralnorm norms --build-kernel

# Debian packages: the browser for page tests, Fashion-MNIST, and g++ with the Python headers for the compiled
# CPU kernel of dn. Installed only where we may (root + apt);
# elsewhere the tests that need them skip with the reason.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; tests that need them will skip"; \
	  fi; \
	else echo "note: not root or no apt-get; install $(APT_PKGS) yourself for the browser and Fashion-MNIST tests"; fi

test: setup
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	$(BIN)/python benchmarks/norms.py

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# The five questions' quick variants into $(DEMO_DIR)/<study>, then one report. Finished runs are kept, so
# running it again resumes an interrupted demo or only rebuilds the report. A study with failed runs
# (exit 1) still goes into the report, which flags them; a usage error (exit 2) stops the demo.
DEMO_DIR     ?= runs
DEMO_WORKERS ?= 2
DEMO_STUDIES := q1_activation_before_ln q2_cnn_channel_norms q3_divisive_vs_softmax_ln q4_recurrent_divisive q5_layernorm_only qt_transformer_norms

demo: setup
	@for s in $(DEMO_STUDIES); do \
	  $(BIN)/lateralnorm study run studies/$$s.toml --variant quick --workers $(DEMO_WORKERS) --out $(DEMO_DIR)/$$s; \
	  rc=$$?; if [ $$rc -gt 1 ]; then exit $$rc; fi; \
	done
	$(BIN)/lateralnorm report $(addprefix $(DEMO_DIR)/,$(DEMO_STUDIES)) -o $(DEMO_DIR)/report.html
	@echo "open $(abspath $(DEMO_DIR))/report.html"

# The answer set: every question's full study on MNIST-1D and Fashion-MNIST (studies/results.toml), then the
# report, runs.csv, figures and a stamp in results/. Resumable: a cut run continues from the stores.
RESULTS_DIR ?= results
results: setup
	$(BIN)/lateralnorm results studies/results.toml --out $(RESULTS_DIR) --workers $(DEMO_WORKERS)

# Re-run the whole answer set from scratch into REPRO_DIR and compare it with the committed results/:
# verdicts the same, differences inside the committed intervals (REPRO_DIR/comparison.md). Resumable too.
REPRO_DIR ?= reproduction
reproduce: setup
	$(BIN)/lateralnorm results studies/results.toml --out $(REPRO_DIR) --workers $(DEMO_WORKERS) --compare results

clean:
	rm -rf $(VENV) build *.egg-info
