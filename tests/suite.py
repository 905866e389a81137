"""Las dos medidas de la suite: `make test` (la de CI) y `make test-completo` (todo, antes de publicar).

`make test` guarda cada propiedad al menos una vez; `make test-completo` (``CURSO_LORA_COMPLETO=1``) añade
lo que repite una propiedad ya guardada por un camino más caro: la matriz de amenazas entera, los
ejercicios que entrenan repetidos enteros en nbval y las pruebas marcadas con ``only_complete``.
"""

import os

import pytest

COMPLETE_ENV = "CURSO_LORA_COMPLETO"


def complete() -> bool:
    """¿Pasa la suite completa (``CURSO_LORA_COMPLETO=1``)?"""
    return os.environ.get(COMPLETE_ENV) == "1"


only_complete = pytest.mark.skipif(not complete(), reason="solo en `make test-completo`: repite una propiedad "
                                                          "que `make test` ya guarda por otro camino")
