# The two commands of README.md. Each creates .venv when it is missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo

.PHONY: demo test venv clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision first, pinned to the builds these machines hold on local disk
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[cpu,dicom-codecs,train,export,bench,dev]'
	touch $@

venv: $(BIN)/.installed

# End to end on generated phantom data: train a tiny model, export, run, fuse -> $(OUT)/fused.png
demo: venv
	$(BIN)/python -m medfuse.demo --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info
