"""Complemento de pytest: con nbval, cada ejercicio de un cuaderno resuelto se ejecuta dos veces seguidas.

Un alumno corrige y vuelve a ejecutar las celdas de un ejercicio y su comprobación. La segunda vez tiene que
dar el mismo veredicto y ningún error: nada que la primera dejara a medias (un modelo ya envuelto por PEFT,
un adaptador ya descargado, un modelo ya fusionado en su sitio...).

Se hace en la MISMA ejecución que nbval (el mismo kernel, el presupuesto real del cuaderno): justo después de
la celda que llama a ``checks.X(...)``, se vuelven a ejecutar las celdas del ejercicio (desde la que abre su
zona de solución) y la comprobación, y se compara el veredicto (✅/❌/⏳ y su título) con el de la primera
vez. Así una sola ejecución de cada cuaderno sirve a nbval, a lo entregado para el juez y a esta prueba.

Los ejercicios que entrenan (``TRAINING``) repiten en ``make test`` solo su comprobación, que también tiene
que dar lo mismo al llamarla dos veces; el entrenamiento entero se repite en ``make test-completo`` (en
``lora_finetuning``, unos 5 min más en la CPU de 2 núcleos).

Se activa con ``-p tests.nbval_rerun`` (lo hace ``make test``).
"""

from __future__ import annotations

from collections import defaultdict

import nbformat
import pytest

from helpers.checks.cells import BEGIN, checks_called
from tests.suite import complete

MARKS = "✅❌⏳"
TRAINING = frozenset({"sft_trainer", "rank_sweep", "full_finetuning", "olora", "dpo_trainer"})


def rerun_plan(cells, whole_training: bool = True) -> dict[int, list[str]]:
    """{índice (entre las celdas de código) de una comprobación: fuentes que se repiten tras ella}.

    Son las celdas desde la que abre la zona de solución del ejercicio hasta la comprobación, incluida; con
    ``whole_training=False``, de un ejercicio de ``TRAINING`` solo la comprobación.
    """
    plan, pending, code_index = {}, [], -1
    for cell in cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        names = checks_called(cell.source)
        if BEGIN in cell.source or (pending and not names):
            pending.append(cell.source)
        if names:
            trains = not whole_training and TRAINING & set(names)
            plan[code_index] = [cell.source] if trains else [*pending, cell.source]
            pending = []
    return plan


def verdict(outputs) -> str:
    """La primera línea de lo que muestra una comprobación, sin los puntos (✅/❌/⏳ y el título)."""
    for output in outputs or []:
        text = (output.get("data") or {}).get("text/plain", "") or output.get("text", "")
        if text[:1] in MARKS:
            return text.splitlines()[0].split("(")[0].strip()
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    outcome = yield
    cell_num = getattr(item, "cell_num", None)
    notebook = getattr(getattr(item, "parent", None), "nb", None)
    if cell_num is None or notebook is None or outcome.excinfo is not None:
        return
    plan = getattr(item.parent, "_rerun_plan", None)
    if plan is None:
        plan = item.parent._rerun_plan = rerun_plan(notebook.cells, whole_training=complete())
    if cell_num not in plan:
        return
    first = verdict(item.test_outputs)
    assert first, f"la comprobación de la celda {cell_num} no mostró ningún veredicto"
    from nbval.plugin import IPyNbCell

    again = None
    for number, source in enumerate(plan[cell_num]):
        again = IPyNbCell.from_parent(item.parent, name=f"{item.name} (otra vez, {number + 1})", cell_num=cell_num,
                                      cell=nbformat.v4.new_code_cell(source), options=defaultdict(bool, check=False))
        again.runtest()
    second = verdict(again.test_outputs)
    assert second == first, f"al repetir el ejercicio, su comprobación dijo «{second}» y la primera vez «{first}»"
