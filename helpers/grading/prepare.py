"""Paso «preparar» de la corrección: la entrega sin salidas y con las celdas de comprobación del profesor.

Como las celdas de prueba de nbgrader: cada celda que llama a ``checks.X(...)`` se sustituye por la del
cuaderno de ejercicios de la copia del curso de quien corrige.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from ..checks.cells import checks_called, without_outputs
from ..checks.registry import EXERCISES, ExerciseInfo
from ..paths import NOTEBOOKS_DIR


def instructor_check_cells(notebook: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, str]:
    """Ejercicio -> código de su celda de comprobación en el cuaderno de ejercicios del profesor."""
    nb = nbformat.read(Path(notebooks_dir) / f"{notebook}.ipynb", as_version=4)
    return {name: cell.source for cell in nb.cells if cell.cell_type == "code"
            for name in checks_called(cell.source)}


def prepare(nb, notebook: str, notebooks_dir: Path = NOTEBOOKS_DIR,
            exercises: Sequence[ExerciseInfo] = EXERCISES) -> tuple[Any, list[str]]:
    """La entrega lista para ejecutar (sin salidas, celdas de comprobación del profesor) y sus motivos."""
    official = instructor_check_cells(notebook, notebooks_dir)
    copy = without_outputs(nb)
    copy.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    found = set()
    for cell in copy.cells:
        if cell.cell_type != "code":
            continue
        names = [name for name in checks_called(cell.source) if name in official]
        if names:
            cell.source = official[names[0]]
            found.add(names[0])
    reasons = [f"falta la comprobación de {e.name} (¿borraste o renombraste la llamada checks.{e.name}(...)?)"
               for e in exercises if e.notebook == notebook and e.name not in found]
    return copy, reasons
