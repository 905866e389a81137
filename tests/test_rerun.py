"""Volver a ejecutar un ejercicio tras un ❌: cada cuaderno resuelto, con cada ejercicio dos veces seguidas.

Un alumno corrige y vuelve a ejecutar las celdas de un ejercicio y su comprobación. La segunda vez
tiene que dar el mismo veredicto y ningún error (nada que la primera vez dejara a medias: un modelo
ya envuelto por PEFT, un adaptador ya descargado...). Con el presupuesto diminuto de
``tests/budgets.py``.
"""

from __future__ import annotations

import nbformat
import pytest

from helpers.checks.registry import NOTEBOOKS, exercises_for
from helpers.exercise_notebooks import BEGIN, SOLUTIONS_DIR, checks_called
from tests.budgets import with_tiny_budget


def rerun_notebook(name: str):
    """El cuaderno resuelto ``name`` con cada ejercicio (sus celdas + la comprobación) dos veces.

    Devuelve el cuaderno y, por ejercicio, los índices de sus dos celdas de comprobación.
    """
    source = with_tiny_budget(nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4), name)
    cells, pending, pairs = [], [], {}
    for cell in source.cells:
        if cell.cell_type != "code":
            continue
        cells.append(nbformat.v4.new_code_cell(cell.source))
        names = checks_called(cell.source)
        if BEGIN in cell.source or (pending and not names):
            pending.append(cell.source)
        if names:
            first = len(cells) - 1
            cells += [nbformat.v4.new_code_cell(s) for s in pending] + [nbformat.v4.new_code_cell(cell.source)]
            pairs[names[0]] = (first, len(cells) - 1)
            pending = []
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = source.metadata
    return nb, pairs


def verdict(cell) -> str:
    """La primera línea de lo que muestra la comprobación, sin los puntos (✅/❌/⏳ y el título)."""
    texts = [o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in cell.outputs]
    shown = next((t for t in texts if t[:1] in "✅❌⏳"), "")
    return shown.split("(")[0].strip()


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_exercise_gives_the_same_verdict_when_run_twice(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("CURSO_LORA_OUTPUT", str(tmp_path))
    nb, pairs = rerun_notebook(name)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(SOLUTIONS_DIR)}}).execute()
    assert set(pairs) == {e.name for e in exercises_for(name)}
    for exercise, (first, second) in pairs.items():
        assert verdict(nb.cells[first]), f"{exercise}: sin veredicto"
        assert verdict(nb.cells[first]) == verdict(nb.cells[second]), exercise
