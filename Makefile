# ForenX developer targets. `make setup` installs everything into .venv (CPU torch first).
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup browser test test-fast lint nano nano-eval nano-seed clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[all,dev]"

# The HTML report is checked in headless Chromium (Debian's package; no browser download).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "install Debian's chromium package (sudo apt-get install chromium) to run the browser tests"; exit 1; }

# pytest's exit code 5 (no tests collected) must not pass for success.
test: browser
	@$(BIN)/python -m pytest -q; code=$$?; \
	  if [ $$code -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$code

test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

lint:
	$(BIN)/ruff check forenx recipes eval bench tests

# forenx-nano from scratch: ForgerySynth -> SFT -> text SFT (stream frozen) -> GRPO -> calibrate -> eval -> release into
# forenx/assets/nano (about 49 min on 2 cores; the same bytes on every run).
nano:
	rm -rf runs/nano
	$(BIN)/python -m forenx.training.nano all

# Quality table of the shipped forenx-nano on the held-out test split (runs/nano/eval-shipped/nano_table.md).
nano-eval:
	$(BIN)/python -m forenx.training.nano eval-shipped

# The nano SFT recipe again with another trainer and weight seed, calibrated, and its test detection
# figures (runs/nano-seeds/seed-$(SEED)/detection.json): how much the shipped figures owe to the seed.
SEED ?= 1
nano-seed:
	$(BIN)/python -m forenx.training.nano seed $(SEED)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
