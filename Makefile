# curso-lora: `make lab` abre el curso, `make test` pasa las pruebas.
# Todo lo hace curso.py (también sin make, p. ej. en Windows: `py curso.py lab`); aquí solo se le llama.
# PYTHON es el Python con el que se crea .venv: `make setup PYTHON=python3.12`.
PYTHON ?= python3
CURSO  := $(PYTHON) curso.py

TARGETS := setup lab test test-completo test-fast fuzz amenazas llama exercises solutions adapters images render \
           bench bench-notebooks bench-train bench-grading clean
.PHONY: $(TARGETS) grade release

$(TARGETS):
	$(CURSO) $@

grade:
	$(CURSO) grade $(ENTREGAS) --csv $(or $(CSV),notas.csv)

release:
	$(CURSO) release $(or $(DESTINO),$(error indica la carpeta: make release DESTINO=carpeta_nueva))
